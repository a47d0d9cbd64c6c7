// Portable scalar selection by |x| against a key threshold, ties kept in index order.
#include <cstring>

#include "pyquant/kernels.h"

namespace pyquant {
namespace ref {

namespace {
inline uint32_t abs_key(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b & 0x7fffffffu;
}
}  // namespace

void f32_abs_select_mask(const float* x, int64_t n, uint32_t t, int64_t* ties_left,
                         uint8_t* mask) {
  int64_t ties = *ties_left;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t k = abs_key(x[i]);
    bool keep = k > t;
    if (k == t && ties > 0) {
      keep = true;
      --ties;
    }
    mask[i] = keep ? 1 : 0;
  }
  *ties_left = ties;
}

int64_t f32_abs_select_prune(float* x, int64_t n, uint32_t t, int64_t* ties_left) {
  int64_t ties = *ties_left, kept = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t k = abs_key(x[i]);
    bool keep = k > t;
    if (k == t && ties > 0) {
      keep = true;
      --ties;
    }
    if (!keep) x[i] = 0.0f;
    kept += keep;
  }
  *ties_left = ties;
  return kept;
}

}  // namespace ref
}  // namespace pyquant
