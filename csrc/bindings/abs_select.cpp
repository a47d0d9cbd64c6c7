// Bindings of the magnitude-selection ops: top-k threshold, masks, in-place pruning.
// Each takes a list of arrays (one for a single tensor) treated as one flat sequence.
#include <cstring>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "pyquant/bindings.h"
#include "pyquant/ops.h"

namespace pyquant {
namespace bindings {
namespace {

using farray = py::array_t<float, py::array::c_style>;
using barray = py::array_t<bool, py::array::c_style>;

template <typename A>
A checked(const py::handle& h, const char* name, size_t i, const char* want) {
  if (!py::isinstance<A>(h))
    throw py::type_error(std::string(name) + "[" + std::to_string(i) + "] must be a C-contiguous " +
                         want + " array");
  return py::reinterpret_borrow<A>(h);
}

// Arrays are kept alive by `keep` while the GIL is released.
FloatBuffers float_buffers(const py::list& xs, std::vector<farray>* keep, bool writeable) {
  FloatBuffers b;
  for (size_t i = 0; i < xs.size(); ++i) {
    farray a = checked<farray>(xs[i], "x", i, "float32");
    if (writeable) require(a.writeable(), "x[" + std::to_string(i) + "] must be writeable");
    b.data.push_back(a.data());
    b.size.push_back(static_cast<int64_t>(a.size()));
    keep->push_back(std::move(a));
  }
  return b;
}

int64_t total(const FloatBuffers& b) {
  int64_t n = 0;
  for (int64_t s : b.size) n += s;
  return n;
}

void check_k(int64_t k, int64_t n) {
  require(k >= 0 && k <= n,
          "k must be in [0, " + std::to_string(n) + "], got " + std::to_string(k));
}

}  // namespace

void bind_abs_select(py::module_& m) {
  m.def(
      "abs_topk_threshold",
      [](const py::list& xs, int64_t k) {
        std::vector<farray> keep;
        const FloatBuffers b = float_buffers(xs, &keep, false);
        check_k(k, total(b));
        uint32_t key = 0;
        Status st;
        {
          py::gil_scoped_release release;
          st = abs_topk_key(b, k, &key);
        }
        raise_status(st, "x");
        float v;
        std::memcpy(&v, &key, sizeof v);
        return v;
      },
      py::arg("xs"), py::arg("k"),
      "k-th largest |x| over the arrays in xs taken together (1 <= k <= n). For k = 0 only "
      "the NaN check runs and a NaN is returned: the Python wrapper maps it to +inf.");

  m.def(
      "abs_select_mask",
      [](const py::list& xs, int64_t k, const py::list& masks) {
        std::vector<farray> keep;
        const FloatBuffers b = float_buffers(xs, &keep, false);
        check_k(k, total(b));
        require(masks.size() == xs.size(), "masks must have one array per input array");
        std::vector<barray> keep_masks;
        std::vector<uint8_t*> out;
        for (size_t i = 0; i < masks.size(); ++i) {
          barray a = checked<barray>(masks[i], "masks", i, "bool");
          require(a.writeable(), "masks[" + std::to_string(i) + "] must be writeable");
          require(static_cast<int64_t>(a.size()) == b.size[i],
                  "masks[" + std::to_string(i) + "] must have as many elements as x[" +
                      std::to_string(i) + "]");
          for (size_t j = 0; j < keep.size(); ++j)
            require_disjoint(a, "masks[" + std::to_string(i) + "]", keep[j],
                             "x[" + std::to_string(j) + "]");
          for (size_t j = 0; j < keep_masks.size(); ++j)
            require_disjoint(a, "masks[" + std::to_string(i) + "]", keep_masks[j],
                             "masks[" + std::to_string(j) + "]");
          out.push_back(reinterpret_cast<uint8_t*>(a.mutable_data()));
          keep_masks.push_back(std::move(a));
        }
        Status st;
        {
          py::gil_scoped_release release;
          st = abs_select_mask(b, k, out);
        }
        raise_status(st, "x");
      },
      py::arg("xs"), py::arg("k"), py::arg("masks"));

  m.def(
      "abs_select_prune",
      [](const py::list& xs, int64_t k) {
        std::vector<farray> keep;
        const FloatBuffers b = float_buffers(xs, &keep, true);
        check_k(k, total(b));
        // Pruned in place: two arrays sharing memory would be counted twice and zeroed through
        // each other.
        for (size_t i = 0; i < keep.size(); ++i)
          for (size_t j = i + 1; j < keep.size(); ++j)
            require_disjoint(keep[i], "x[" + std::to_string(i) + "]", keep[j],
                             "x[" + std::to_string(j) + "]");
        std::vector<float*> data;
        for (auto& a : keep) data.push_back(a.mutable_data());
        std::vector<int64_t> kept;
        Status st;
        {
          py::gil_scoped_release release;
          st = abs_select_prune(data, b.size, k, &kept);
        }
        raise_status(st, "x");
        return kept;  // per array: elements kept
      },
      py::arg("xs"), py::arg("k"));
}

}  // namespace bindings
}  // namespace pyquant
