// Bindings of the int8 GEMM family: pack_b, int8_matmul, quant_linear, and QuantConv2d's im2col.
#include <chrono>
#include <string>

#include "pyquant/cpu.h"
#include "pyquant/gemm.h"
#include "pyquant/bindings.h"
#include "pyquant/ops.h"

namespace pyquant {
namespace bindings {
namespace {

bool is_u8(const py::array& a, const char* name) {
  if (a.dtype().is(py::dtype::of<int8_t>())) return false;
  if (a.dtype().is(py::dtype::of<uint8_t>())) return true;
  throw py::type_error(std::string(name) + " must be int8 or uint8, got " +
                       std::string(py::str(a.dtype())));
}

std::string num(int64_t v) { return std::to_string(v); }

// An int8 layer's packed weight, column sums, scales and bias (QuantLinear / QuantConv2d
// buffers) against K, N and groups, and disjoint from out. Returns the bias data (null for
// None), kept alive by bias_arr.
const float* check_layer_weights(const carray<int8_t>& packed, const carray<int32_t>& col_sum,
                                 const carray<float>& w_scale, const py::object& bias,
                                 carray<float>& bias_arr, int64_t K, int64_t N, int64_t groups,
                                 const carray<float>& out) {
  const int64_t Np = gemm_padded_n(N), Kp = gemm_padded_k(K);
  require(packed.size() == groups * Np * Kp, "packed weight does not match K, N, groups");
  require(col_sum.size() == groups * Np && w_scale.size() == groups * Np,
          "col_sum and w_scale need groups * Np elements");
  require_disjoint(out, "out", packed, "packed");
  require_disjoint(out, "out", col_sum, "col_sum");
  require_disjoint(out, "out", w_scale, "w_scale");
  if (bias.is_none()) return nullptr;
  bias_arr = bias.cast<carray<float>>();
  require(bias_arr.size() == groups * Np, "bias needs groups * Np elements");
  require_disjoint(out, "out", bias_arr, "bias");
  return bias_arr.data();
}

// A convolution's window geometry, checked, with its output size.
Conv2dShape conv2d_shape(int64_t B, int64_t C, int64_t H, int64_t W, int64_t kh, int64_t kw,
                         int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw) {
  require(B >= 0 && C >= 1 && H >= 1 && W >= 1, "bad input sizes");
  require(kh >= 1 && kw >= 1 && sh >= 1 && sw >= 1 && ph >= 0 && pw >= 0 && dh >= 1 && dw >= 1,
          "bad kernel, stride, padding or dilation");
  require(H + 2 * ph - dh * (kh - 1) >= 1 && W + 2 * pw - dw * (kw - 1) >= 1,
          "the (dilated) kernel is larger than the padded input");
  const int64_t ho = (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
  const int64_t wo = (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
  return Conv2dShape{kh, kw, sh, sw, ph, pw, dh, dw, ho, wo};
}

}  // namespace

void bind_gemm(py::module_& m) {
  m.attr("GEMM_NR") = kGemmNR;
  m.attr("GEMM_KR") = kGemmKR;

  // For benchmarks that report ops/cycle: the effective clock of this core right now, from a
  // chain of dependent register adds (one per cycle on any x86 core since the P6; not
  // `add reg, imm`, whose chains Golden Cove and later fold at rename, several per cycle).
  m.def("measure_clock_ghz", [](int64_t iterations) {
    py::gil_scoped_release release;
    uint64_t x = 0;
    const uint64_t y = static_cast<uint64_t>(iterations) | 1;
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < iterations; ++i)
      __asm__ volatile("add %1, %0\n\tadd %1, %0\n\tadd %1, %0\n\tadd %1, %0" : "+r"(x) : "r"(y));
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return 4.0 * static_cast<double>(iterations) / s / 1e9;
  }, py::arg("iterations") = 50000000);

  // One core's VNNI peak, for the GEMM benchmarks' fraction-of-peak figures; 0 without VNNI.
  m.def("measure_vnni_peak_gops", [](int64_t iterations) {
    if (!cpu_features().avx512vnni) return 0.0;
    py::gil_scoped_release release;
    return avx512vnni::vpdpbusd_peak_gops(iterations);
  }, py::arg("iterations") = 20000000);

  m.def(
      "gemm_pack_b",
      [](py::array b, bool transposed, carray<int8_t> packed, carray<int32_t> col_sum) {
        const bool u8 = is_u8(b, "b");
        require_contiguous(b, "b");
        require(b.ndim() == 2, "b must be 2-d");
        const int64_t K = transposed ? b.shape(1) : b.shape(0);
        const int64_t N = transposed ? b.shape(0) : b.shape(1);
        const int64_t Kp = gemm_padded_k(K), Np = gemm_padded_n(N);
        require(packed.size() == Kp * Np, "packed must have " + num(Kp * Np) + " elements");
        require(col_sum.size() == Np, "col_sum must have " + num(Np) + " elements");
        require_disjoint(packed, "packed", b, "b");
        require_disjoint(col_sum, "col_sum", b, "b");
        require_disjoint(col_sum, "col_sum", packed, "packed");
        const void* src = b.data();
        int8_t* p = packed.mutable_data();
        int32_t* cs = col_sum.mutable_data();
        py::gil_scoped_release release;
        gemm_pack_b(src, u8, transposed, K, N, transposed ? K : N, p, cs);
      },
      py::arg("b").noconvert(), py::arg("transposed"), py::arg("packed").noconvert(),
      py::arg("col_sum").noconvert());

  m.def(
      "int8_matmul",
      [](py::array a, int32_t a_zero_point, const carray<int8_t>& packed,
         const carray<int32_t>& col_sum, int64_t K, int64_t N, bool b_unsigned,
         py::object b_zero_point, carray<int32_t> out) {
        const bool a_u8 = is_u8(a, "a");
        require_contiguous(a, "a");
        require(a.ndim() == 2 && a.shape(1) == K, "a must be [M, K]");
        const int64_t M = a.shape(0);
        const int64_t Np = gemm_padded_n(N), Kp = gemm_padded_k(K);
        require(packed.size() == Kp * Np && col_sum.size() == Np, "packed b does not match K, N");
        require(out.size() == M * N, "out must have M * N elements");
        const int32_t* zb = nullptr;
        carray<int32_t> zb_arr;
        if (!b_zero_point.is_none()) {
          zb_arr = b_zero_point.cast<carray<int32_t>>();
          require(zb_arr.size() == N, "b_zero_point must have N elements");
          zb = zb_arr.data();
          require_disjoint(out, "out", zb_arr, "b_zero_point");
        }
        require_disjoint(out, "out", a, "a");
        require_disjoint(out, "out", packed, "packed");
        require_disjoint(out, "out", col_sum, "col_sum");
        const void* ap = a.data();
        int32_t* op = out.mutable_data();
        py::gil_scoped_release release;
        int8_matmul(ap, !a_u8, M, K, a_zero_point, packed.data(), col_sum.data(), b_unsigned, zb,
                    N, op);
      },
      py::arg("a").noconvert(), py::arg("a_zero_point"), py::arg("packed").noconvert(),
      py::arg("col_sum").noconvert(), py::arg("K"), py::arg("N"), py::arg("b_unsigned"),
      py::arg("b_zero_point").none(true), py::arg("out").noconvert());

  m.def(
      "quant_linear",
      [](const carray<float>& x, int64_t M, int64_t K, int64_t N, int64_t groups, int mode,
         float static_scale, int32_t static_zero_point, const carray<int8_t>& packed,
         const carray<int32_t>& col_sum, const carray<float>& w_scale, py::object bias,
         carray<float> out) {
        require(M >= 0 && K >= 0 && N >= 0 && groups >= 1, "bad sizes");
        require(x.size() == M * K * groups, "x must have M * K * groups elements, got " +
                                                num(x.size()));
        require(out.size() == M * N * groups, "out must have M * N * groups elements");
        require(mode >= 0 && mode <= 3, "mode must be 0, 1, 2 or 3");
        carray<float> bias_arr;
        const float* bp =
            check_layer_weights(packed, col_sum, w_scale, bias, bias_arr, K, N, groups, out);
        require_disjoint(out, "out", x, "x");
        if (mode == 2)
          require(static_scale > 0 && static_zero_point >= 0 && static_zero_point <= 255,
                  "static scale must be > 0 and zero point in [0, 255]");
        float* op = out.mutable_data();
        Status st;
        {
          py::gil_scoped_release release;
          st = quant_linear(x.data(), M, K, N, groups, static_cast<ActQuant>(mode), static_scale,
                            static_zero_point, packed.data(), col_sum.data(), w_scale.data(), bp,
                            op);
        }
        raise_status(st, "input");
      },
      py::arg("x").noconvert(), py::arg("M"), py::arg("K"), py::arg("N"), py::arg("groups"),
      py::arg("mode"), py::arg("static_scale"), py::arg("static_zero_point"),
      py::arg("packed").noconvert(), py::arg("col_sum").noconvert(),
      py::arg("w_scale").noconvert(), py::arg("bias").none(true), py::arg("out").noconvert());

  m.def(
      "im2col_f32",
      [](const carray<float>& x, bool nhwc, int64_t B, int64_t C, int64_t H, int64_t W,
         int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
         int64_t dw, carray<float> out) {
        const Conv2dShape s = conv2d_shape(B, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw);
        require(x.size() == B * C * H * W, "x must have B * C * H * W elements, got " +
                                               num(x.size()));
        const int64_t n_out = B * s.ho * s.wo * C * kh * kw;
        require(out.size() == n_out, "out must have B * Ho * Wo * C * kh * kw = " + num(n_out) +
                                         " elements, got " + num(out.size()));
        require_disjoint(out, "out", x, "x");
        float* op = out.mutable_data();
        py::gil_scoped_release release;
        im2col_f32(x.data(), nhwc, B, C, H, W, s, op);
      },
      py::arg("x").noconvert(), py::arg("nhwc"), py::arg("B"), py::arg("C"), py::arg("H"),
      py::arg("W"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"),
      py::arg("pw"), py::arg("dh"), py::arg("dw"), py::arg("out").noconvert());

  m.def(
      "quant_conv2d",
      [](const carray<float>& x, bool nhwc, int64_t B, int64_t C, int64_t H, int64_t W,
         int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh,
         int64_t dw, int64_t N, int64_t groups, int mode, const carray<int8_t>& packed,
         const carray<int32_t>& col_sum, const carray<float>& w_scale, py::object bias,
         carray<float> out) {
        const Conv2dShape s = conv2d_shape(B, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw);
        require(N >= 1 && groups >= 1 && C % groups == 0, "bad N or groups");
        require(mode == 0 || mode == 3, "quant_conv2d takes the per-row modes 0 and 3");
        require(x.size() == B * C * H * W, "x must have B * C * H * W elements");
        require(out.size() == B * s.ho * s.wo * N * groups,
                "out must have B * Ho * Wo * N * groups elements");
        carray<float> bias_arr;
        const float* bp = check_layer_weights(packed, col_sum, w_scale, bias, bias_arr,
                                              C / groups * kh * kw, N, groups, out);
        require_disjoint(out, "out", x, "x");
        float* op = out.mutable_data();
        Status st;
        {
          py::gil_scoped_release release;
          st = quant_conv2d(x.data(), nhwc, B, C, H, W, s, N, groups,
                            static_cast<ActQuant>(mode), packed.data(), col_sum.data(),
                            w_scale.data(), bp, op);
        }
        raise_status(st, "input");
      },
      py::arg("x").noconvert(), py::arg("nhwc"), py::arg("B"), py::arg("C"), py::arg("H"),
      py::arg("W"), py::arg("kh"), py::arg("kw"), py::arg("sh"), py::arg("sw"), py::arg("ph"),
      py::arg("pw"), py::arg("dh"), py::arg("dw"), py::arg("N"), py::arg("groups"),
      py::arg("mode"), py::arg("packed").noconvert(), py::arg("col_sum").noconvert(),
      py::arg("w_scale").noconvert(), py::arg("bias").none(true), py::arg("out").noconvert());
}

}  // namespace bindings
}  // namespace pyquant
