// Portable scalar quantize: the fallback on any CPU and the oracle for the SIMD kernels.
#include <math.h>

#include "pyquant/kernels.h"

namespace pyquant {
namespace ref {
namespace {

// Saturate in float before converting, in the same order as the SIMD kernels
// (max then min, NaN lands on qmin), so every ISA writes identical bytes.
inline int32_t quantize_one(float x, float scale, float zero_point, float qmin, float qmax) {
  float v = rintf(x / scale) + zero_point;  // rintf: round half to even in the default mode
  v = v > qmin ? v : qmin;
  v = v < qmax ? v : qmax;
  return static_cast<int32_t>(v);
}

template <typename T>
bool quantize(const float* x, void* y, int64_t n, float scale, int32_t zero_point, float qmin,
              float qmax) {
  T* out = static_cast<T*>(y);
  bool nan = false;
  const float zp = static_cast<float>(zero_point);
  for (int64_t i = 0; i < n; ++i) {
    nan |= x[i] != x[i];
    out[i] = static_cast<T>(quantize_one(x[i], scale, zp, qmin, qmax));
  }
  return nan;
}

template <typename T>
bool quantize_vec(const float* x, void* y, int64_t n, const float* scale,
                  const int32_t* zero_point, float qmin, float qmax) {
  T* out = static_cast<T*>(y);
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) {
    nan |= x[i] != x[i];
    const float zp = zero_point ? static_cast<float>(zero_point[i]) : 0.0f;
    out[i] = static_cast<T>(quantize_one(x[i], scale[i], zp, qmin, qmax));
  }
  return nan;
}

}  // namespace

bool f32_qs8_quantize(const float* x, void* y, int64_t n, float scale, int32_t zero_point) {
  return quantize<int8_t>(x, y, n, scale, zero_point, -128.0f, 127.0f);
}
bool f32_qu8_quantize(const float* x, void* y, int64_t n, float scale, int32_t zero_point) {
  return quantize<uint8_t>(x, y, n, scale, zero_point, 0.0f, 255.0f);
}
bool f32_qs8_quantize_vec(const float* x, void* y, int64_t n, const float* scale,
                          const int32_t* zero_point) {
  return quantize_vec<int8_t>(x, y, n, scale, zero_point, -128.0f, 127.0f);
}
bool f32_qu8_quantize_vec(const float* x, void* y, int64_t n, const float* scale,
                          const int32_t* zero_point) {
  return quantize_vec<uint8_t>(x, y, n, scale, zero_point, 0.0f, 255.0f);
}

}  // namespace ref
}  // namespace pyquant
