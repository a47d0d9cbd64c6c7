// AVX-512 quantize: 64 floats per step, masked tails, saturating narrow stores.
#include <immintrin.h>

#include "pyquant/kernels.h"

namespace pyquant {
namespace avx512 {
namespace {

struct Params {
  __m512 lo, hi;
  bool is_signed;
};

static inline __m512i quantize16(__m512 x, __m512 scale, __m512 zp, const Params& p,
                                 __mmask16* nan) {
  *nan |= _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  __m512 v = _mm512_div_ps(x, scale);
  v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  v = _mm512_add_ps(v, zp);
  v = _mm512_max_ps(v, p.lo);  // NaN -> lo, as in the scalar kernel
  v = _mm512_min_ps(v, p.hi);
  return _mm512_cvtps_epi32(v);
}

static inline void store16(uint8_t* y, __m512i q, __mmask16 m, bool is_signed) {
  if (is_signed)
    _mm512_mask_cvtsepi32_storeu_epi8(y, m, q);
  else
    _mm512_mask_cvtusepi32_storeu_epi8(y, m, q);
}

static bool quantize(const float* x, void* out, int64_t n, float scale, int32_t zero_point,
                     const Params& p) {
  uint8_t* y = static_cast<uint8_t*>(out);
  const __m512 vs = _mm512_set1_ps(scale), vz = _mm512_set1_ps(static_cast<float>(zero_point));
  __mmask16 nan = 0;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (int j = 0; j < 4; ++j)
      store16(y + i + 16 * j, quantize16(_mm512_loadu_ps(x + i + 16 * j), vs, vz, p, &nan),
              0xFFFF, p.is_signed);
  }
  for (; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << r) - 1);
    store16(y + i, quantize16(_mm512_maskz_loadu_ps(m, x + i), vs, vz, p, &nan), m, p.is_signed);
  }
  return nan != 0;
}

static bool quantize_vec(const float* x, void* out, int64_t n, const float* scale,
                         const int32_t* zero_point, const Params& p) {
  uint8_t* y = static_cast<uint8_t*>(out);
  __mmask16 nan = 0;
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << r) - 1);
    const __m512 s = _mm512_mask_loadu_ps(_mm512_set1_ps(1.0f), m, scale + i);
    const __m512 z = zero_point ? _mm512_cvtepi32_ps(_mm512_maskz_loadu_epi32(m, zero_point + i))
                                : _mm512_setzero_ps();
    store16(y + i, quantize16(_mm512_maskz_loadu_ps(m, x + i), s, z, p, &nan), m, p.is_signed);
  }
  return nan != 0;
}

static Params s8_params() { return {_mm512_set1_ps(-128.0f), _mm512_set1_ps(127.0f), true}; }
static Params u8_params() { return {_mm512_set1_ps(0.0f), _mm512_set1_ps(255.0f), false}; }

}  // namespace

bool f32_qs8_quantize(const float* x, void* y, int64_t n, float scale, int32_t zero_point) {
  return quantize(x, y, n, scale, zero_point, s8_params());
}
bool f32_qu8_quantize(const float* x, void* y, int64_t n, float scale, int32_t zero_point) {
  return quantize(x, y, n, scale, zero_point, u8_params());
}
bool f32_qs8_quantize_vec(const float* x, void* y, int64_t n, const float* scale,
                          const int32_t* zero_point) {
  return quantize_vec(x, y, n, scale, zero_point, s8_params());
}
bool f32_qu8_quantize_vec(const float* x, void* y, int64_t n, const float* scale,
                          const int32_t* zero_point) {
  return quantize_vec(x, y, n, scale, zero_point, u8_params());
}

}  // namespace avx512
}  // namespace pyquant
