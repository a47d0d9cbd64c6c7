// Portable scalar u8 x s8 GEMM: the fallback and the oracle for the SIMD kernels.
// Reads the packed layout documented in pyquant/gemm.h directly, no blocking.
#include "pyquant/gemm.h"

namespace pyquant {
namespace ref {

void qu8qs8_gemm(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t K = g.K;
  for (int64_t i = m0; i < m1; ++i) {
    const uint8_t* a = g.a + i * g.lda;
    for (int64_t n = n0; n < n1; ++n) {
      const int8_t* panel = g.b + (n / kGemmNR) * g.Kp * kGemmNR + (n % kGemmNR) * kGemmKR;
      int32_t acc = 0;
      for (int64_t k = 0; k < K; ++k)
        acc += static_cast<int32_t>(a[k]) * panel[(k / kGemmKR) * (kGemmNR * kGemmKR) + k % kGemmKR];
      // Zero-point correction modulo 2^32 (unsigned arithmetic wraps with defined behaviour),
      // the same arithmetic as the SIMD kernels' vpmulld / vpsubd.
      uint32_t v = static_cast<uint32_t>(acc);
      const uint32_t za = g.a_zero_point ? static_cast<uint32_t>(g.a_zero_point[i]) : 0u;
      const uint32_t zb = g.b_zero_point ? static_cast<uint32_t>(g.b_zero_point[n]) : 0u;
      if (za) v -= za * static_cast<uint32_t>(g.col_sum[n]);
      if (zb) v -= zb * static_cast<uint32_t>(g.row_sum[i]);
      if (za && zb) v += static_cast<uint32_t>(K) * za * zb;
      const int32_t r = static_cast<int32_t>(v);
      if (g.c_i32) {
        g.c_i32[i * g.ldc + n] = r;
      } else {
        // Multiply, then add, in two roundings: the SIMD kernels do the same (no FMA) so that
        // every ISA writes identical floats.
        const float s = g.a_scale[i] * g.b_scale[n];
        float y = static_cast<float>(r) * s;
        if (g.bias) y = y + g.bias[n];
        g.c_f32[i * g.ldc + n] = y;
      }
    }
  }
}

}  // namespace ref
}  // namespace pyquant
