// AVX-512 VNNI u8 x s8 -> s32 GEMM, 6 x 16 register tile: vpdpbusd multiplies u8 activation
// quads by s8 weight quads straight from the packed layout (no widening, no int16 stage).
// Same blocking as the AVX2 7-bit kernel (see csrc/avx2/qu7qs8_gemm.cpp: few rows sweep one
// panel at a time with software prefetch, many rows use L2 blocks of B). Compiled and
// dispatched on VNNI machines; the development machine has no AVX-512, so this path is
// verified only under emulation (tests/test_emulated_isa.py) and its speed is unmeasured.
#include <immintrin.h>

#include <cstring>

#include "pyquant/gemm.h"

namespace pyquant {
namespace avx512vnni {
namespace {

constexpr int kMR = 6;
constexpr int64_t kKC = 1024;      // k per block when few rows share a panel block in L1
constexpr int64_t kKCMany = 2048;  // k per block, many rows: B block (k x kNC) stays in L2
constexpr int64_t kNC = 256;
constexpr int64_t kFewRows = 32;
constexpr int64_t kPrefetch = 2048;  // software prefetch distance in bytes of B

template <int MR>
static inline void ukernel(const uint8_t* a, int64_t astride, const int8_t* b, int64_t kg,
                           __m512i* out) {
  __m512i acc[MR];
  for (int r = 0; r < MR; ++r) acc[r] = _mm512_setzero_si512();
  for (int64_t q = 0; q < kg; ++q) {
    const __m512i w = _mm512_loadu_si512(b);  // 16 columns x 4 k
    _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetch), _MM_HINT_T0);
    b += kGemmNR * kGemmKR;
    for (int r = 0; r < MR; ++r) {
      int32_t quad;
      memcpy(&quad, a + r * astride + q * 4, sizeof(quad));
      // u8 x s8 quad products summed in int32 (exact: 4 * 255 * 128 < 2^31), then added
      // without saturation (vpdpbusd, not vpdpbusds).
      acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_set1_epi32(quad), w);
    }
  }
  for (int r = 0; r < MR; ++r) out[r] = acc[r];
}

static inline void finish_row(const GemmArgs& g, __m512i v, int64_t i, int64_t n, int64_t cols,
                              bool first, bool last) {
  const __mmask16 mask = static_cast<__mmask16>((1u << cols) - 1u);
  int32_t* dst = g.c_i32 ? g.c_i32 + i * g.ldc + n
                         : reinterpret_cast<int32_t*>(g.c_f32 + i * g.ldc + n);
  if (!first) v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(mask, dst));
  if (!last) {
    _mm512_mask_storeu_epi32(dst, mask, v);
    return;
  }
  const int32_t za = g.a_zero_point ? g.a_zero_point[i] : 0;
  if (za) v = _mm512_sub_epi32(v, _mm512_mullo_epi32(_mm512_set1_epi32(za),
                                                     _mm512_loadu_si512(g.col_sum + n)));
  if (g.b_zero_point) {
    const __m512i zb = _mm512_loadu_si512(g.b_zero_point + n);
    v = _mm512_sub_epi32(v, _mm512_mullo_epi32(zb, _mm512_set1_epi32(g.row_sum[i])));
    if (za) {
      const int32_t kza =
          static_cast<int32_t>(static_cast<uint32_t>(g.K) * static_cast<uint32_t>(za));
      v = _mm512_add_epi32(v, _mm512_mullo_epi32(zb, _mm512_set1_epi32(kza)));
    }
  }
  if (g.c_i32) {
    _mm512_mask_storeu_epi32(dst, mask, v);
    return;
  }
  const __m512 s = _mm512_mul_ps(_mm512_set1_ps(g.a_scale[i]), _mm512_loadu_ps(g.b_scale + n));
  __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(v), s);
  if (g.bias) y = _mm512_add_ps(y, _mm512_loadu_ps(g.bias + n));
  _mm512_mask_storeu_ps(g.c_f32 + i * g.ldc + n, mask, y);
}

// Rows [i0, i0 + mr) of A, k in [k0, k0 + kc), copied and zero padded to kc4 so that the
// kernel's 4-byte reads never leave A.
static void copy_a(const GemmArgs& g, int64_t i0, int mr, int64_t k0, int64_t kc, int64_t kc4,
                   uint8_t* buf) {
  for (int r = 0; r < mr; ++r) {
    const uint8_t* src = g.a + (i0 + r) * g.lda + k0;
    uint8_t* dst = buf + r * kc4;
    memcpy(dst, src, kc);
    for (int64_t k = kc; k < kc4; ++k) dst[k] = 0;
  }
}

}  // namespace

void qu8qs8_gemm(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  alignas(64) uint8_t abuf[kMR * kKCMany];
  __m512i tile[kMR];
  const int64_t K = g.K;
  const bool few = m1 - m0 <= kFewRows;
  const int64_t kc_max = few ? kKC : kKCMany;
  const int64_t k_blocks = K > 0 ? (K + kc_max - 1) / kc_max : 1;
  const int64_t kcb = ((K + k_blocks - 1) / k_blocks + 3) / 4 * 4;  // equal blocks
  const int64_t nc = few ? kGemmNR : kNC;
  for (int64_t nb = n0; nb < n1; nb += nc) {
    const int64_t nb_end = nb + nc < n1 ? nb + nc : n1;
    for (int64_t k0 = 0; k0 < K || (K == 0 && k0 == 0); k0 += kcb) {
      const int64_t kc = K - k0 < kcb ? K - k0 : kcb;
      const int64_t kc4 = (kc + 3) / 4 * 4;
      const bool first = k0 == 0, last = k0 + kcb >= K;
      for (int64_t i0 = m0; i0 < m1; i0 += kMR) {
        const int mr = static_cast<int>(m1 - i0 < kMR ? m1 - i0 : kMR);
        // Whole quads are read straight from A; only a ragged K tail needs a zero-padded copy.
        const uint8_t* a = g.a + i0 * g.lda + k0;
        int64_t astride = g.lda;
        if (kc != kc4) {
          copy_a(g, i0, mr, k0, kc, kc4, abuf);
          a = abuf;
          astride = kc4;
        }
        for (int64_t n = nb; n < nb_end; n += kGemmNR) {
          const int8_t* b = g.b + (n / kGemmNR) * g.Kp * kGemmNR + (k0 / 4) * (kGemmNR * kGemmKR);
          switch (mr) {
            case 1: ukernel<1>(a, astride, b, kc4 / 4, tile); break;
            case 2: ukernel<2>(a, astride, b, kc4 / 4, tile); break;
            case 3: ukernel<3>(a, astride, b, kc4 / 4, tile); break;
            case 4: ukernel<4>(a, astride, b, kc4 / 4, tile); break;
            case 5: ukernel<5>(a, astride, b, kc4 / 4, tile); break;
            default: ukernel<6>(a, astride, b, kc4 / 4, tile); break;
          }
          const int64_t cols = nb_end - n < kGemmNR ? nb_end - n : kGemmNR;
          for (int r = 0; r < mr; ++r) finish_row(g, tile[r], i0 + r, n, cols, first, last);
        }
      }
      if (K == 0) break;
    }
  }
}

}  // namespace avx512vnni
}  // namespace pyquant
