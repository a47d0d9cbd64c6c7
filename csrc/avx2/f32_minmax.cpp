// AVX2 min/max: four independent accumulators to hide the min/max latency; NaNs skipped.
#include <immintrin.h>

#include "pyquant/kernels.h"

namespace pyquant {
namespace avx2 {

bool f32_minmax(const float* x, int64_t n, float* min, float* max) {
  __m256 mn[4], mx[4];
  for (int j = 0; j < 4; ++j) {
    mn[j] = _mm256_set1_ps(__builtin_inff());
    mx[j] = _mm256_set1_ps(-__builtin_inff());
  }
  __m256 nan = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int j = 0; j < 4; ++j) {
      const __m256 v = _mm256_loadu_ps(x + i + 8 * j);
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      mn[j] = _mm256_min_ps(v, mn[j]);  // a NaN in v yields the second operand: skipped
      mx[j] = _mm256_max_ps(v, mx[j]);
    }
  }
  __m256 vmn = _mm256_min_ps(_mm256_min_ps(mn[0], mn[1]), _mm256_min_ps(mn[2], mn[3]));
  __m256 vmx = _mm256_max_ps(_mm256_max_ps(mx[0], mx[1]), _mm256_max_ps(mx[2], mx[3]));
  alignas(32) float a[8], b[8];
  _mm256_store_ps(a, vmn);
  _mm256_store_ps(b, vmx);
  float smn = a[0], smx = b[0];
  for (int j = 1; j < 8; ++j) {
    smn = a[j] < smn ? a[j] : smn;
    smx = b[j] > smx ? b[j] : smx;
  }
  bool has_nan = _mm256_movemask_ps(nan) != 0;
  for (; i < n; ++i) {
    const float v = x[i];
    has_nan |= v != v;
    smn = v < smn ? v : smn;
    smx = v > smx ? v : smx;
  }
  *min = smn;
  *max = smx;
  return has_nan;
}

}  // namespace avx2
}  // namespace pyquant
