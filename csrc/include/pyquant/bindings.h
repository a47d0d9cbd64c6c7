// Helpers shared by the binding files: argument checks and status -> exception.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "pyquant/ops.h"

namespace pyquant {
namespace bindings {

namespace py = pybind11;

template <typename T>
using carray = py::array_t<T, py::array::c_style>;

inline void require(bool ok, const std::string& message) {
  if (!ok) throw py::value_error(message);
}
// A literal message is not turned into a std::string unless it is thrown: the per-entry checks
// of sparse_check built one (a heap allocation) per call, 80 ms for 1.7M entries.
inline void require(bool ok, const char* message) {
  if (!ok) throw py::value_error(message);
}

inline void require_contiguous(const py::array& a, const char* name) {
  require(a.flags() & py::array::c_style, std::string(name) + " must be C-contiguous");
}

// Second line behind pyquant/ops.py: an output sharing bytes with an input (or another output)
// would be read after being written and corrupt both. Arrays checked here are C-contiguous, so
// each occupies one byte interval; empty arrays occupy none.
inline bool overlaps(const py::array& a, const py::array& b) {
  if (a.nbytes() == 0 || b.nbytes() == 0) return false;
  const auto a0 = reinterpret_cast<uintptr_t>(a.data());
  const auto b0 = reinterpret_cast<uintptr_t>(b.data());
  return a0 < b0 + static_cast<uintptr_t>(b.nbytes()) && b0 < a0 + static_cast<uintptr_t>(a.nbytes());
}

inline void require_disjoint(const py::array& out, const std::string& out_name,
                             const py::array& in, const std::string& in_name) {
  require(!overlaps(out, in), out_name + " overlaps " + in_name + " in memory");
}

inline void raise_status(Status s, const char* what) {
  if (s != Status::ok) throw py::value_error(std::string(what) + " " + status_message(s));
}

// One function per op family, each in csrc/bindings/<family>.cpp.
void bind_quantize(py::module_& m);
void bind_abs_select(py::module_& m);
void bind_sparse(py::module_& m);
void bind_gemm(py::module_& m);

}  // namespace bindings
}  // namespace pyquant
