// Portable scalar dequantize: y = float(q - zero_point) * scale.
#include "pyquant/kernels.h"

namespace pyquant {
namespace ref {
namespace {

template <typename T>
void dequantize(const void* q, float* y, int64_t n, float scale, int32_t zero_point) {
  const T* in = static_cast<const T*>(q);
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(in[i] - zero_point) * scale;
}

template <typename T>
void dequantize_vec(const void* q, float* y, int64_t n, const float* scale,
                    const int32_t* zero_point) {
  const T* in = static_cast<const T*>(q);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t zp = zero_point ? zero_point[i] : 0;
    y[i] = static_cast<float>(in[i] - zp) * scale[i];
  }
}

}  // namespace

void qs8_f32_dequantize(const void* q, float* y, int64_t n, float scale, int32_t zero_point) {
  dequantize<int8_t>(q, y, n, scale, zero_point);
}
void qu8_f32_dequantize(const void* q, float* y, int64_t n, float scale, int32_t zero_point) {
  dequantize<uint8_t>(q, y, n, scale, zero_point);
}
void qs8_f32_dequantize_vec(const void* q, float* y, int64_t n, const float* scale,
                            const int32_t* zero_point) {
  dequantize_vec<int8_t>(q, y, n, scale, zero_point);
}
void qu8_f32_dequantize_vec(const void* q, float* y, int64_t n, const float* scale,
                            const int32_t* zero_point) {
  dequantize_vec<uint8_t>(q, y, n, scale, zero_point);
}

}  // namespace ref
}  // namespace pyquant
