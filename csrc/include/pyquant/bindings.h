// Helpers shared by the binding files: argument checks and status -> exception.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

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

inline void require_contiguous(const py::array& a, const char* name) {
  require(a.flags() & py::array::c_style, std::string(name) + " must be C-contiguous");
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
