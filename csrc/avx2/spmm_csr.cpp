// AVX2 sparse x dense kernels (layouts in kernels.h and pyquant/sparse_format.md).
//
// fp32 (XNNPACK / Elsen et al. style): the dense dimension M runs along the vector lanes.
// Each nonzero is one broadcast plus W/8 FMAs against the panel row x[:, k] (W floats,
// contiguous, hot in L1/L2), so the cost is nnz * M / 8 FMAs whatever the sparsity pattern.
// Zen 4 has two FMA pipes with 4-cycle latency: 8 chains in flight keep them busy, hence
// U nonzeros in flight times W/8 vectors (U * W/8 = 8 for W = 64, 32, 16; 9 for 24; 4 for 8).
// The tile is written transposed (yt[n * W + j]): W/8 contiguous vector stores per row
// (strided scalar stores straight into y[m][n] measured ~1.4x slower).
//
// int8: the panel holds int16 (x_q - zero_point); the pack pairs a row's nonzeros and stores
// them as int16, so one vpbroadcastd gives (w_a, w_b) in every 32-bit lane. unpacklo/hi of
// the panel rows x[:, k_a] and x[:, k_b] interleave them, and vpmaddwd forms
// x_a * w_a + x_b * w_b in int32: |.| <= 2 * 255 * 127, no int16 saturation anywhere
// (unlike vpmaddubsw), and the int32 sum is exact for nnz_row * 255 * 127 < 2^31 (pack check).
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "pyquant/kernels.h"

namespace pyquant {
namespace avx2 {
namespace {

template <int W, int U, typename I>
__attribute__((always_inline)) inline void spmm_tile(const float* values, const I* idx,
                                                     int64_t n0, int64_t n1,
                                                     const int64_t* begin, const int64_t* end_p,
                                                     int64_t stride, const float* panel,
                                                     int64_t ld, float* yt, int64_t out_ld,
                                                     bool accumulate) {
  constexpr int NV = W / 8;
  for (int64_t n = n0; n < n1; ++n) {
    float* out = yt + n * out_ld;
    __m256 acc[U][NV];
    for (int u = 0; u < U; ++u)
      for (int j = 0; j < NV; ++j)
        acc[u][j] = (u == 0 && accumulate) ? _mm256_loadu_ps(out + 8 * j) : _mm256_setzero_ps();
    int64_t p = begin[n * stride];
    const int64_t end = end_p[n * stride];
    for (; p + U <= end; p += U) {
      for (int u = 0; u < U; ++u) {
        const __m256 v = _mm256_broadcast_ss(values + p + u);
        const float* xr = panel + static_cast<int64_t>(idx[p + u]) * ld;
        for (int j = 0; j < NV; ++j)
          acc[u][j] = _mm256_fmadd_ps(v, _mm256_loadu_ps(xr + 8 * j), acc[u][j]);
      }
    }
    for (; p < end; ++p) {
      const __m256 v = _mm256_broadcast_ss(values + p);
      const float* xr = panel + static_cast<int64_t>(idx[p]) * ld;
      for (int j = 0; j < NV; ++j)
        acc[0][j] = _mm256_fmadd_ps(v, _mm256_loadu_ps(xr + 8 * j), acc[0][j]);
    }
    for (int j = 0; j < NV; ++j) {
      __m256 s = acc[0][j];
      for (int u = 1; u < U; ++u) s = _mm256_add_ps(s, acc[u][j]);
      _mm256_storeu_ps(out + 8 * j, s);
    }
  }
}

template <typename I>
void spmm(const float* values, const I* idx, int64_t n0, int64_t n1, const int64_t* begin,
          const int64_t* end, int64_t stride, const float* panel, int64_t width, int64_t ld,
          float* yt, int64_t out_ld, bool acc) {
  const auto tile = [&](auto w, auto u) {
    spmm_tile<decltype(w)::value, decltype(u)::value>(values, idx, n0, n1, begin, end, stride,
                                                      panel, ld, yt, out_ld, acc);
  };
  using std::integral_constant;
  switch (width) {
    case 64: tile(integral_constant<int, 64>{}, integral_constant<int, 1>{}); break;
    case 32: tile(integral_constant<int, 32>{}, integral_constant<int, 2>{}); break;
    case 24: tile(integral_constant<int, 24>{}, integral_constant<int, 3>{}); break;
    case 16: tile(integral_constant<int, 16>{}, integral_constant<int, 4>{}); break;
    default: tile(integral_constant<int, 8>{}, integral_constant<int, 4>{}); break;
  }
}

static inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Eight x[idx] as one vector from scalar loads and shuffles. On Zen 4 this beat vgatherdps
// (0.34 vs 0.50-0.70 ns per nonzero with x and the weights in cache, 4096-wide rows): the
// gather is microcoded there, while the loads issue 3 per cycle; on Zen 3 (AVX2 only) too,
// 0.29 vs 0.46 ns. int32 indices: eight scalar loads and inserts.
static inline __m256 gather8(const float* x, const int32_t* i) {
  __m128 lo = _mm_load_ss(x + i[0]);
  lo = _mm_insert_ps(lo, _mm_load_ss(x + i[1]), 0x10);
  lo = _mm_insert_ps(lo, _mm_load_ss(x + i[2]), 0x20);
  lo = _mm_insert_ps(lo, _mm_load_ss(x + i[3]), 0x30);
  __m128 hi = _mm_load_ss(x + i[4]);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + i[5]), 0x10);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + i[6]), 0x20);
  hi = _mm_insert_ps(hi, _mm_load_ss(x + i[7]), 0x30);
  return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
}

// uint16 indices: four per 64-bit load, split by shifts on the integer ALUs, instead of one
// load each (22 loads per 16 entries instead of 34): standalone loop on Zen 3, 0.29 -> 0.26 ns
// per nonzero; in the op, 90% 0.60 -> 0.54-0.56 ms (bench/RESULTS.md, session 15).
static inline __m128 gather4(const float* x, uint64_t q) {
  const __m128 a = _mm_load_ss(x + (q & 0xffff)), b = _mm_load_ss(x + ((q >> 16) & 0xffff));
  const __m128 c = _mm_load_ss(x + ((q >> 32) & 0xffff)), d = _mm_load_ss(x + (q >> 48));
  return _mm_movelh_ps(_mm_unpacklo_ps(a, b), _mm_unpacklo_ps(c, d));
}
static inline __m256 gather8(const float* x, const uint16_t* i) {
  uint64_t q0, q1;
  std::memcpy(&q0, i, 8);
  std::memcpy(&q1, i + 4, 8);
  return _mm256_insertf128_ps(_mm256_castps128_ps256(gather4(x, q0)), gather4(x, q1), 1);
}

// Eight row sums in one vector: lane r is the sum of v[r]'s lanes (three levels of hadd and
// one cross-lane add instead of eight separate horizontal sums).
static inline __m256 hsum8(const __m256* v) {
  const __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
  const __m256 b = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}

// M = 1: 16 nonzeros per step into two chains (x is K floats, L1 resident). The last 1-7
// entries of a run take one masked step instead of a scalar loop (whose unpredictable exit
// cost a branch miss per run, and K-blocked packs have several runs per row): the step reads
// the next entries of the stream, valid indices of other runs, and zeroes both factors of the
// extra lanes, so Inf / NaN there cannot leak in. Only the last 7 entries of the whole
// stream fall back to the scalar loop.
template <typename I>
void spmv(const SparseMatrix* w, const I* idx, int64_t n0, int64_t n1, const int64_t* begin,
          const int64_t* end_p, const float* x, float* y, bool accumulate) {
  const auto* values = static_cast<const float*>(w->values);
  const int64_t total = w->row_ptr[w->n];
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  // Each row's partial vector waits here; eight at a time are reduced and stored together,
  // so a row ends without the dependent shuffle-add chain of its own horizontal sum (Zen 3,
  // rows=1 packs, three alternating process pairs: 99% 0.080 -> 0.074 ms, 95% 0.28 -> 0.27,
  // 90% unchanged).
  __m256 part[8];
  int64_t group = n0;
  for (int64_t n = n0; n < n1; ++n) {
    int64_t p = begin[n];
    const int64_t end = end_p[n];
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; p + 16 <= end; p += 16) {
      // Software prefetch 256 entries ahead in both weight streams: forced AVX2 on the
      // AVX-512 machine, 90%: 0.67 -> 0.61 ms (95%: 0.39 -> 0.35 ms) in one run.
      _mm_prefetch(reinterpret_cast<const char*>(values + p + 256), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(idx + p + 256), _MM_HINT_T0);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(values + p), gather8(x, idx + p), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(values + p + 8), gather8(x, idx + p + 8), a1);
    }
    if (p + 8 <= end) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(values + p), gather8(x, idx + p), a0);
      p += 8;
    }
    if (p < end && p + 8 <= total) {
      const __m256 keep = _mm256_castsi256_ps(
          _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int32_t>(end - p)), lanes));
      a1 = _mm256_fmadd_ps(_mm256_and_ps(_mm256_loadu_ps(values + p), keep),
                           _mm256_and_ps(gather8(x, idx + p), keep), a1);
      p = end;
    }
    if (p < end) {  // only the last 1-7 entries of the whole stream
      float s = 0.0f;
      for (; p < end; ++p) s += values[p] * x[idx[p]];
      a0 = _mm256_add_ps(a0, _mm256_setr_ps(s, 0, 0, 0, 0, 0, 0, 0));
    }
    part[n - group] = _mm256_add_ps(a0, a1);
    if (n - group == 7) {
      __m256 sums = hsum8(part);
      if (accumulate) sums = _mm256_add_ps(sums, _mm256_loadu_ps(y + group));
      _mm256_storeu_ps(y + group, sums);
      group = n + 1;
    }
  }
  for (int64_t n = group; n < n1; ++n) y[n] = (accumulate ? y[n] : 0.0f) + hsum(part[n - group]);
}

// M = 1, int8: 8 xz[idx] per step with the insert gather above (xz is K int32, L1 resident),
// one vpmaddwd with the sign-extended values (the exact products, see kernels.h), one vpaddd.
// The last 1-7 entries of a run: one step over the next 8 entries of the stream with the
// values past the run zeroed (integers: the other factor needs no mask); the last 7 entries
// of the whole stream take the scalar loop. Each row keeps its own horizontal sum: the
// eight-row reduction of spmv made this kernel slower (90% 0.572-0.576 -> 0.594-0.595 ms,
// Zen 3, three alternating pairs; its row sum is integer adds, no FP latency chain).
template <typename I>
void q_spmv(const SparseMatrix* w, const I* idx, int64_t n0, int64_t n1, const int64_t* begin,
            const int64_t* end_p, const int32_t* xz, int32_t* acc, bool accumulate) {
  const auto* values = static_cast<const int16_t*>(w->values);
  const auto* xf = reinterpret_cast<const float*>(xz);  // gather8 moves 32-bit lanes as they are
  const int64_t total = w->row_ptr[w->n];
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t n = n0; n < n1; ++n) {
    int64_t p = begin[n];
    const int64_t end = end_p[n];
    __m256i a = _mm256_setzero_si256();
    const auto step = [&](__m256i v) {
      a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_castps_si256(gather8(xf, idx + p)), v));
    };
    const auto values8 = [&] {
      return _mm256_cvtepi16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(values + p)));
    };
    for (; p + 8 <= end; p += 8) {
      _mm_prefetch(reinterpret_cast<const char*>(values + p + 256), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(idx + p + 256), _MM_HINT_T0);
      step(values8());
    }
    if (p < end && p + 8 <= total) {
      step(_mm256_and_si256(values8(), _mm256_cmpgt_epi32(
                                           _mm256_set1_epi32(static_cast<int32_t>(end - p)), lanes)));
      p = end;
    }
    int32_t s = 0;
    for (; p < end; ++p)
      s += static_cast<int32_t>(values[p]) *
           static_cast<int32_t>(static_cast<int16_t>(static_cast<uint16_t>(xz[idx[p]])));
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(a), _mm256_extracti128_si256(a, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
    acc[n] = (accumulate ? acc[n] : 0) + s + _mm_cvtsi128_si32(h);
  }
}

// int8: G groups of 16 columns (ymm) plus H = 1 half group of 8 (xmm) when W % 16 == 8.
// lo holds columns {0-3, 8-11} of a group and hi {4-7, 12-15} (unpack works per 128-bit
// lane); the permutes at the end restore column order.
template <int W, typename I>
__attribute__((always_inline)) inline void q_tile(const int16_t* values, const I* idx,
                                                  int64_t n0, int64_t n1, const int64_t* begin,
                                                  const int64_t* end_p, int64_t stride,
                                                  const int16_t* panel, int32_t* acct,
                                                  bool accumulate) {
  constexpr int G = W / 16, H = (W % 16) / 8;
  for (int64_t n = n0; n < n1; ++n) {
    int32_t* out = acct + n * W;
    __m256i lo[G > 0 ? G : 1], hi[G > 0 ? G : 1];
    __m128i hlo = _mm_setzero_si128(), hhi = _mm_setzero_si128();
    for (int g = 0; g < G; ++g) lo[g] = hi[g] = _mm256_setzero_si256();
    const int64_t end = end_p[n * stride];
    for (int64_t p = begin[n * stride]; p < end; p += 2) {  // rows hold an even count
      int32_t pair;
      __builtin_memcpy(&pair, values + p, 4);
      const int16_t* xa = panel + static_cast<int64_t>(idx[p]) * W;
      const int16_t* xb = panel + static_cast<int64_t>(idx[p + 1]) * W;
      const __m256i wp = _mm256_set1_epi32(pair);
      for (int g = 0; g < G; ++g) {
        const __m256i a = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xa + 16 * g));
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + 16 * g));
        lo[g] = _mm256_add_epi32(lo[g], _mm256_madd_epi16(_mm256_unpacklo_epi16(a, b), wp));
        hi[g] = _mm256_add_epi32(hi[g], _mm256_madd_epi16(_mm256_unpackhi_epi16(a, b), wp));
      }
      if (H) {
        const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(xa + 16 * G));
        const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(xb + 16 * G));
        const __m128i wq = _mm256_castsi256_si128(wp);
        hlo = _mm_add_epi32(hlo, _mm_madd_epi16(_mm_unpacklo_epi16(a, b), wq));
        hhi = _mm_add_epi32(hhi, _mm_madd_epi16(_mm_unpackhi_epi16(a, b), wq));
      }
    }
    for (int g = 0; g < G; ++g) {
      __m256i r0 = _mm256_permute2x128_si256(lo[g], hi[g], 0x20);
      __m256i r1 = _mm256_permute2x128_si256(lo[g], hi[g], 0x31);
      auto* o = reinterpret_cast<__m256i*>(out + 16 * g);
      if (accumulate) {
        r0 = _mm256_add_epi32(r0, _mm256_loadu_si256(o));
        r1 = _mm256_add_epi32(r1, _mm256_loadu_si256(o + 1));
      }
      _mm256_storeu_si256(o, r0);
      _mm256_storeu_si256(o + 1, r1);
    }
    if (H) {
      auto* o = reinterpret_cast<__m128i*>(out + 16 * G);
      if (accumulate) {
        hlo = _mm_add_epi32(hlo, _mm_loadu_si128(o));
        hhi = _mm_add_epi32(hhi, _mm_loadu_si128(o + 1));
      }
      _mm_storeu_si128(o, hlo);
      _mm_storeu_si128(o + 1, hhi);
    }
  }
}

template <typename I>
void q_spmm(const int16_t* v, const I* idx, int64_t n0, int64_t n1, const int64_t* begin,
            const int64_t* end, int64_t stride, const int16_t* panel, int64_t width,
            int32_t* acct, bool acc) {
  switch (width) {
    case 32: q_tile<32>(v, idx, n0, n1, begin, end, stride, panel, acct, acc); break;
    case 24: q_tile<24>(v, idx, n0, n1, begin, end, stride, panel, acct, acc); break;
    case 16: q_tile<16>(v, idx, n0, n1, begin, end, stride, panel, acct, acc); break;
    default: q_tile<8>(v, idx, n0, n1, begin, end, stride, panel, acct, acc); break;
  }
}

}  // namespace

void f32_spmm_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                  const int64_t* end, int64_t stride, const float* panel, int64_t width,
                  int64_t panel_ld, float* yt, int64_t out_ld, bool accumulate) {
  const auto* v = static_cast<const float*>(w->values);
  if (w->idx16) spmm(v, w->idx16, n0, n1, begin, end, stride, panel, width, panel_ld, yt, out_ld,
                    accumulate);
  else spmm(v, w->idx32, n0, n1, begin, end, stride, panel, width, panel_ld, yt, out_ld,
            accumulate);
}

void f32_spmv_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                  const int64_t* end, const float* x, float* y, bool accumulate) {
  if (w->idx16) spmv(w, w->idx16, n0, n1, begin, end, x, y, accumulate);
  else spmv(w, w->idx32, n0, n1, begin, end, x, y, accumulate);
}

void qs16_spmm_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                   const int64_t* end, int64_t stride, const int16_t* panel, int64_t width,
                   int32_t* acct, bool accumulate) {
  const auto* v = static_cast<const int16_t*>(w->values);
  if (w->idx16) q_spmm(v, w->idx16, n0, n1, begin, end, stride, panel, width, acct, accumulate);
  else q_spmm(v, w->idx32, n0, n1, begin, end, stride, panel, width, acct, accumulate);
}

void qs16_spmv_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                   const int64_t* end, const int32_t* xz, int32_t* acc, bool accumulate) {
  if (w->idx16) q_spmv(w, w->idx16, n0, n1, begin, end, xz, acc, accumulate);
  else q_spmv(w, w->idx32, n0, n1, begin, end, xz, acc, accumulate);
}

}  // namespace avx2
}  // namespace pyquant
