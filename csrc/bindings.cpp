// pybind11 bindings: check, release the GIL, call the op, turn a status into an exception.
// The Python layer (pyquant/ops.py) validates user input with friendly messages; the checks
// here are the last line of defence so that no call can read or write out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdlib>
#include <string>

#include "pyquant/cpu.h"
#include "pyquant/dispatch.h"
#include "pyquant/ops.h"
#include "pyquant/threadpool.h"

namespace py = pybind11;
using namespace pyquant;

namespace {

template <typename T>
using carray = py::array_t<T, py::array::c_style>;

void require(bool ok, const std::string& message) {
  if (!ok) throw py::value_error(message);
}

QDtype qdtype_of(const py::array& a, const char* name) {
  if (a.dtype().is(py::dtype::of<int8_t>())) return QDtype::s8;
  if (a.dtype().is(py::dtype::of<uint8_t>())) return QDtype::u8;
  throw py::type_error(std::string(name) + " must be int8 or uint8, got " +
                       std::string(py::str(a.dtype())));
}

void require_contiguous(const py::array& a, const char* name) {
  require(a.flags() & py::array::c_style, std::string(name) + " must be C-contiguous");
}

void raise_status(Status s, const char* what) {
  if (s != Status::ok) throw py::value_error(std::string(what) + " " + status_message(s));
}

QLayout make_layout(int mode, int64_t outer, int64_t channels, int64_t inner, int64_t block_size,
                    const carray<float>& scale, const py::object& zero_point, int64_t numel) {
  QLayout l;
  require(mode >= 0 && mode <= 2, "mode must be 0 (per tensor), 1 (per axis) or 2 (blocked)");
  require(outer >= 0 && channels >= 0 && inner >= 0, "layout sizes must be >= 0");
  require(outer * channels * inner == numel, "layout does not match the number of elements");
  l.mode = static_cast<QLayout::Mode>(mode);
  l.outer = outer;
  l.channels = channels;
  l.inner = inner;
  l.block_size = block_size;
  int64_t expected = 1;
  if (l.mode == QLayout::Mode::per_axis) expected = channels;
  if (l.mode == QLayout::Mode::blocked) {
    require(block_size >= 1, "block_size must be >= 1");
    expected = outer * ((channels + block_size - 1) / block_size) * inner;
  }
  require(scale.size() == expected, "scale has " + std::to_string(scale.size()) +
                                        " elements, expected " + std::to_string(expected));
  l.scale = scale.data();
  if (!zero_point.is_none()) {
    const auto zp = zero_point.cast<carray<int32_t>>();
    require(zp.size() == expected, "zero_point has " + std::to_string(zp.size()) +
                                       " elements, expected " + std::to_string(expected));
    l.zero_point = zp.data();
  }
  return l;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "pyquant native kernels";

  m.def("cpu_info", [] {
    const CpuFeatures& f = cpu_features();
    py::dict features;
    features["avx2"] = f.avx2;
    features["avx512f"] = f.avx512f;
    features["avx512bw"] = f.avx512bw;
    features["avx512vl"] = f.avx512vl;
    features["avx512dq"] = f.avx512dq;
    features["avx512vnni"] = f.avx512vnni;
    py::dict kernel_names;
    for (const auto& [op, name] : kernels().names) kernel_names[py::str(op)] = name;
    py::dict info;
    info["detected_isa"] = isa_name(detected_isa());
    info["isa"] = isa_name(kernels().isa);
    info["features"] = features;
    info["kernels"] = kernel_names;
    info["num_threads"] = ThreadPool::global().num_threads();
    return info;
  });

  m.def(
      "set_isa",
      [](const std::string& name) {
        Isa isa;
        if (!parse_isa(name, &isa))
          throw py::value_error("isa must be one of scalar, avx2, avx512, avx512vnni; got '" +
                                name + "'");
        if (!set_isa(isa))
          throw py::value_error("isa '" + name + "' is not supported by this CPU (it supports up to '" +
                                isa_name(detected_isa()) + "')");
      },
      py::arg("isa"));
  m.def("get_isa", [] { return std::string(isa_name(kernels().isa)); });
  m.def("detected_isa", [] { return std::string(isa_name(detected_isa())); });

  m.def(
      "set_num_threads",
      [](int n) {
        require(n >= 1, "num_threads must be >= 1, got " + std::to_string(n));
        py::gil_scoped_release release;
        ThreadPool::global().set_num_threads(n);
      },
      py::arg("n"));
  m.def("get_num_threads", [] { return ThreadPool::global().num_threads(); });

  m.def(
      "quantize",
      [](const carray<float>& x, py::array y, int mode, int64_t outer, int64_t channels,
         int64_t inner, int64_t block_size, const carray<float>& scale, py::object zero_point) {
        const QDtype dt = qdtype_of(y, "out");
        require_contiguous(y, "out");
        require(y.writeable(), "out must be writeable");
        require(y.size() == x.size(), "out must have as many elements as x");
        const QLayout l = make_layout(mode, outer, channels, inner, block_size, scale, zero_point,
                                      x.size());
        void* out = y.mutable_data();
        Status st;
        {
          py::gil_scoped_release release;
          st = quantize(x.data(), out, dt, l);
        }
        raise_status(st, "x");
      },
      py::arg("x").noconvert(), py::arg("out").noconvert(), py::arg("mode"), py::arg("outer"),
      py::arg("channels"), py::arg("inner"), py::arg("block_size"),
      py::arg("scale").noconvert(), py::arg("zero_point").none(true));

  m.def(
      "dequantize",
      [](py::array q, const carray<float>& y, int mode, int64_t outer, int64_t channels,
         int64_t inner, int64_t block_size, const carray<float>& scale, py::object zero_point) {
        const QDtype dt = qdtype_of(q, "q");
        require_contiguous(q, "q");
        require(y.writeable(), "out must be writeable");
        require(y.size() == q.size(), "out must have as many elements as q");
        const QLayout l = make_layout(mode, outer, channels, inner, block_size, scale, zero_point,
                                      q.size());
        float* out = carray<float>(y).mutable_data();
        py::gil_scoped_release release;
        dequantize(q.data(), dt, out, l);
      },
      py::arg("q").noconvert(), py::arg("out").noconvert(), py::arg("mode"), py::arg("outer"),
      py::arg("channels"), py::arg("inner"), py::arg("block_size"),
      py::arg("scale").noconvert(), py::arg("zero_point").none(true));

  m.def(
      "dynamic_quantize",
      [](const carray<float>& x, py::array y, int64_t rows, int64_t cols, carray<float> scale,
         carray<int32_t> zero_point) {
        const QDtype dt = qdtype_of(y, "out");
        require_contiguous(y, "out");
        require(rows >= 1 && cols >= 0 && rows * cols == x.size(), "rows * cols must equal x.size");
        require(y.size() == x.size(), "out must have as many elements as x");
        require(scale.size() == rows && zero_point.size() == rows,
                "scale and zero_point need one element per row");
        void* out = y.mutable_data();
        float* scale_out = scale.mutable_data();
        int32_t* zp_out = zero_point.mutable_data();
        Status st;
        {
          py::gil_scoped_release release;
          st = dynamic_quantize(x.data(), out, dt, rows, cols, scale_out, zp_out);
        }
        raise_status(st, "x");
      },
      py::arg("x").noconvert(), py::arg("out").noconvert(), py::arg("rows"), py::arg("cols"),
      py::arg("scale").noconvert(), py::arg("zero_point").noconvert());

  m.def(
      "minmax",
      [](const carray<float>& x) {
        float mn = 0.0f, mx = 0.0f;
        bool nan = false;
        require(x.size() > 0, "x must not be empty");
        {
          py::gil_scoped_release release;
          nan = kernels().f32_minmax(x.data(), x.size(), &mn, &mx);
        }
        if (nan) throw py::value_error("x contains NaN");
        return py::make_tuple(mn, mx);
      },
      py::arg("x").noconvert());
}
