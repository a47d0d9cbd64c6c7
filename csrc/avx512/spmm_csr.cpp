// AVX-512 sparse x dense kernels (layouts in kernels.h and pyquant/sparse_format.md).
// Same schemes as csrc/avx2/spmm_csr.cpp with 16-float / 32-int16 vectors for the full
// 32-column panels; the narrower tail panels (M % 32) call the AVX2 kernels, which are plain
// out-of-line functions (valid on any AVX-512 CPU) so no inline code is shared.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "pyquant/kernels.h"

namespace pyquant {
namespace avx512 {
namespace {

constexpr int64_t kPrefetch = 256;  // entries ahead in the M = 1 kernel's weight streams

// fp32, W = 16 * NV columns (32 or 64): NV zmm per nonzero, 8 / NV accumulator groups (8 FMA
// chains), 16 / NV entries per step. The last entries of a run take one more step whose dead
// lanes re-read the run's last entry and are masked out of the FMA (so 0 * Inf never enters)
// instead of a scalar remainder loop and its second branch miss per run: 6-11% faster at 90%
// in a standalone loop of the 32-column kernel (4096 x 4096); in the op the gain is within the
// run-to-run noise.
template <int NV, typename I>
void spmm_wide(const float* values, const I* idx, int64_t n0, int64_t n1, const int64_t* begin,
               const int64_t* end_p, int64_t stride, const float* panel, int64_t ld, float* yt,
               int64_t out_ld, bool accumulate) {
  constexpr int kGroups = 8 / NV, kStep = 16 / NV;
  for (int64_t n = n0; n < n1; ++n) {
    float* out = yt + n * out_ld;
    __m512 a[kGroups][NV];
    for (int u = 0; u < kGroups; ++u)
      for (int j = 0; j < NV; ++j)
        a[u][j] = (u == 0 && accumulate) ? _mm512_loadu_ps(out + 16 * j) : _mm512_setzero_ps();
    int64_t p = begin[n * stride];
    const int64_t end = end_p[n * stride];
    for (; p + kStep <= end; p += kStep) {
      for (int u = 0; u < kStep; ++u) {
        const __m512 v = _mm512_set1_ps(values[p + u]);
        const float* xr = panel + static_cast<int64_t>(idx[p + u]) * ld;
        for (int j = 0; j < NV; ++j)
          a[u % kGroups][j] = _mm512_fmadd_ps(v, _mm512_loadu_ps(xr + 16 * j), a[u % kGroups][j]);
      }
    }
    if (p < end) {
      const int64_t last = end - 1;
      for (int u = 0; u < kStep; ++u) {
        const int64_t q = std::min(p + u, last);
        const __mmask16 live = static_cast<__mmask16>(-static_cast<int>(p + u <= last));
        const __m512 v = _mm512_set1_ps(values[q]);
        const float* xr = panel + static_cast<int64_t>(idx[q]) * ld;
        for (int j = 0; j < NV; ++j)
          a[u % kGroups][j] =
              _mm512_mask3_fmadd_ps(v, _mm512_loadu_ps(xr + 16 * j), a[u % kGroups][j], live);
      }
    }
    for (int j = 0; j < NV; ++j) {
      __m512 sum = a[0][j];
      for (int u = 1; u < kGroups; ++u) sum = _mm512_add_ps(sum, a[u][j]);
      _mm512_storeu_ps(out + 16 * j, sum);
    }
  }
}

static inline __m512i load_idx16(const uint16_t* p) {
  return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
static inline __m512i load_idx16(const int32_t* p) { return _mm512_loadu_si512(p); }
static inline __m512i load_idx16_masked(__mmask16 m, const uint16_t* p) {
  return _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p));
}
static inline __m512i load_idx16_masked(__mmask16 m, const int32_t* p) {
  return _mm512_maskz_loadu_epi32(m, p);
}

template <typename I>
void spmv(const SparseMatrix* w, const I* idx, int64_t n0, int64_t n1, const int64_t* begin,
          const int64_t* end_p, const float* x, float* y, bool accumulate) {
  const auto* values = static_cast<const float*>(w->values);
  for (int64_t n = n0; n < n1; ++n) {
    int64_t p = begin[n];
    const int64_t end = end_p[n];
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (; p + 32 <= end; p += 32) {
      // The weight streams run ahead of the hardware prefetcher here: 256 entries ahead
      // measured 0.60 -> 0.51 ms (4096 x 4096 at 90%, one thread); 1024 was no better.
      _mm_prefetch(reinterpret_cast<const char*>(values + p + kPrefetch), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(values + p + kPrefetch + 16), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(idx + p + kPrefetch), _MM_HINT_T0);
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(values + p),
                           _mm512_i32gather_ps(load_idx16(idx + p), x, 4), a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(values + p + 16),
                           _mm512_i32gather_ps(load_idx16(idx + p + 16), x, 4), a1);
    }
    if (p + 16 <= end) {
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(values + p),
                           _mm512_i32gather_ps(load_idx16(idx + p), x, 4), a0);
      p += 16;
    }
    if (p < end) {
      // 1-15 left: masked loads (lanes past the run are not read); their indices load as 0,
      // so the gather reads x[0] there, and the zeroing move drops it (x[0] may be Inf).
      const __mmask16 m = static_cast<__mmask16>((1u << (end - p)) - 1u);
      const __m512 g = _mm512_i32gather_ps(load_idx16_masked(m, idx + p), x, 4);
      a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, values + p), _mm512_maskz_mov_ps(m, g), a1);
    }
    const float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    y[n] = (accumulate ? y[n] : 0.0f) + s;
  }
}

// M = 1, int8: 16-wide gathers of xz, one vpmaddwd with the sign-extended values per 16
// entries (the exact products, see kernels.h), masked tail and prefetch as in spmv.
template <typename I>
void q_spmv(const SparseMatrix* w, const I* idx, int64_t n0, int64_t n1, const int64_t* begin,
            const int64_t* end_p, const int32_t* xz, int32_t* acc, bool accumulate) {
  const auto* values = static_cast<const int16_t*>(w->values);
  const auto values16 = [values](int64_t p) {
    return _mm512_cvtepi16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + p)));
  };
  for (int64_t n = n0; n < n1; ++n) {
    int64_t p = begin[n];
    const int64_t end = end_p[n];
    __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
    for (; p + 32 <= end; p += 32) {
      _mm_prefetch(reinterpret_cast<const char*>(values + p + kPrefetch), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(idx + p + kPrefetch), _MM_HINT_T0);
      a0 = _mm512_add_epi32(
          a0, _mm512_madd_epi16(_mm512_i32gather_epi32(load_idx16(idx + p), xz, 4), values16(p)));
      a1 = _mm512_add_epi32(a1, _mm512_madd_epi16(
                                    _mm512_i32gather_epi32(load_idx16(idx + p + 16), xz, 4),
                                    values16(p + 16)));
    }
    if (p + 16 <= end) {
      a0 = _mm512_add_epi32(
          a0, _mm512_madd_epi16(_mm512_i32gather_epi32(load_idx16(idx + p), xz, 4), values16(p)));
      p += 16;
    }
    if (p < end) {
      // 1-15 left: masked loads and a masked gather (lanes past the run read nothing).
      const __mmask16 m = static_cast<__mmask16>((1u << (end - p)) - 1u);
      const __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m,
                                                    load_idx16_masked(m, idx + p), xz, 4);
      const __m512i v = _mm512_cvtepi16_epi32(_mm256_maskz_loadu_epi16(m, values + p));
      a1 = _mm512_add_epi32(a1, _mm512_madd_epi16(g, v));
    }
    acc[n] = (accumulate ? acc[n] : 0) + _mm512_reduce_add_epi32(_mm512_add_epi32(a0, a1));
  }
}

// int8, W = 32: one zmm of int16 per panel row. unpacklo/hi work per 128-bit lane, so lo
// holds columns {8q .. 8q+3} and hi {8q+4 .. 8q+7} of lane q; a two-source permute restores
// column order.
template <typename I>
void q32(const int16_t* values, const I* idx, int64_t n0, int64_t n1, const int64_t* begin,
         const int64_t* end_p, int64_t stride, const int16_t* panel, int32_t* acct,
         bool accumulate) {
  const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i second =
      _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  for (int64_t n = n0; n < n1; ++n) {
    int32_t* out = acct + n * 32;
    __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
    const int64_t end = end_p[n * stride];
    for (int64_t p = begin[n * stride]; p < end; p += 2) {
      int32_t pair;
      __builtin_memcpy(&pair, values + p, 4);
      const __m512i wp = _mm512_set1_epi32(pair);
      const __m512i a = _mm512_loadu_si512(panel + static_cast<int64_t>(idx[p]) * 32);
      const __m512i b = _mm512_loadu_si512(panel + static_cast<int64_t>(idx[p + 1]) * 32);
      lo = _mm512_add_epi32(lo, _mm512_madd_epi16(_mm512_unpacklo_epi16(a, b), wp));
      hi = _mm512_add_epi32(hi, _mm512_madd_epi16(_mm512_unpackhi_epi16(a, b), wp));
    }
    __m512i r0 = _mm512_permutex2var_epi32(lo, first, hi);
    __m512i r1 = _mm512_permutex2var_epi32(lo, second, hi);
    if (accumulate) {
      r0 = _mm512_add_epi32(r0, _mm512_loadu_si512(out));
      r1 = _mm512_add_epi32(r1, _mm512_loadu_si512(out + 16));
    }
    _mm512_storeu_si512(out, r0);
    _mm512_storeu_si512(out + 16, r1);
  }
}

// fp32 16 x 1 tiles: the 16 rows of a group share their columns, so each column's 16 row
// weights are one 64-byte load and each of the 16 panel columns' inputs one broadcast: 16 FMAs
// into 16 accumulators (16 independent chains) per group column, 18 loads (weights, column,
// 16 broadcasts) where the CSR kernel spends 32 on the same 256 products (per entry and 32
// columns two 64-byte panel halves, a value and an index; this core sustains ~1.2 such 64-byte
// loads per cycle). Lanes run along rows, so a column's accumulator is
// 16 contiguous outputs of y's row: the bias is added and y written here (masked for a partial
// last group). Same order of roundings as ref: one FMA per held column from 0, then the bias.
void f32_tiles(const F32Tiles* w, int64_t n, int64_t g0, int64_t g1, const float* panel,
               int64_t m0, int64_t valid, const float* bias, float* y) {
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t r0 = g * 16;
    const __mmask16 live = static_cast<__mmask16>(n - r0 >= 16 ? 0xFFFF : (1u << (n - r0)) - 1u);
    __m512 a[16];
    for (int j = 0; j < 16; ++j) a[j] = _mm512_setzero_ps();
    const int32_t* cols = w->group_col;
    const float* wv = w->group_w + w->group_ptr[g] * 16;
    for (int64_t i = w->group_ptr[g], e = w->group_ptr[g + 1]; i < e; ++i, wv += 16) {
      const __m512 wr = _mm512_loadu_ps(wv);
      // Empty slots (0: the pack stores no zeros) are masked out, so as in CSR a NaN / Inf
      // input reaches only the rows that hold its column.
      const __mmask16 held = _mm512_cmp_ps_mask(wr, _mm512_setzero_ps(), _CMP_NEQ_OQ);
      const float* xr = panel + static_cast<int64_t>(cols[i]) * 16;
      for (int j = 0; j < 16; ++j)
        a[j] = _mm512_mask3_fmadd_ps(wr, _mm512_set1_ps(xr[j]), a[j], held);
    }
    // Through memory, as in the int8 tile kernel: indexing a[] by the runtime column count
    // would make GCC shuffle the accumulators in the loop above.
    alignas(64) float sums[16 * 16];
    for (int j = 0; j < 16; ++j) _mm512_store_ps(sums + 16 * j, a[j]);
    const __m512 b = bias ? _mm512_maskz_loadu_ps(live, bias + r0) : _mm512_setzero_ps();
    for (int j = 0; j < valid; ++j)
      _mm512_mask_storeu_ps(y + (m0 + j) * n + r0, live,
                            _mm512_add_ps(_mm512_load_ps(sums + 16 * j), b));
  }
}

}  // namespace

void f32_spmm_tiles(const F32Tiles* w, int64_t n, int64_t g0, int64_t g1, const float* panel,
                    int64_t m0, int64_t valid, const float* bias, float* y) {
  f32_tiles(w, n, g0, g1, panel, m0, valid, bias, y);
}

void f32_spmm_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                  const int64_t* end, int64_t stride, const float* panel, int64_t width,
                  int64_t panel_ld, float* yt, int64_t out_ld, bool accumulate) {
  const auto* v = static_cast<const float*>(w->values);
  const auto* i16 = w->idx16;
  const auto* i32 = w->idx32;
  if (width == 32) {
    if (i16) spmm_wide<2>(v, i16, n0, n1, begin, end, stride, panel, panel_ld, yt, out_ld,
                        accumulate);
    else spmm_wide<2>(v, i32, n0, n1, begin, end, stride, panel, panel_ld, yt, out_ld,
                          accumulate);
  } else if (width == 64) {
    if (i16) spmm_wide<4>(v, i16, n0, n1, begin, end, stride, panel, panel_ld, yt, out_ld,
                        accumulate);
    else spmm_wide<4>(v, i32, n0, n1, begin, end, stride, panel, panel_ld, yt, out_ld,
                          accumulate);
  } else {
    avx2::f32_spmm_csr(w, n0, n1, begin, end, stride, panel, width, panel_ld, yt, out_ld,
                       accumulate);
  }
}

void f32_spmv_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                  const int64_t* end, const float* x, float* y, bool accumulate) {
  if (w->idx16) spmv(w, w->idx16, n0, n1, begin, end, x, y, accumulate);
  else spmv(w, w->idx32, n0, n1, begin, end, x, y, accumulate);
}

void qs16_spmm_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                   const int64_t* end, int64_t stride, const int16_t* panel, int64_t width,
                   int32_t* acct, bool accumulate) {
  if (width != 32)
    return avx2::qs16_spmm_csr(w, n0, n1, begin, end, stride, panel, width, acct, accumulate);
  const auto* v = static_cast<const int16_t*>(w->values);
  if (w->idx16) q32(v, w->idx16, n0, n1, begin, end, stride, panel, acct, accumulate);
  else q32(v, w->idx32, n0, n1, begin, end, stride, panel, acct, accumulate);
}

void qs16_spmv_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                   const int64_t* end, const int32_t* xz, int32_t* acc, bool accumulate) {
  if (w->idx16) q_spmv(w, w->idx16, n0, n1, begin, end, xz, acc, accumulate);
  else q_spmv(w, w->idx32, n0, n1, begin, end, xz, acc, accumulate);
}

}  // namespace avx512
}  // namespace pyquant
