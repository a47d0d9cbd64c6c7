// Portable scalar histograms of the |x| keys for the radix select (see kernels.h).
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

bool f32_abs_histogram_hi(const float* x, int64_t n, uint32_t* hist) {
  uint32_t max_key = 0;  // one compare at the end instead of a branch per element
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t k = abs_key(x[i]);
    max_key = k > max_key ? k : max_key;
    ++hist[k >> 15];
  }
  return max_key > kAbsKeyInf;
}

void f32_abs_histogram_lo(const float* x, int64_t n, uint32_t hi, uint32_t* hist) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t k = abs_key(x[i]);
    if ((k >> 15) == hi) ++hist[k & 0x7fffu];
  }
}

}  // namespace ref
}  // namespace pyquant
