// AVX-512 selection by |x| against a key threshold; masked tails, ties in index order.
// Keys and thresholds are below 2^31, so signed compares are exact.
#include <immintrin.h>

#include "pyquant/abs_key.h"
#include "pyquant/kernels.h"

namespace pyquant {
namespace avx512 {

using abs_key_detail::abs_key;
using abs_key_detail::keep_scalar;

void f32_abs_select_mask(const float* x, int64_t n, uint32_t t, int64_t* ties_left,
                         uint8_t* mask) {
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
  const __m512i vt = _mm512_set1_epi32(static_cast<int>(t));
  const __m512i one = _mm512_set1_epi32(1);
  int64_t ties = *ties_left;
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << r) - 1);
    const __m512i k = _mm512_and_si512(_mm512_maskz_loadu_epi32(m, x + i), absmask);
    const __mmask16 gt = _mm512_mask_cmpgt_epi32_mask(m, k, vt);
    if (ties > 0 && _mm512_mask_cmpeq_epi32_mask(m, k, vt) != 0) {
      for (int j = 0; j < r; ++j) mask[i + j] = keep_scalar(abs_key(x + i + j), t, &ties) ? 1 : 0;
      continue;
    }
    if (r == 16) {
      _mm_storeu_si128((__m128i*)(mask + i),
                       _mm512_cvtsepi32_epi8(_mm512_maskz_mov_epi32(gt, one)));
    } else {
      for (int j = 0; j < r; ++j) mask[i + j] = (gt >> j) & 1;
    }
  }
  *ties_left = ties;
}

int64_t f32_abs_select_prune(float* x, int64_t n, uint32_t t, int64_t* ties_left) {
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
  const __m512i vt = _mm512_set1_epi32(static_cast<int>(t));
  int64_t ties = *ties_left, kept = 0;
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << r) - 1);
    const __m512i k = _mm512_and_si512(_mm512_maskz_loadu_epi32(m, x + i), absmask);
    const __mmask16 gt = _mm512_mask_cmpgt_epi32_mask(m, k, vt);
    if (ties > 0 && _mm512_mask_cmpeq_epi32_mask(m, k, vt) != 0) {
      for (int j = 0; j < r; ++j) {
        const bool keep = keep_scalar(abs_key(x + i + j), t, &ties);
        if (!keep) x[i + j] = 0.0f;
        kept += keep;
      }
      continue;
    }
    kept += __builtin_popcount(static_cast<unsigned>(gt));
    // Zero exactly the in-range lanes that are not kept.
    const __mmask16 drop = static_cast<__mmask16>(m & ~gt);
    if (drop) _mm512_mask_storeu_ps(x + i, drop, _mm512_setzero_ps());
  }
  *ties_left = ties;
  return kept;
}

}  // namespace avx512
}  // namespace pyquant
