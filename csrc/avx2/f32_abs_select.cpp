// AVX2 selection by |x| against a key threshold. Blocks without an element at the threshold
// (nearly all of them) are compared and written 32 at a time; a block holding ties while the
// tie quota is open goes element by element, so ties are kept strictly in index order.
#include <immintrin.h>

#include "pyquant/abs_key.h"
#include "pyquant/kernels.h"

namespace pyquant {
namespace avx2 {

using abs_key_detail::abs_key;
using abs_key_detail::keep_scalar;

void f32_abs_select_mask(const float* x, int64_t n, uint32_t t, int64_t* ties_left,
                         uint8_t* mask) {
  const __m256i absmask = _mm256_set1_epi32(0x7fffffff);
  // t <= 0x7fffffff and keys < 2^31: signed compares are exact.
  const __m256i vt = _mm256_set1_epi32(static_cast<int>(t));
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i one = _mm256_set1_epi8(1);
  int64_t ties = *ties_left;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i gt[4], eq = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
      const __m256i k =
          _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(x + i + 8 * j)), absmask);
      gt[j] = _mm256_cmpgt_epi32(k, vt);
      eq = _mm256_or_si256(eq, _mm256_cmpeq_epi32(k, vt));
    }
    if (ties > 0 && !_mm256_testz_si256(eq, eq)) {
      for (int j = 0; j < 32; ++j) mask[i + j] = keep_scalar(abs_key(x + i + j), t, &ties) ? 1 : 0;
      continue;
    }
    // 4 x 8 int32 lanes of 0/-1 -> 32 bytes in element order.
    const __m256i p01 = _mm256_packs_epi32(gt[0], gt[1]);
    const __m256i p23 = _mm256_packs_epi32(gt[2], gt[3]);
    const __m256i b = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), order);
    _mm256_storeu_si256((__m256i*)(mask + i), _mm256_and_si256(b, one));
  }
  for (; i < n; ++i) mask[i] = keep_scalar(abs_key(x + i), t, &ties) ? 1 : 0;
  *ties_left = ties;
}

int64_t f32_abs_select_prune(float* x, int64_t n, uint32_t t, int64_t* ties_left) {
  const __m256i absmask = _mm256_set1_epi32(0x7fffffff);
  const __m256i vt = _mm256_set1_epi32(static_cast<int>(t));
  int64_t ties = *ties_left, kept = 0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    const __m256i k = _mm256_and_si256(_mm256_castps_si256(v), absmask);
    const __m256i gt = _mm256_cmpgt_epi32(k, vt);
    if (ties > 0) {
      const __m256i eq = _mm256_cmpeq_epi32(k, vt);
      if (!_mm256_testz_si256(eq, eq)) {
        for (int j = 0; j < 8; ++j) {
          const bool keep = keep_scalar(abs_key(x + i + j), t, &ties);
          if (!keep) x[i + j] = 0.0f;
          kept += keep;
        }
        continue;
      }
    }
    // Write only blocks that change: a fully kept block stays untouched.
    const int m = _mm256_movemask_ps(_mm256_castsi256_ps(gt));
    kept += __builtin_popcount(static_cast<unsigned>(m));
    if (m != 0xff) _mm256_storeu_ps(x + i, _mm256_and_ps(v, _mm256_castsi256_ps(gt)));
  }
  for (; i < n; ++i) {
    const bool keep = keep_scalar(abs_key(x + i), t, &ties);
    if (!keep) x[i] = 0.0f;
    kept += keep;
  }
  *ties_left = ties;
  return kept;
}

}  // namespace avx2
}  // namespace pyquant
