// AVX-512 VNNI u8 x s8 -> s32 GEMM, up to 8 rows x 48 columns per register tile (24 zmm
// accumulators): vpdpbusd multiplies u8 activation quads by s8 weight quads straight from the
// packed layout (no widening, no int16 stage). Per k-quad the tile loads 3 weight vectors
// (one per 16-column panel) and broadcasts 8 activation quads for 24 vpdpbusd, so the loads
// stay below the two-per-cycle vpdpbusd rate and 24 independent chains cover its latency.
//
// Blocking: many rows keep a B block (kc x nc, <= ~768 KB) in L2 while 8-row A micro-panels
// (read in place, <= 16 KB) stream from L1; few rows (<= 32, decode / small batches) sweep one
// 48-column tile of B at a time from memory, with software prefetch, and apply every row tile
// to it while it is in L1/L2, so the weights are read from memory once.
#include <immintrin.h>

#include <cstring>

#include "pyquant/gemm.h"

namespace pyquant {
namespace avx512vnni {
namespace {

constexpr int kMR = 8;             // rows per register tile
constexpr int kNP = 3;             // 16-column panels per register tile
constexpr int64_t kKC = 1024;      // k per block, few rows
constexpr int64_t kKCMany = 2048;  // k per block, many rows
constexpr int64_t kBBlockBytes = 768 * 1024;  // B block (kc x nc) kept in L2, many rows
constexpr int64_t kFewRows = 32;
constexpr int64_t kPrefetch = 1024;  // software prefetch distance in bytes of each B panel

// out[r * NP + p] = sum over kg quads of A row r x panel p. a rows are astride apart; the
// panels of b are pstride bytes apart. The 24 accumulators are named variables, not an array:
// GCC keeps an array of this size in memory and stores it back on every iteration.
template <int MR, int NP>
static inline void ukernel(const uint8_t* a, int64_t astride, const int8_t* b, int64_t pstride,
                           int64_t kg, __m512i* out) {
  const __m512i z = _mm512_setzero_si512();
  __m512i c00 = z, c01 = z, c02 = z, c10 = z, c11 = z, c12 = z, c20 = z, c21 = z, c22 = z,
          c30 = z, c31 = z, c32 = z, c40 = z, c41 = z, c42 = z, c50 = z, c51 = z, c52 = z,
          c60 = z, c61 = z, c62 = z, c70 = z, c71 = z, c72 = z;
  const int8_t* b0 = b;
  const int8_t* b1 = b + pstride;
  const int8_t* b2 = b + 2 * pstride;
  for (int64_t q = 0; q < kg; ++q) {
    const __m512i w0 = _mm512_loadu_si512(b0);
    const __m512i w1 = NP > 1 ? _mm512_loadu_si512(b1) : z;
    const __m512i w2 = NP > 2 ? _mm512_loadu_si512(b2) : z;
    // From memory (few rows) or L2 (many rows): the hardware prefetcher alone keeps three
    // streams ~10% short of the compute rate here.
    _mm_prefetch(reinterpret_cast<const char*>(b0 + kPrefetch), _MM_HINT_T0);
    if (NP > 1) _mm_prefetch(reinterpret_cast<const char*>(b1 + kPrefetch), _MM_HINT_T0);
    if (NP > 2) _mm_prefetch(reinterpret_cast<const char*>(b2 + kPrefetch), _MM_HINT_T0);
    b0 += kGemmNR * kGemmKR;
    b1 += kGemmNR * kGemmKR;
    b2 += kGemmNR * kGemmKR;
    // u8 x s8 quad products summed in int32 (exact: 4 * 255 * 128 < 2^31), then added without
    // saturation (vpdpbusd, not vpdpbusds).
#define PYQUANT_ROW(r)                                                  \
  if (MR > r) {                                                         \
    int32_t quad;                                                       \
    memcpy(&quad, a + r * astride + q * 4, sizeof(quad));               \
    const __m512i x = _mm512_set1_epi32(quad);                          \
    c##r##0 = _mm512_dpbusd_epi32(c##r##0, x, w0);                      \
    if (NP > 1) c##r##1 = _mm512_dpbusd_epi32(c##r##1, x, w1);          \
    if (NP > 2) c##r##2 = _mm512_dpbusd_epi32(c##r##2, x, w2);          \
  }
    PYQUANT_ROW(0) PYQUANT_ROW(1) PYQUANT_ROW(2) PYQUANT_ROW(3)
    PYQUANT_ROW(4) PYQUANT_ROW(5) PYQUANT_ROW(6) PYQUANT_ROW(7)
#undef PYQUANT_ROW
  }
#define PYQUANT_OUT(r)                          \
  if (MR > r) {                                 \
    out[r * NP] = c##r##0;                      \
    if (NP > 1) out[r * NP + 1] = c##r##1;      \
    if (NP > 2) out[r * NP + 2] = c##r##2;      \
  }
  PYQUANT_OUT(0) PYQUANT_OUT(1) PYQUANT_OUT(2) PYQUANT_OUT(3)
  PYQUANT_OUT(4) PYQUANT_OUT(5) PYQUANT_OUT(6) PYQUANT_OUT(7)
#undef PYQUANT_OUT
}

static inline void finish_row(const GemmArgs& g, __m512i v, int64_t i, int64_t n, int64_t cols,
                              bool first, bool last) {
  const __mmask16 mask = static_cast<__mmask16>((1u << cols) - 1u);
  int32_t* dst = g.c_i32 ? g.c_i32 + i * g.ldc + n
                         : reinterpret_cast<int32_t*>(g.c_f32 + i * g.ldc + n);
  if (!first) v = _mm512_add_epi32(v, _mm512_maskz_loadu_epi32(mask, dst));
  if (!last) {
    _mm512_mask_storeu_epi32(dst, mask, v);
    return;
  }
  const int32_t za = g.a_zero_point ? g.a_zero_point[i] : 0;
  if (za) v = _mm512_sub_epi32(v, _mm512_mullo_epi32(_mm512_set1_epi32(za),
                                                     _mm512_loadu_si512(g.col_sum + n)));
  if (g.b_zero_point) {
    const __m512i zb = _mm512_loadu_si512(g.b_zero_point + n);
    v = _mm512_sub_epi32(v, _mm512_mullo_epi32(zb, _mm512_set1_epi32(g.row_sum[i])));
    if (za) {
      const int32_t kza =
          static_cast<int32_t>(static_cast<uint32_t>(g.K) * static_cast<uint32_t>(za));
      v = _mm512_add_epi32(v, _mm512_mullo_epi32(zb, _mm512_set1_epi32(kza)));
    }
  }
  if (g.c_i32) {
    _mm512_mask_storeu_epi32(dst, mask, v);
    return;
  }
  const __m512 s = _mm512_mul_ps(_mm512_set1_ps(g.a_scale[i]), _mm512_loadu_ps(g.b_scale + n));
  __m512 y = _mm512_mul_ps(_mm512_cvtepi32_ps(v), s);
  if (g.bias) y = _mm512_add_ps(y, _mm512_loadu_ps(g.bias + n));
  _mm512_mask_storeu_ps(g.c_f32 + i * g.ldc + n, mask, y);
}

// Rows [i0, i0 + mr) of A, k in [k0, k0 + kc), copied and zero padded to kc4 so that the
// kernel's 4-byte reads never leave A.
static void copy_a(const GemmArgs& g, int64_t i0, int mr, int64_t k0, int64_t kc, int64_t kc4,
                   uint8_t* buf) {
  for (int r = 0; r < mr; ++r) {
    const uint8_t* src = g.a + (i0 + r) * g.lda + k0;
    uint8_t* dst = buf + r * kc4;
    memcpy(dst, src, kc);
    for (int64_t k = kc; k < kc4; ++k) dst[k] = 0;
  }
}

using TileFn = void (*)(const uint8_t*, int64_t, const int8_t*, int64_t, int64_t, __m512i*);

template <int MR>
static TileFn pick(int np) {
  switch (np) {
    case 1: return ukernel<MR, 1>;
    case 2: return ukernel<MR, 2>;
    default: return ukernel<MR, 3>;
  }
}

static TileFn pick_tile(int mr, int np) {
  switch (mr) {
    case 1: return pick<1>(np);
    case 2: return pick<2>(np);
    case 3: return pick<3>(np);
    case 4: return pick<4>(np);
    case 5: return pick<5>(np);
    case 6: return pick<6>(np);
    case 7: return pick<7>(np);
    default: return pick<8>(np);
  }
}

}  // namespace

void qs32_block_epilogue(const GemmArgs& g, const int32_t* acc, int64_t ld, int64_t i0,
                         int64_t rows, int64_t n, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; c += kGemmNR)
      finish_row(g, _mm512_loadu_si512(acc + r * ld + c), i0 + r, n + c,
                 cols - c < kGemmNR ? cols - c : kGemmNR, true, true);
}

void qu8qs8_gemm(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  alignas(64) uint8_t abuf[kMR * kKCMany];
  __m512i tile[kMR * kNP];
  const int64_t K = g.K;
  const int64_t rows = m1 - m0;
  const bool few = rows <= kFewRows;
  const int64_t kc_max = few ? kKC : kKCMany;
  const int64_t k_blocks = K > 0 ? (K + kc_max - 1) / kc_max : 1;
  const int64_t kcb = ((K + k_blocks - 1) / k_blocks + 3) / 4 * 4;  // equal blocks
  constexpr int64_t kTileCols = kNP * kGemmNR;
  int64_t nc = kTileCols;
  if (!few) {
    nc = kBBlockBytes / (kcb > 0 ? kcb : 1) / kTileCols * kTileCols;
    nc = nc < kTileCols ? kTileCols : nc;
  }
  // Few rows: split them into equal row tiles (16 -> 8 + 8, 12 -> 6 + 6), not 8 + remainder.
  const int64_t row_tiles = (rows + kMR - 1) / kMR;
  const int64_t mr_few = row_tiles > 0 ? (rows + row_tiles - 1) / row_tiles : kMR;
  const int64_t mr_step = few ? mr_few : kMR;
  const int64_t pstride = g.Kp * kGemmNR;
  for (int64_t nb = n0; nb < n1; nb += nc) {
    const int64_t nb_end = nb + nc < n1 ? nb + nc : n1;
    for (int64_t k0 = 0; k0 < K || (K == 0 && k0 == 0); k0 += kcb) {
      const int64_t kc = K - k0 < kcb ? K - k0 : kcb;
      const int64_t kc4 = (kc + 3) / 4 * 4;
      const bool first = k0 == 0, last = k0 + kcb >= K;
      for (int64_t i0 = m0; i0 < m1; i0 += mr_step) {
        const int mr = static_cast<int>(m1 - i0 < mr_step ? m1 - i0 : mr_step);
        // Whole quads are read straight from A; only a ragged K tail needs a zero-padded copy.
        const uint8_t* a = g.a + i0 * g.lda + k0;
        int64_t astride = g.lda;
        if (kc != kc4) {
          copy_a(g, i0, mr, k0, kc, kc4, abuf);
          a = abuf;
          astride = kc4;
        }
        for (int64_t n = nb; n < nb_end; n += kTileCols) {
          const int64_t cols = nb_end - n < kTileCols ? nb_end - n : kTileCols;
          const int np = static_cast<int>((cols + kGemmNR - 1) / kGemmNR);
          const int8_t* b = g.b + (n / kGemmNR) * pstride + (k0 / 4) * (kGemmNR * kGemmKR);
          pick_tile(mr, np)(a, astride, b, pstride, kc4 / 4, tile);
          for (int r = 0; r < mr; ++r)
            for (int p = 0; p < np; ++p) {
              const int64_t c = cols - p * kGemmNR;
              finish_row(g, tile[r * np + p], i0 + r, n + p * kGemmNR, c < kGemmNR ? c : kGemmNR,
                         first, last);
            }
        }
      }
      if (K == 0) break;
    }
  }
}

}  // namespace avx512vnni
}  // namespace pyquant
