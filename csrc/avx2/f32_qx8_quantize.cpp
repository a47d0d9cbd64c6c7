// AVX2 quantize: 32 floats per step, true division, round half to even, saturate in float.
#include <immintrin.h>

#include <cstring>

#include "pyquant/kernels.h"

namespace pyquant {
namespace avx2 {
namespace {

struct Params {
  __m256 lo, hi;
  bool is_signed;
};

// x / scale rounded half to even, as int32: one division, one rounding, one clamp and a
// conversion per 8 lanes. Only +2^30 is clamped: +Inf / huge values would convert to INT_MIN.
// -Inf, huge negatives and NaN convert to INT_MIN, which the saturating packs below turn into
// the dtype's minimum (NaN is also flagged). min(big, v) returns v when v is NaN.
static inline __m256i round8(__m256 x, __m256 scale) {
  __m256 v = _mm256_div_ps(x, scale);
  v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_set1_ps(0x1p30f), v));
}

// 4 x 8 rounded quotients -> 32 bytes in order: saturate to int16, add the zero point with
// int16 saturation, saturate to int8 / uint8. Equal to saturate(q + zero_point) for every q:
// anything clipped at +-32767 is far outside the 8-bit range even after a zero point <= 255.
static inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d, __m256i zp16,
                             bool is_signed) {
  const __m256i ab = _mm256_adds_epi16(_mm256_packs_epi32(a, b), zp16);
  const __m256i cd = _mm256_adds_epi16(_mm256_packs_epi32(c, d), zp16);
  const __m256i bytes = is_signed ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd);
  return _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// NaN check two vectors at a time: an unordered compare is true if either operand is NaN.
static inline __m256 nan4(__m256 a, __m256 b, __m256 c, __m256 d) {
  return _mm256_or_ps(_mm256_cmp_ps(a, b, _CMP_UNORD_Q), _mm256_cmp_ps(c, d, _CMP_UNORD_Q));
}

static inline void block32(const float* x, uint8_t* y, __m256 scale, __m256i zp16,
                           const Params& p, __m256* nan) {
  const __m256 x0 = _mm256_loadu_ps(x), x1 = _mm256_loadu_ps(x + 8);
  const __m256 x2 = _mm256_loadu_ps(x + 16), x3 = _mm256_loadu_ps(x + 24);
  *nan = _mm256_or_ps(*nan, nan4(x0, x1, x2, x3));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y),
                      pack32(round8(x0, scale), round8(x1, scale), round8(x2, scale),
                             round8(x3, scale), zp16, p.is_signed));
}

// The per-element-scale path keeps the float saturation of the scalar kernel (zero points
// differ per lane, so they cannot ride in one int16 add).
static inline __m256i quantize8(__m256 x, __m256 scale, __m256 zp, const Params& p, __m256* nan) {
  *nan = _mm256_or_ps(*nan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  __m256 v = _mm256_div_ps(x, scale);
  v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  v = _mm256_add_ps(v, zp);
  v = _mm256_max_ps(v, p.lo);  // NaN -> lo, as in the scalar kernel
  v = _mm256_min_ps(v, p.hi);
  return _mm256_cvtps_epi32(v);
}

static inline void block32_vec(const float* x, uint8_t* y, const float* scale, const int32_t* zp,
                               const Params& p, __m256* nan) {
  __m256i q[4];
  for (int j = 0; j < 4; ++j) {
    const __m256 z = zp ? _mm256_cvtepi32_ps(_mm256_loadu_si256(
                              reinterpret_cast<const __m256i*>(zp + 8 * j)))
                        : _mm256_setzero_ps();
    q[j] = quantize8(_mm256_loadu_ps(x + 8 * j), _mm256_loadu_ps(scale + 8 * j), z, p, nan);
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y),
                      pack32(q[0], q[1], q[2], q[3], _mm256_setzero_si256(), p.is_signed));
}

static bool quantize(const float* x, void* out, int64_t n, float scale, int32_t zero_point,
                     const Params& p) {
  uint8_t* y = static_cast<uint8_t*>(out);
  const __m256 vs = _mm256_set1_ps(scale);
  const __m256i vz = _mm256_set1_epi16(static_cast<int16_t>(zero_point));  // |zp| <= 255
  __m256 nan = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) block32(x + i, y + i, vs, vz, p, &nan);
  if (i < n) {  // tail through a zero-padded buffer
    const int64_t r = n - i;
    alignas(32) float xb[32] = {0};
    alignas(32) uint8_t yb[32];
    memcpy(xb, x + i, r * sizeof(float));
    block32(xb, yb, vs, vz, p, &nan);
    memcpy(y + i, yb, r);
  }
  return _mm256_movemask_ps(nan) != 0;
}

static bool quantize_vec(const float* x, void* out, int64_t n, const float* scale,
                         const int32_t* zero_point, const Params& p) {
  uint8_t* y = static_cast<uint8_t*>(out);
  __m256 nan = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    block32_vec(x + i, y + i, scale + i, zero_point ? zero_point + i : nullptr, p, &nan);
  if (i < n) {
    const int64_t r = n - i;
    alignas(32) float xb[32] = {0};
    alignas(32) float sb[32];
    alignas(32) int32_t zb[32] = {0};
    alignas(32) uint8_t yb[32];
    for (int j = 0; j < 32; ++j) sb[j] = 1.0f;
    memcpy(xb, x + i, r * sizeof(float));
    memcpy(sb, scale + i, r * sizeof(float));
    if (zero_point) memcpy(zb, zero_point + i, r * sizeof(int32_t));
    block32_vec(xb, yb, sb, zb, p, &nan);
    memcpy(y + i, yb, r);
  }
  return _mm256_movemask_ps(nan) != 0;
}

static Params s8_params() { return {_mm256_set1_ps(-128.0f), _mm256_set1_ps(127.0f), true}; }
static Params u8_params() { return {_mm256_set1_ps(0.0f), _mm256_set1_ps(255.0f), false}; }

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

}  // namespace avx2
}  // namespace pyquant
