// AVX2 GEMM for activations in [0, 128] x s8 weights -> s32, 4 x 16 register tile.
//
// With a <= 128, vpmaddubsw is exact: a pair sum is at most 128 * 128 * 2 = 32768 in magnitude
// and only reaches it as -32768 (128 * -128 * 2), which int16 holds. So one vpmaddubsw (32
// MACs into int16 pairs) + one vpmaddwd by ones (quad sums in int32) + one vpaddd: 3 ops per
// 32 MACs instead of the 4.5 of the full-range u8 kernel, and the packed layout's 4-k groups
// land directly on int32 column lanes (no final reduction). Used for the 7-bit activation mode
// and by int8_matmul when every activation is <= 128. The other ISAs have no such kernel: their
// general u8 kernels are exact for these inputs too (the dispatch table points there).
#include <immintrin.h>

#include <cstring>

#include "pyquant/gemm.h"

namespace pyquant {
namespace avx2 {
namespace {

constexpr int kMR = 4;
constexpr int64_t kKC = 1024;      // k per block when few rows share a panel block in L1
constexpr int64_t kKCMany = 2048;  // k per block, many rows: B block (k x kNC) stays in L2
constexpr int64_t kFewRows = 32;  // up to this many rows, sweep B one panel at a time
// Software prefetch distance in bytes of B (about 1.5 us of weights at memory speed).
constexpr int64_t kPrefetch = 2048;
constexpr int64_t kNC = 256;   // multiple of 16

template <int MR>
static inline void ukernel7(const uint8_t* a, int64_t astride, const int8_t* b, int64_t kg,
                            __m256i* out) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i l0 = _mm256_setzero_si256(), h0 = l0, l1 = l0, h1 = l0, l2 = l0, h2 = l0, l3 = l0,
          h3 = l0;
  const uint8_t* a0 = a;
  const uint8_t* a1 = a + astride;
  const uint8_t* a2 = a + 2 * astride;
  const uint8_t* a3 = a + 3 * astride;
#define PYQUANT_ROW7(r)                                                                   \
  if (MR > r) {                                                                           \
    int32_t quad;                                                                         \
    memcpy(&quad, a##r + q * 4, sizeof(quad));                                            \
    const __m256i av = _mm256_set1_epi32(quad);                                           \
    l##r = _mm256_add_epi32(l##r, _mm256_madd_epi16(_mm256_maddubs_epi16(av, w0), ones)); \
    h##r = _mm256_add_epi32(h##r, _mm256_madd_epi16(_mm256_maddubs_epi16(av, w1), ones)); \
  }
  for (int64_t q = 0; q < kg; ++q) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));       // cols 0-7
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32));  // 8-15
    _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetch), _MM_HINT_T0);
    b += kGemmNR * kGemmKR;
    PYQUANT_ROW7(0) PYQUANT_ROW7(1) PYQUANT_ROW7(2) PYQUANT_ROW7(3)
  }
#undef PYQUANT_ROW7
  out[0] = l0;
  out[1] = h0;
  if (MR > 1) { out[2] = l1; out[3] = h1; }
  if (MR > 2) { out[4] = l2; out[5] = h2; }
  if (MR > 3) { out[6] = l3; out[7] = h3; }
}

static inline __m256i tail_mask(int64_t cols) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(cols)), idx);
}

// Same epilogue as the full-range kernel (csrc/avx2/qu8qs8_gemm.cpp); ISA files share no code.
static inline void finish8(const GemmArgs& g, __m256i v, int64_t i, int64_t n, int64_t cols,
                           bool first, bool last) {
  if (cols <= 0) return;
  const __m256i mask = tail_mask(cols);
  int* dst = g.c_i32 ? reinterpret_cast<int*>(g.c_i32 + i * g.ldc + n)
                     : reinterpret_cast<int*>(g.c_f32 + i * g.ldc + n);
  if (!first) v = _mm256_add_epi32(v, _mm256_maskload_epi32(dst, mask));
  if (!last) {
    _mm256_maskstore_epi32(dst, mask, v);
    return;
  }
  const int32_t za = g.a_zero_point ? g.a_zero_point[i] : 0;
  if (za) {
    const __m256i cs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g.col_sum + n));
    v = _mm256_sub_epi32(v, _mm256_mullo_epi32(_mm256_set1_epi32(za), cs));
  }
  if (g.b_zero_point) {
    const __m256i zb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g.b_zero_point + n));
    v = _mm256_sub_epi32(v, _mm256_mullo_epi32(zb, _mm256_set1_epi32(g.row_sum[i])));
    if (za) {
      const int32_t kza =
          static_cast<int32_t>(static_cast<uint32_t>(g.K) * static_cast<uint32_t>(za));
      v = _mm256_add_epi32(v, _mm256_mullo_epi32(zb, _mm256_set1_epi32(kza)));
    }
  }
  if (g.c_i32) {
    _mm256_maskstore_epi32(dst, mask, v);
    return;
  }
  const __m256 s = _mm256_mul_ps(_mm256_set1_ps(g.a_scale[i]), _mm256_loadu_ps(g.b_scale + n));
  __m256 y = _mm256_mul_ps(_mm256_cvtepi32_ps(v), s);
  if (g.bias) y = _mm256_add_ps(y, _mm256_loadu_ps(g.bias + n));
  _mm256_maskstore_ps(g.c_f32 + i * g.ldc + n, mask, y);
}

static void copy_a(const GemmArgs& g, int64_t i0, int mr, int64_t k0, int64_t kc, int64_t kc4,
                   uint8_t* buf) {
  for (int r = 0; r < mr; ++r) {
    uint8_t* dst = buf + r * kc4;
    memcpy(dst, g.a + (i0 + r) * g.lda + k0, kc);
    for (int64_t k = kc; k < kc4; ++k) dst[k] = 0;
  }
}

}  // namespace

void qu7qs8_gemm(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  alignas(32) uint8_t abuf[kMR * kKCMany];
  __m256i tile[2 * kMR];
  const int64_t K = g.K;
  // Few rows: B is read about once, so the time goes to streaming it in. Sweep one panel at a
  // time along K (one contiguous stream the prefetch runs ahead in) and let every row tile
  // reuse that 16 KB block from L1. Many rows: GotoBLAS blocks of kNC columns kept in L2.
  const bool few = m1 - m0 <= kFewRows;
  // Equal k blocks of at most kc_max: K = 1536 is one block, not 1024 + 512 (each extra block
  // costs a pass of partial sums through the output).
  const int64_t kc_max = few ? kKC : kKCMany;
  const int64_t k_blocks = K > 0 ? (K + kc_max - 1) / kc_max : 1;
  const int64_t kcb = ((K + k_blocks - 1) / k_blocks + 3) / 4 * 4;
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
            case 1: ukernel7<1>(a, astride, b, kc4 / 4, tile); break;
            case 2: ukernel7<2>(a, astride, b, kc4 / 4, tile); break;
            case 3: ukernel7<3>(a, astride, b, kc4 / 4, tile); break;
            default: ukernel7<4>(a, astride, b, kc4 / 4, tile); break;
          }
          const int64_t cols = nb_end - n;
          for (int r = 0; r < mr; ++r) {
            finish8(g, tile[2 * r], i0 + r, n, cols < 8 ? cols : 8, first, last);
            finish8(g, tile[2 * r + 1], i0 + r, n + 8, cols - 8 < 8 ? cols - 8 : 8, first, last);
          }
        }
      }
      if (K == 0) break;
    }
  }
}

}  // namespace avx2
}  // namespace pyquant
