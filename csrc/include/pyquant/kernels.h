// Kernel signatures and the per-ISA declarations.
//
// Every kernel exists once per ISA namespace (pyquant::ref, pyquant::avx2, pyquant::avx512),
// in a file of the same stem in csrc/<isa>/. Kernels are single-threaded and work on a
// contiguous range; the ops in csrc/ops/ split the work and pick the kernel via dispatch.h.
#pragma once

#include <cstdint>

namespace pyquant {

// ONNX QuantizeLinear on n contiguous floats with one scale:
//   y[i] = saturate(round_half_to_even(x[i] / scale) + zero_point)   (true division)
// y is int8_t* or uint8_t* by the kernel's name. Returns true if any x[i] is NaN
// (NaN elements are written as the dtype's minimum; the op turns the flag into an error).
using QuantizeFn = bool (*)(const float* x, void* y, int64_t n, float scale, int32_t zero_point);
// Same, element i with scale[i] and zero_point[i]; zero_point may be null (all zero).
using QuantizeVecFn = bool (*)(const float* x, void* y, int64_t n, const float* scale,
                               const int32_t* zero_point);
// ONNX DequantizeLinear: y[i] = float(q[i] - zero_point) * scale.
using DequantizeFn = void (*)(const void* q, float* y, int64_t n, float scale, int32_t zero_point);
using DequantizeVecFn = void (*)(const void* q, float* y, int64_t n, const float* scale,
                                 const int32_t* zero_point);
// Minimum and maximum of n >= 1 floats, NaNs skipped (both stay +-inf if all are NaN).
// Returns true if any x[i] is NaN.
using MinMaxFn = bool (*)(const float* x, int64_t n, float* min, float* max);

}  // namespace pyquant

#define PYQUANT_DECLARE_KERNELS(ns)                                                            \
  namespace ns {                                                                               \
  bool f32_qs8_quantize(const float* x, void* y, int64_t n, float scale, int32_t zero_point); \
  bool f32_qu8_quantize(const float* x, void* y, int64_t n, float scale, int32_t zero_point); \
  bool f32_qs8_quantize_vec(const float* x, void* y, int64_t n, const float* scale,           \
                            const int32_t* zero_point);                                        \
  bool f32_qu8_quantize_vec(const float* x, void* y, int64_t n, const float* scale,           \
                            const int32_t* zero_point);                                        \
  void qs8_f32_dequantize(const void* q, float* y, int64_t n, float scale, int32_t zero_point); \
  void qu8_f32_dequantize(const void* q, float* y, int64_t n, float scale, int32_t zero_point); \
  void qs8_f32_dequantize_vec(const void* q, float* y, int64_t n, const float* scale,         \
                              const int32_t* zero_point);                                      \
  void qu8_f32_dequantize_vec(const void* q, float* y, int64_t n, const float* scale,         \
                              const int32_t* zero_point);                                      \
  bool f32_minmax(const float* x, int64_t n, float* min, float* max);                          \
  }

namespace pyquant {
PYQUANT_DECLARE_KERNELS(ref)
PYQUANT_DECLARE_KERNELS(avx2)
PYQUANT_DECLARE_KERNELS(avx512)
}  // namespace pyquant
