// AVX-512 min/max: four accumulators, masked tail; NaNs skipped.
#include <immintrin.h>

#include "pyquant/kernels.h"

namespace pyquant {
namespace avx512 {

bool f32_minmax(const float* x, int64_t n, float* min, float* max) {
  __m512 mn[4], mx[4];
  for (int j = 0; j < 4; ++j) {
    mn[j] = _mm512_set1_ps(__builtin_inff());
    mx[j] = _mm512_set1_ps(-__builtin_inff());
  }
  __mmask16 nan = 0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (int j = 0; j < 4; ++j) {
      const __m512 v = _mm512_loadu_ps(x + i + 16 * j);
      nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      mn[j] = _mm512_min_ps(v, mn[j]);  // a NaN in v yields the second operand: skipped
      mx[j] = _mm512_max_ps(v, mx[j]);
    }
  }
  for (; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << r) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    nan |= _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q);
    mn[0] = _mm512_mask_min_ps(mn[0], m, v, mn[0]);
    mx[0] = _mm512_mask_max_ps(mx[0], m, v, mx[0]);
  }
  const __m512 vmn = _mm512_min_ps(_mm512_min_ps(mn[0], mn[1]), _mm512_min_ps(mn[2], mn[3]));
  const __m512 vmx = _mm512_max_ps(_mm512_max_ps(mx[0], mx[1]), _mm512_max_ps(mx[2], mx[3]));
  *min = _mm512_reduce_min_ps(vmn);
  *max = _mm512_reduce_max_ps(vmx);
  return nan != 0;
}

}  // namespace avx512
}  // namespace pyquant
