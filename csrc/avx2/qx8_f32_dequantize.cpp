// AVX2 dequantize: widen 8 bytes to int32, subtract the zero point, convert, scale.
#include <immintrin.h>

#include <cstring>

#include "pyquant/kernels.h"

namespace pyquant {
namespace avx2 {
namespace {

static inline __m256i widen8(const uint8_t* q, bool is_signed) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q));
  return is_signed ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
}

static void dequantize(const void* in, float* y, int64_t n, float scale, int32_t zero_point,
                       bool is_signed) {
  const uint8_t* q = static_cast<const uint8_t*>(in);
  const __m256 vs = _mm256_set1_ps(scale);
  const __m256i vz = _mm256_set1_epi32(zero_point);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    for (int j = 0; j < 4; ++j) {
      const __m256i w = _mm256_sub_epi32(widen8(q + i + 8 * j, is_signed), vz);
      _mm256_storeu_ps(y + i + 8 * j, _mm256_mul_ps(_mm256_cvtepi32_ps(w), vs));
    }
  }
  for (; i < n; i += 8) {
    const int64_t r = n - i < 8 ? n - i : 8;
    alignas(16) uint8_t qb[8] = {0};
    alignas(32) float yb[8];
    memcpy(qb, q + i, r);
    const __m256i w = _mm256_sub_epi32(widen8(qb, is_signed), vz);
    _mm256_store_ps(yb, _mm256_mul_ps(_mm256_cvtepi32_ps(w), vs));
    memcpy(y + i, yb, r * sizeof(float));
  }
}

static void dequantize_vec(const void* in, float* y, int64_t n, const float* scale,
                           const int32_t* zero_point, bool is_signed) {
  const uint8_t* q = static_cast<const uint8_t*>(in);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i w = widen8(q + i, is_signed);
    if (zero_point)
      w = _mm256_sub_epi32(w, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zero_point + i)));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_cvtepi32_ps(w), _mm256_loadu_ps(scale + i)));
  }
  if (i < n) {
    const int64_t r = n - i;
    alignas(16) uint8_t qb[8] = {0};
    alignas(32) float sb[8] = {0}, yb[8];
    alignas(32) int32_t zb[8] = {0};
    memcpy(qb, q + i, r);
    memcpy(sb, scale + i, r * sizeof(float));
    if (zero_point) memcpy(zb, zero_point + i, r * sizeof(int32_t));
    const __m256i w = _mm256_sub_epi32(widen8(qb, is_signed), _mm256_load_si256(
                                                                  reinterpret_cast<const __m256i*>(zb)));
    _mm256_store_ps(yb, _mm256_mul_ps(_mm256_cvtepi32_ps(w), _mm256_load_ps(sb)));
    memcpy(y + i, yb, r * sizeof(float));
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

}  // namespace avx2
}  // namespace pyquant
