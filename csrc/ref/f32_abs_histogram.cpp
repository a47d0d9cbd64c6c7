// Portable scalar histograms of the |x| keys for the radix select (see kernels.h).
#include <cstring>

#include "pyquant/kernels.h"

namespace pyquant {
namespace ref {

namespace {
static inline uint32_t abs_key(float v) {
  uint32_t b;
  std::memcpy(&b, &v, sizeof b);
  return b & 0x7fffffffu;
}
}  // namespace

bool f32_abs_histogram_hi(const float* x, int64_t n, uint32_t* hist) {
  uint32_t max_key = 0;  // one compare at the end instead of a branch per element
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t k = abs_key(x[i]);
    max_key = k > max_key ? k : max_key;
    ++hist[k >> 15];
  }
  return max_key > kAbsKeyMaxFinite;
}

void f32_abs_histogram_lo(const float* x, int64_t n, uint32_t hi, uint32_t* hist) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t k = abs_key(x[i]);
    if ((k >> 15) == hi) ++hist[k & 0x7fffu];
  }
}

}  // namespace ref
}  // namespace pyquant

namespace pyquant {
namespace ref {

int64_t f32_abs_bracket(const float* x, int64_t n, uint32_t lo, uint32_t hi, uint32_t* buf,
                        int64_t cap, int64_t* above, bool* nan) {
  int64_t cnt = 0, gt = 0;
  uint32_t max_key = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t k = abs_key(x[i]);
    max_key = k > max_key ? k : max_key;
    gt += k > hi;
    if (k >= lo && k <= hi) {
      if (cnt < cap) buf[cnt] = k;
      ++cnt;
    }
  }
  *above += gt;
  if (max_key > kAbsKeyMaxFinite) *nan = true;
  return cnt;
}

}  // namespace ref
}  // namespace pyquant
