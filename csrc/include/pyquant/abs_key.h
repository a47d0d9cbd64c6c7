// Scalar helpers of the magnitude-selection kernels, shared by every ISA folder. Everything
// here is `static inline` (internal linkage): each ISA file gets its own copy compiled with its
// own flags, so no weak symbol built with -mavx512f can stand in for the scalar one.
#pragma once

#include <cstdint>

namespace pyquant {
namespace abs_key_detail {

// The ordering key of |x|: the float's bits without the sign (kernels.h).
static inline uint32_t abs_key(const float* p) {
  uint32_t b;
  __builtin_memcpy(&b, p, sizeof b);
  return b & 0x7fffffffu;
}

// Keep a key above the threshold, or one equal to it while the tie quota lasts.
static inline bool keep_scalar(uint32_t k, uint32_t t, int64_t* ties) {
  if (k > t) return true;
  if (k == t && *ties > 0) {
    --*ties;
    return true;
  }
  return false;
}

}  // namespace abs_key_detail
}  // namespace pyquant
