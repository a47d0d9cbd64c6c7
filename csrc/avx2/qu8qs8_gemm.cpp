// AVX2 u8 x s8 -> s32 GEMM, 4 x 8 register tile, exact: activations are widened to int16
// (zero-extension) and weights sign-extended to int16 on load, then vpmaddwd forms pair sums
// in int32. vpmaddubsw would be one instruction fewer but saturates int16 for 255 * -128 * 2.
//
// Blocking (GotoBLAS order with B resident in L2): for each block of kNC columns, for each
// block of kKC k's, for each 4-row block: widen those rows of A into a small int16 buffer (L1),
// then sweep the 8-column halves of the packed panels of this column block (KC x NC bytes of B
// stay in L2 across the row blocks). Partial sums between k blocks live in the output itself.
#include <immintrin.h>

#include <cstdlib>
#include <cstring>

#include "pyquant/gemm.h"

namespace pyquant {
namespace avx2 {
namespace {

constexpr int kMR = 4;  // 8 accumulators + 2 weights + broadcast + product: no spills
constexpr int64_t kKC = 512;  // multiple of 4
constexpr int64_t kNC = 256;  // multiple of 16
constexpr int64_t kFewRows = 32;    // up to this many rows, sweep B one panel at a time
constexpr int64_t kPrefetch = 2048;  // software prefetch distance in bytes of B

// acc[r] (8 columns) for r < MR over kg k-groups. a: int16 rows of stride astride (elements),
// b: the 8-column half of a panel (k-groups 64 bytes apart).
// Named accumulators, not arrays: GCC spilled an array-of-__m256i tile to the stack.
template <int MR>
static inline void ukernel(const int16_t* a, int64_t astride, const int8_t* b, int64_t kg,
                           __m256i* out) {
  __m256i l0 = _mm256_setzero_si256(), h0 = l0, l1 = l0, h1 = l0, l2 = l0, h2 = l0, l3 = l0,
          h3 = l0, l4 = l0, h4 = l0, l5 = l0, h5 = l0;
  const int16_t* a0 = a;
  const int16_t* a1 = a + astride;
  const int16_t* a2 = a + 2 * astride;
  const int16_t* a3 = a + 3 * astride;
  const int16_t* a4 = a + 4 * astride;
  const int16_t* a5 = a + 5 * astride;
#define PYQUANT_ROW(r)                                                      \
  if (MR > r) {                                                             \
    int64_t quad;                                                           \
    memcpy(&quad, a##r + q * 4, sizeof(quad));                              \
    const __m256i av = _mm256_set1_epi64x(quad);                            \
    l##r = _mm256_add_epi32(l##r, _mm256_madd_epi16(av, w0));               \
    h##r = _mm256_add_epi32(h##r, _mm256_madd_epi16(av, w1));               \
  }
  for (int64_t q = 0; q < kg; ++q) {
    const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));
    const __m256i w1 =
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16)));
    _mm_prefetch(reinterpret_cast<const char*>(b + kPrefetch), _MM_HINT_T0);
    b += kGemmNR * kGemmKR;
    PYQUANT_ROW(0) PYQUANT_ROW(1) PYQUANT_ROW(2) PYQUANT_ROW(3) PYQUANT_ROW(4) PYQUANT_ROW(5)
  }
#undef PYQUANT_ROW
  // l lanes: (c0 c0 c1 c1 | c2 c2 c3 c3) partial pairs, h the same for c4..c7; hadd then
  // reorder the 64-bit lanes to c0..c7.
  out[0] = _mm256_permute4x64_epi64(_mm256_hadd_epi32(l0, h0), 0xD8);
  if (MR > 1) out[1] = _mm256_permute4x64_epi64(_mm256_hadd_epi32(l1, h1), 0xD8);
  if (MR > 2) out[2] = _mm256_permute4x64_epi64(_mm256_hadd_epi32(l2, h2), 0xD8);
  if (MR > 3) out[3] = _mm256_permute4x64_epi64(_mm256_hadd_epi32(l3, h3), 0xD8);
  if (MR > 4) out[4] = _mm256_permute4x64_epi64(_mm256_hadd_epi32(l4, h4), 0xD8);
  if (MR > 5) out[5] = _mm256_permute4x64_epi64(_mm256_hadd_epi32(l5, h5), 0xD8);
}

static inline __m256i tail_mask(int64_t cols) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(cols)), idx);
}

// Merge one tile row into the output: add the previous k blocks, store partial sums, or apply
// the zero-point correction and the float epilogue on the last block.
static inline void finish_row(const GemmArgs& g, __m256i v, int64_t i, int64_t n, int64_t cols,
                              bool first, bool last) {
  const __m256i mask = tail_mask(cols);
  int* dst = g.c_i32 ? reinterpret_cast<int*>(g.c_i32 + i * g.ldc + n)
                     : reinterpret_cast<int*>(g.c_f32 + i * g.ldc + n);
  if (!first) v = _mm256_add_epi32(v, _mm256_maskload_epi32(dst, mask));
  if (!last) {
    _mm256_maskstore_epi32(dst, mask, v);
    return;
  }
  if (g.a_zero_point && g.a_zero_point[i]) {
    const __m256i za = _mm256_set1_epi32(g.a_zero_point[i]);
    const __m256i cs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g.col_sum + n));
    v = _mm256_sub_epi32(v, _mm256_mullo_epi32(za, cs));
  }
  if (g.b_zero_point) {
    const __m256i zb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g.b_zero_point + n));
    v = _mm256_sub_epi32(v, _mm256_mullo_epi32(zb, _mm256_set1_epi32(g.row_sum[i])));
    if (g.a_zero_point && g.a_zero_point[i]) {
      const int32_t kza = static_cast<int32_t>(static_cast<uint32_t>(g.K) *
                                               static_cast<uint32_t>(g.a_zero_point[i]));
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

// Rows [i0, i0 + mr) of A, k in [k0, k0 + kc), zero-extended to int16, zero padded to kc4.
static void widen_a(const GemmArgs& g, int64_t i0, int mr, int64_t k0, int64_t kc, int64_t kc4,
                    int16_t* buf) {
  for (int r = 0; r < mr; ++r) {
    const uint8_t* src = g.a + (i0 + r) * g.lda + k0;
    int16_t* dst = buf + r * kc4;
    int64_t k = 0;
    for (; k + 16 <= kc; k += 16)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + k),
                          _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k))));
    for (; k < kc; ++k) dst[k] = src[k];
    for (; k < kc4; ++k) dst[k] = 0;
  }
}

}  // namespace

void qu8qs8_gemm(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  alignas(32) int16_t abuf[kMR * kKC];
  __m256i tile[kMR];
  const int64_t K = g.K;
  const int64_t K4 = (K + 3) / 4 * 4;
  // Few rows: B is read about once, so the time goes to streaming it in. Widen those rows of
  // A once, then sweep one panel at a time along K (one contiguous stream the prefetch runs
  // ahead in; the second 8-column half finds it in L1). Many rows: GotoBLAS blocks of kNC
  // columns kept in L2, A widened per block. If the buffer cannot be had, take the blocked path.
  int16_t* wide = nullptr;
  if (m1 - m0 <= kFewRows) {
    wide = static_cast<int16_t*>(std::malloc(static_cast<size_t>((m1 - m0) * K4) * sizeof(int16_t)));
    if (wide) widen_a(g, m0, static_cast<int>(m1 - m0), 0, K, K4, wide);
  }
  const int64_t nc = wide ? kGemmNR : kNC;
  for (int64_t nb = n0; nb < n1; nb += nc) {
    const int64_t nb_end = nb + nc < n1 ? nb + nc : n1;
    for (int64_t k0 = 0; k0 < K || (K == 0 && k0 == 0); k0 += kKC) {
      const int64_t kc = K - k0 < kKC ? K - k0 : kKC;
      const int64_t kc4 = (kc + 3) / 4 * 4;
      const bool first = k0 == 0, last = k0 + kKC >= K;
      for (int64_t i0 = m0; i0 < m1; i0 += kMR) {
        const int mr = static_cast<int>(m1 - i0 < kMR ? m1 - i0 : kMR);
        const int16_t* a = wide ? wide + (i0 - m0) * K4 + k0 : abuf;
        const int64_t astride = wide ? K4 : kc4;
        if (!wide) widen_a(g, i0, mr, k0, kc, kc4, abuf);
        for (int64_t n = nb; n < nb_end; n += 8) {
          const int8_t* b = g.b + (n / kGemmNR) * g.Kp * kGemmNR + (k0 / 4) * (kGemmNR * kGemmKR) +
                            (n % kGemmNR) / 8 * 32;
          switch (mr) {
            case 1: ukernel<1>(a, astride, b, kc4 / 4, tile); break;
            case 2: ukernel<2>(a, astride, b, kc4 / 4, tile); break;
            case 3: ukernel<3>(a, astride, b, kc4 / 4, tile); break;
            default: ukernel<4>(a, astride, b, kc4 / 4, tile); break;
          }
          const int64_t cols = nb_end - n < 8 ? nb_end - n : 8;
          for (int r = 0; r < mr; ++r) finish_row(g, tile[r], i0 + r, n, cols, first, last);
        }
      }
      if (K == 0) break;
    }
  }
  std::free(wide);
}

}  // namespace avx2
}  // namespace pyquant
