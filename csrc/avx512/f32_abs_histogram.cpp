// AVX-512 histograms of the |x| keys: vector keys, NaN check and bucket test; scalar
// increments (a conflict-free scatter needs AVX-512CD and loses to scalar on heavy ties).
// Keys are below 2^31, so signed compares are exact.
#include <immintrin.h>

#include "pyquant/abs_key.h"
#include "pyquant/kernels.h"

namespace pyquant {
namespace avx512 {

using abs_key_detail::abs_key;

bool f32_abs_histogram_hi(const float* x, int64_t n, uint32_t* hist) {
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
  __m512i vmax = _mm512_setzero_si512();
  alignas(64) uint32_t idx[16];
  int64_t i = 0;
  for (; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << r) - 1);
    const __m512i k = _mm512_and_si512(_mm512_maskz_loadu_epi32(m, x + i), absmask);
    vmax = _mm512_max_epu32(vmax, k);  // masked-off lanes are 0: harmless
    _mm512_store_si512(idx, _mm512_srli_epi32(k, 15));
    for (int j = 0; j < r; ++j) ++hist[idx[j]];
  }
  return _mm512_cmpgt_epi32_mask(vmax, _mm512_set1_epi32(kAbsKeyMaxFinite)) != 0;
}

void f32_abs_histogram_lo(const float* x, int64_t n, uint32_t hi, uint32_t* hist) {
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
  const __m512i vhi = _mm512_set1_epi32(static_cast<int>(hi));
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << r) - 1);
    const __m512i k = _mm512_and_si512(_mm512_maskz_loadu_epi32(m, x + i), absmask);
    unsigned hit = _mm512_mask_cmpeq_epi32_mask(m, _mm512_srli_epi32(k, 15), vhi);
    while (hit) {
      const int lane = __builtin_ctz(hit);
      hit &= hit - 1;
      ++hist[abs_key(x + i + lane) & 0x7fffu];
    }
  }
}

}  // namespace avx512
}  // namespace pyquant

namespace pyquant {
namespace avx512 {

int64_t f32_abs_bracket(const float* x, int64_t n, uint32_t lo, uint32_t hi, uint32_t* buf,
                        int64_t cap, int64_t* above, bool* nan) {
  const __m512i absmask = _mm512_set1_epi32(0x7fffffff);
  const __m512i vhi = _mm512_set1_epi32(static_cast<int>(hi));
  const __m512i vlo = _mm512_set1_epi32(static_cast<int>(lo));
  __m512i vmax = _mm512_setzero_si512();
  int64_t cnt = 0, gt = 0;
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t r = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << r) - 1);
    const __m512i k = _mm512_and_si512(_mm512_maskz_loadu_epi32(m, x + i), absmask);
    vmax = _mm512_max_epu32(vmax, k);
    const __mmask16 g = _mm512_mask_cmpgt_epi32_mask(m, k, vhi);
    gt += __builtin_popcount(g);
    unsigned in = _mm512_mask_cmpge_epu32_mask(static_cast<__mmask16>(m & ~g), k, vlo);
    if (!in) continue;
    if (cnt + 16 <= cap) {
      _mm512_mask_compressstoreu_epi32(buf + cnt, static_cast<__mmask16>(in), k);
      cnt += __builtin_popcount(in);
    } else {
      while (in) {
        const int lane = __builtin_ctz(in);
        in &= in - 1;
        if (cnt < cap) buf[cnt] = abs_key(x + i + lane);
        ++cnt;
      }
    }
  }
  *above += gt;
  if (_mm512_cmpgt_epi32_mask(vmax, _mm512_set1_epi32(kAbsKeyMaxFinite)) != 0) *nan = true;
  return cnt;
}

}  // namespace avx512
}  // namespace pyquant
