// Bindings of quantize, dequantize, dynamic_quantize and minmax.
#include <string>

#include "pyquant/bindings.h"
#include "pyquant/dispatch.h"
#include "pyquant/ops.h"

namespace pyquant {
namespace bindings {
namespace {

QDtype qdtype_of(const py::array& a, const char* name) {
  if (a.dtype().is(py::dtype::of<int8_t>())) return QDtype::s8;
  if (a.dtype().is(py::dtype::of<uint8_t>())) return QDtype::u8;
  throw py::type_error(std::string(name) + " must be int8 or uint8, got " +
                       std::string(py::str(a.dtype())));
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

void bind_quantize(py::module_& m) {
  // Per-tensor fast path: scale and zero point as plain numbers, no arrays to build.
  m.def(
      "quantize_per_tensor",
      [](const carray<float>& x, py::array y, float scale, int32_t zero_point) {
        const QDtype dt = qdtype_of(y, "out");
        require_contiguous(y, "out");
        require(y.size() == x.size(), "out must have as many elements as x");
        require_disjoint(y, "out", x, "x");
        require(scale > 0.0f && scale <= 3.4028235e38f, "scale must be finite and > 0");
        require(dt == QDtype::s8 ? (zero_point >= -128 && zero_point <= 127)
                                 : (zero_point >= 0 && zero_point <= 255),
                "zero_point out of the dtype's range");
        QLayout l;
        l.channels = x.size();
        l.scale = &scale;
        l.zero_point = &zero_point;
        void* out = y.mutable_data();
        Status st;
        {
          py::gil_scoped_release release;
          st = quantize(x.data(), out, dt, l);
        }
        raise_status(st, "x");
      },
      py::arg("x").noconvert(), py::arg("out").noconvert(), py::arg("scale"),
      py::arg("zero_point"));
  m.def(
      "dequantize_per_tensor",
      [](py::array q, carray<float> y, float scale, int32_t zero_point) {
        const QDtype dt = qdtype_of(q, "q");
        require_contiguous(q, "q");
        require(y.size() == q.size(), "out must have as many elements as q");
        require_disjoint(y, "out", q, "q");
        QLayout l;
        l.channels = q.size();
        l.scale = &scale;
        l.zero_point = &zero_point;
        float* out = y.mutable_data();
        py::gil_scoped_release release;
        dequantize(q.data(), dt, out, l);
      },
      py::arg("q").noconvert(), py::arg("out").noconvert(), py::arg("scale"),
      py::arg("zero_point"));
  m.def(
      "quantize",
      [](const carray<float>& x, py::array y, int mode, int64_t outer, int64_t channels,
         int64_t inner, int64_t block_size, const carray<float>& scale, py::object zero_point) {
        const QDtype dt = qdtype_of(y, "out");
        require_contiguous(y, "out");
        require(y.writeable(), "out must be writeable");
        require(y.size() == x.size(), "out must have as many elements as x");
        require_disjoint(y, "out", x, "x");
        require_disjoint(y, "out", scale, "scale");
        if (!zero_point.is_none()) require_disjoint(y, "out", zero_point.cast<py::array>(), "zero_point");
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
        require_disjoint(y, "out", q, "q");
        require_disjoint(y, "out", scale, "scale");
        if (!zero_point.is_none()) require_disjoint(y, "out", zero_point.cast<py::array>(), "zero_point");
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
        require_disjoint(y, "out", x, "x");
        require_disjoint(scale, "scale", x, "x");
        require_disjoint(scale, "scale", y, "out");
        require_disjoint(zero_point, "zero_point", x, "x");
        require_disjoint(zero_point, "zero_point", y, "out");
        require_disjoint(zero_point, "zero_point", scale, "scale");
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

}  // namespace bindings
}  // namespace pyquant
