// AVX-512 dequantize: widen 16 bytes to int32, subtract the zero point, convert, scale.
#include <immintrin.h>

#include "pyquant/kernels.h"

namespace pyquant {
namespace avx512 {
namespace {

static inline __m512i widen16(const uint8_t* q, __mmask16 m, bool is_signed) {
  const __m128i b = _mm_maskz_loadu_epi8(m, q);
  return is_signed ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b);
}

static void dequantize(const void* in, float* y, int64_t n, float scale, int32_t zero_point,
                       bool is_signed) {
  const uint8_t* q = static_cast<const uint8_t*>(in);
  const __m512 vs = _mm512_set1_ps(scale);
  const __m512i vz = _mm512_set1_epi32(zero_point);
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (int j = 0; j < 4; ++j) {
      const __m512i w = _mm512_sub_epi32(widen16(q + i + 16 * j, 0xFFFF, is_signed), vz);
      _mm512_storeu_ps(y + i + 16 * j, _mm512_mul_ps(_mm512_cvtepi32_ps(w), vs));
    }
  }
  for (; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << r) - 1);
    const __m512i w = _mm512_sub_epi32(widen16(q + i, m, is_signed), vz);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_cvtepi32_ps(w), vs));
  }
}

static void dequantize_vec(const void* in, float* y, int64_t n, const float* scale,
                           const int32_t* zero_point, bool is_signed) {
  const uint8_t* q = static_cast<const uint8_t*>(in);
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << r) - 1);
    __m512i w = widen16(q + i, m, is_signed);
    if (zero_point) w = _mm512_sub_epi32(w, _mm512_maskz_loadu_epi32(m, zero_point + i));
    const __m512 s = _mm512_maskz_loadu_ps(m, scale + i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_cvtepi32_ps(w), s));
  }
}

}  // namespace

void qs8_f32_dequantize(const void* q, float* y, int64_t n, float scale, int32_t zero_point) {
  dequantize(q, y, n, scale, zero_point, true);
}
void qu8_f32_dequantize(const void* q, float* y, int64_t n, float scale, int32_t zero_point) {
  dequantize(q, y, n, scale, zero_point, false);
}
void qs8_f32_dequantize_vec(const void* q, float* y, int64_t n, const float* scale,
                            const int32_t* zero_point) {
  dequantize_vec(q, y, n, scale, zero_point, true);
}
void qu8_f32_dequantize_vec(const void* q, float* y, int64_t n, const float* scale,
                            const int32_t* zero_point) {
  dequantize_vec(q, y, n, scale, zero_point, false);
}

}  // namespace avx512
}  // namespace pyquant
