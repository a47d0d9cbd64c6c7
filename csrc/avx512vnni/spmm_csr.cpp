// int8 sparse x dense with AVX-512 VNNI. Pairs: the AVX-512 scheme (csrc/avx512/spmm_csr.cpp)
// with each pair's vpmaddwd + vpaddd fused into one vpdpwssd; tail panels (M % 32) take the
// AVX2 kernel, an out-of-line function valid on any AVX-512 CPU. Quads (1 x 4 blocks): one
// vpdpbusd per quad and 16 columns on uint8 activations.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#include "pyquant/kernels.h"

namespace pyquant {
namespace avx512vnni {
namespace {

// One zmm of int16 per panel row; unpacklo/hi work per 128-bit lane, so lo holds columns
// {8q .. 8q+3} and hi {8q+4 .. 8q+7} of lane q, and a two-source permute restores column order.
template <typename I>
void q32(const int16_t* values, const I* idx, int64_t n0, int64_t n1, const int64_t* begin,
         const int64_t* end_p, int64_t stride, const int16_t* panel, int32_t* acct,
         bool accumulate) {
  const __m512i first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
  const __m512i second =
      _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
  const auto pair = [&](int64_t p, __m512i& lo, __m512i& hi) {
    int32_t wpair;
    __builtin_memcpy(&wpair, values + p, 4);
    const __m512i wp = _mm512_set1_epi32(wpair);
    const __m512i a = _mm512_loadu_si512(panel + static_cast<int64_t>(idx[p]) * 32);
    const __m512i b = _mm512_loadu_si512(panel + static_cast<int64_t>(idx[p + 1]) * 32);
    lo = _mm512_dpwssd_epi32(lo, _mm512_unpacklo_epi16(a, b), wp);
    hi = _mm512_dpwssd_epi32(hi, _mm512_unpackhi_epi16(a, b), wp);
  };
  for (int64_t n = n0; n < n1; ++n) {
    int32_t* out = acct + n * 32;
    __m512i lo0 = _mm512_setzero_si512(), hi0 = _mm512_setzero_si512();
    __m512i lo1 = _mm512_setzero_si512(), hi1 = _mm512_setzero_si512();
    const int64_t end = end_p[n * stride];
    int64_t p = begin[n * stride];
    // Two pairs in flight (runs have an even length: at most one pair is left): vpdpwssd's
    // accumulator chain has a latency vpaddd's lacks; 2-5% over one pair in alternating runs.
    for (; p + 4 <= end; p += 4) {
      pair(p, lo0, hi0);
      pair(p + 2, lo1, hi1);
    }
    if (p < end) pair(p, lo0, hi0);
    const __m512i lo = _mm512_add_epi32(lo0, lo1), hi = _mm512_add_epi32(hi0, hi1);
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

// Quads: one vpdpbusd per quad and 16 columns (the panel row of quad q is already in VNNI order),
// C zmm per quad for a 16 * C column panel, 4 quads in flight.
template <int C>
void quads(const QuadMatrix* w, int64_t n0, int64_t n1, const int64_t* begin, const int64_t* end_p,
           int64_t stride, const uint8_t* panel, const int32_t* zp, int32_t* acct,
           bool accumulate) {
  constexpr int64_t W = 16 * C;
  __m512i zpv[C];
  for (int c = 0; c < C; ++c) zpv[c] = _mm512_loadu_si512(zp + 16 * c);
  for (int64_t n = n0; n < n1; ++n) {
    int32_t* out = acct + n * W;
    __m512i a[4][C];
    for (int u = 0; u < 4; ++u)
      for (int c = 0; c < C; ++c) a[u][c] = _mm512_setzero_si512();
    const __m512i neg_sum = _mm512_set1_epi32(-w->row_sum[n]);
    for (int c = 0; c < C; ++c)
      a[0][c] = accumulate ? _mm512_loadu_si512(out + 16 * c) : _mm512_mullo_epi32(zpv[c], neg_sum);
    int64_t i = begin[n * stride] / 4;
    const int64_t e = end_p[n * stride] / 4;
    for (; i + 4 <= e; i += 4) {
      for (int u = 0; u < 4; ++u) {
        const __m512i wq = _mm512_set1_epi32(w->quad_w[i + u]);
        const uint8_t* xr = panel + static_cast<int64_t>(w->quad_col[i + u]) * (W * 4);
        for (int c = 0; c < C; ++c)
          a[u][c] = _mm512_dpbusd_epi32(a[u][c], _mm512_loadu_si512(xr + 64 * c), wq);
      }
    }
    for (; i < e; ++i) {
      const __m512i wq = _mm512_set1_epi32(w->quad_w[i]);
      const uint8_t* xr = panel + static_cast<int64_t>(w->quad_col[i]) * (W * 4);
      for (int c = 0; c < C; ++c)
        a[0][c] = _mm512_dpbusd_epi32(a[0][c], _mm512_loadu_si512(xr + 64 * c), wq);
    }
    for (int c = 0; c < C; ++c)
      _mm512_storeu_si512(out + 16 * c, _mm512_add_epi32(_mm512_add_epi32(a[0][c], a[1][c]),
                                                         _mm512_add_epi32(a[2][c], a[3][c])));
  }
}

// 16 x 4 tiles: the 16 rows of a group share their quads, so each quad's 16 row weights are one
// 64-byte load, and each of the 16 columns' 4 inputs (64 contiguous panel bytes) one broadcast:
// 16 vpdpbusd per quad into 16 accumulators, one per column (16 independent chains). Lanes run
// along rows, so a column's accumulator is 16 contiguous outputs of y's row and the epilogue
// is fused (masked for a partial last group).
void tiles(const QuadMatrix* w, int64_t n, int64_t g0, int64_t g1, const uint8_t* panel,
           int64_t m0, int64_t valid, const int32_t* zp, const TileOut* out) {
  for (int64_t g = g0; g < g1; ++g) {
    const int64_t r0 = g * 16;
    const __mmask16 live = static_cast<__mmask16>(n - r0 >= 16 ? 0xFFFF : (1u << (n - r0)) - 1u);
    const __m512i row_sum = _mm512_maskz_loadu_epi32(live, w->row_sum + r0);
    __m512i a[16];
    for (int j = 0; j < 16; ++j) a[j] = _mm512_mullo_epi32(row_sum, _mm512_set1_epi32(-zp[j]));
    const int32_t* cols = w->group_col;
    const int32_t* wq = w->group_w + w->group_ptr[g] * 16;
    for (int64_t i = w->group_ptr[g], e = w->group_ptr[g + 1]; i < e; ++i, wq += 16) {
      const __m512i wv = _mm512_loadu_si512(wq);
      const auto* xr = reinterpret_cast<const int32_t*>(panel + static_cast<int64_t>(cols[i]) * 64);
      for (int j = 0; j < 16; ++j) a[j] = _mm512_dpbusd_epi32(a[j], _mm512_set1_epi32(xr[j]), wv);
    }
    // Through memory: indexing a[] by the runtime column count makes GCC shuffle all 16
    // accumulators between registers (and the stack) in the loop above.
    alignas(64) int32_t sums[16 * 16];
    for (int j = 0; j < 16; ++j) _mm512_store_si512(sums + 16 * j, a[j]);
    if (out->acc != nullptr) {
      for (int j = 0; j < valid; ++j)
        _mm512_mask_storeu_epi32(out->acc + (m0 + j) * n + r0, live,
                                 _mm512_load_si512(sums + 16 * j));
    } else {
      const __m512 ws = _mm512_maskz_loadu_ps(live, out->w_scale + r0);
      const __m512 b =
          out->bias ? _mm512_maskz_loadu_ps(live, out->bias + r0) : _mm512_setzero_ps();
      for (int j = 0; j < valid; ++j) {
        const __m512 s = _mm512_mul_ps(_mm512_set1_ps(out->x_scale[m0 + j]), ws);
        // The product rounded on its own (the explicit-rounding multiply is opaque to GCC,
        // which would contract a plain mul + add into one FMA: fp-contract is fast by
        // default), so y matches the other int8 paths to the last bit.
        const __m512 v = _mm512_mul_round_ps(_mm512_cvtepi32_ps(_mm512_load_si512(sums + 16 * j)),
                                             s, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm512_mask_storeu_ps(out->y + (m0 + j) * n + r0, live, _mm512_add_ps(v, b));
      }
    }
  }
}

// M = 1 on quads: x_q[4q .. 4q + 3] is one 32-bit lane, so one gather fetches 16 quads' inputs
// and one vpdpbusd multiplies them with the 16 quad weights: 8 bytes per quad (2 per entry).
void quads_m1(const QuadMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
              const int64_t* end_p, const uint8_t* xq, int32_t zp, int32_t* acc, bool accumulate) {
  const auto load = [](const int32_t* p) { return _mm512_loadu_si512(p); };
  for (int64_t n = n0; n < n1; ++n) {
    int64_t i = begin[n] / 4;
    const int64_t e = end_p[n] / 4;
    __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
    for (; i + 32 <= e; i += 32) {
      _mm_prefetch(reinterpret_cast<const char*>(w->quad_w + i + 128), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(w->quad_col + i + 128), _MM_HINT_T0);
      a0 = _mm512_dpbusd_epi32(a0, _mm512_i32gather_epi32(load(w->quad_col + i), xq, 4),
                               load(w->quad_w + i));
      a1 = _mm512_dpbusd_epi32(a1, _mm512_i32gather_epi32(load(w->quad_col + i + 16), xq, 4),
                               load(w->quad_w + i + 16));
    }
    if (i + 16 <= e) {
      a0 = _mm512_dpbusd_epi32(a0, _mm512_i32gather_epi32(load(w->quad_col + i), xq, 4),
                               load(w->quad_w + i));
      i += 16;
    }
    if (i < e) {  // 1-15 quads left: masked loads and gather (lanes past the run read nothing)
      const __mmask16 m = static_cast<__mmask16>((1u << (e - i)) - 1u);
      const __m512i g = _mm512_mask_i32gather_epi32(
          _mm512_setzero_si512(), m, _mm512_maskz_loadu_epi32(m, w->quad_col + i), xq, 4);
      a1 = _mm512_dpbusd_epi32(a1, g, _mm512_maskz_loadu_epi32(m, w->quad_w + i));
    }
    acc[n] = (accumulate ? acc[n] : -zp * w->row_sum[n]) +
             _mm512_reduce_add_epi32(_mm512_add_epi32(a0, a1));
  }
}

}  // namespace

void qu8x4_spmv_csr(const QuadMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                    const int64_t* end, const uint8_t* xq, int32_t zp, int32_t* acc,
                    bool accumulate) {
  quads_m1(w, n0, n1, begin, end, xq, zp, acc, accumulate);
}

void qu8x4_spmm_tiles(const QuadMatrix* w, int64_t n, int64_t g0, int64_t g1,
                      const uint8_t* panel, int64_t m0, int64_t valid, const int32_t* zp,
                      const TileOut* out) {
  tiles(w, n, g0, g1, panel, m0, valid, zp, out);
}

void qu8x4_spmm_csr(const QuadMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                    const int64_t* end, int64_t stride, const uint8_t* panel, int64_t width,
                    const int32_t* zp, int32_t* acct, bool accumulate) {
  if (width == 32) return quads<2>(w, n0, n1, begin, end, stride, panel, zp, acct, accumulate);
  quads<1>(w, n0, n1, begin, end, stride, panel, zp, acct, accumulate);  // width 16
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

}  // namespace avx512vnni
}  // namespace pyquant
