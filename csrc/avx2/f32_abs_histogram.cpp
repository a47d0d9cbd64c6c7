// AVX2 histograms of the |x| keys: keys and the NaN check are vectorized; the increments stay
// scalar (AVX2 has no scatter), fed from a stored vector of bucket indices.
#include <immintrin.h>

#include "pyquant/abs_key.h"
#include "pyquant/kernels.h"

namespace pyquant {
namespace avx2 {

using abs_key_detail::abs_key;

bool f32_abs_histogram_hi(const float* x, int64_t n, uint32_t* hist) {
  const __m256i absmask = _mm256_set1_epi32(0x7fffffff);
  __m256i vmax = _mm256_setzero_si256();
  alignas(32) uint32_t idx[16];
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(x + i)), absmask);
    const __m256i b = _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(x + i + 8)), absmask);
    vmax = _mm256_max_epu32(vmax, _mm256_max_epu32(a, b));
    _mm256_store_si256((__m256i*)idx, _mm256_srli_epi32(a, 15));
    _mm256_store_si256((__m256i*)(idx + 8), _mm256_srli_epi32(b, 15));
    for (int j = 0; j < 16; ++j) ++hist[idx[j]];
  }
  // Keys are < 2^31, so a signed compare against Inf's key finds a NaN.
  bool nan = _mm256_movemask_epi8(_mm256_cmpgt_epi32(vmax, _mm256_set1_epi32(kAbsKeyMaxFinite))) != 0;
  for (; i < n; ++i) {
    const uint32_t k = abs_key(x + i);
    nan |= k > kAbsKeyMaxFinite;
    ++hist[k >> 15];
  }
  return nan;
}

void f32_abs_histogram_lo(const float* x, int64_t n, uint32_t hi, uint32_t* hist) {
  const __m256i absmask = _mm256_set1_epi32(0x7fffffff);
  const __m256i vhi = _mm256_set1_epi32(static_cast<int>(hi));
  int64_t i = 0;
  // Almost every element misses the bucket: test 32 at a time and only then look closer.
  for (; i + 32 <= n; i += 32) {
    __m256i eq[4];
    for (int j = 0; j < 4; ++j) {
      const __m256i k =
          _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(x + i + 8 * j)), absmask);
      eq[j] = _mm256_cmpeq_epi32(_mm256_srli_epi32(k, 15), vhi);
    }
    const __m256i any = _mm256_or_si256(_mm256_or_si256(eq[0], eq[1]), _mm256_or_si256(eq[2], eq[3]));
    if (_mm256_testz_si256(any, any)) continue;
    for (int j = 0; j < 4; ++j) {
      unsigned m = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(eq[j])));
      while (m) {
        const int lane = __builtin_ctz(m);
        m &= m - 1;
        ++hist[abs_key(x + i + 8 * j + lane) & 0x7fffu];
      }
    }
  }
  for (; i < n; ++i) {
    const uint32_t k = abs_key(x + i);
    if ((k >> 15) == hi) ++hist[k & 0x7fffu];
  }
}

}  // namespace avx2
}  // namespace pyquant

namespace pyquant {
namespace avx2 {

int64_t f32_abs_bracket(const float* x, int64_t n, uint32_t lo, uint32_t hi, uint32_t* buf,
                        int64_t cap, int64_t* above, bool* nan) {
  const __m256i absmask = _mm256_set1_epi32(0x7fffffff);
  // Keys, lo and hi are all < 2^31: signed compares are exact. lo - 1 may be -1: still exact.
  const __m256i vhi = _mm256_set1_epi32(static_cast<int>(hi));
  const __m256i vlo1 = _mm256_set1_epi32(static_cast<int>(lo) - 1);
  __m256i vmax = _mm256_setzero_si256(), acc = _mm256_setzero_si256();
  int64_t cnt = 0, gt_tail = 0;
  int64_t i = 0;
  // acc counts per lane: at most n / 8 < 2^31 per lane (tasks stay below 2^30 elements).
  for (; i + 16 <= n; i += 16) {
    // One cache line per iteration; the loop is bound by memory, so fetch well ahead.
    _mm_prefetch(reinterpret_cast<const char*>(x + i) + 1024, _MM_HINT_T0);
    const __m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(x + i)), absmask);
    const __m256i b = _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(x + i + 8)), absmask);
    vmax = _mm256_max_epu32(vmax, _mm256_max_epu32(a, b));
    const __m256i ga = _mm256_cmpgt_epi32(a, vhi), gb = _mm256_cmpgt_epi32(b, vhi);
    acc = _mm256_sub_epi32(_mm256_sub_epi32(acc, ga), gb);
    // in [lo, hi]  <=>  key > lo - 1 and not key > hi
    const __m256i ia = _mm256_andnot_si256(ga, _mm256_cmpgt_epi32(a, vlo1));
    const __m256i ib = _mm256_andnot_si256(gb, _mm256_cmpgt_epi32(b, vlo1));
    unsigned m = static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(ia))) |
                 (static_cast<unsigned>(_mm256_movemask_ps(_mm256_castsi256_ps(ib))) << 8);
    while (m) {
      const int lane = __builtin_ctz(m);
      m &= m - 1;
      if (cnt < cap) buf[cnt] = abs_key(x + i + lane);
      ++cnt;
    }
  }
  alignas(32) uint32_t lanes[8];
  _mm256_store_si256((__m256i*)lanes, acc);
  bool has_nan =
      _mm256_movemask_epi8(_mm256_cmpgt_epi32(vmax, _mm256_set1_epi32(kAbsKeyMaxFinite))) != 0;
  for (; i < n; ++i) {
    const uint32_t k = abs_key(x + i);
    has_nan |= k > kAbsKeyMaxFinite;
    gt_tail += k > hi;
    if (k >= lo && k <= hi) {
      if (cnt < cap) buf[cnt] = k;
      ++cnt;
    }
  }
  int64_t gt = gt_tail;
  for (int j = 0; j < 8; ++j) gt += lanes[j];
  *above += gt;
  if (has_nan) *nan = true;
  return cnt;
}

}  // namespace avx2
}  // namespace pyquant
