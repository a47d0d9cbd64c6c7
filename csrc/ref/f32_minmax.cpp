// Portable scalar min/max with NaN detection.
#include "pyquant/kernels.h"

namespace pyquant {
namespace ref {

bool f32_minmax(const float* x, int64_t n, float* min, float* max) {
  float mn = __builtin_inff(), mx = -__builtin_inff();
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    nan |= v != v;
    mn = v < mn ? v : mn;  // false for NaN: skipped
    mx = v > mx ? v : mx;
  }
  *min = mn;
  *max = mx;
  return nan;
}

}  // namespace ref
}  // namespace pyquant
