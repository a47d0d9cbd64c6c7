// AMX-INT8 u8 x s8 -> s32 GEMM: 32 x 32 output blocks held in four 16 x 16 int32 tiles, fed by
// two A tiles (16 rows x 64 k, read in place from A with its row stride) and two B tiles.
//
// The packed layout (pyquant/gemm.h) is already AMX's B layout: 16 consecutive k-groups of one
// panel are 16 rows of 64 bytes (16 columns x 4 k), so a B tile is one contiguous 1 KB read.
// tdpbusd sums u8 x s8 quads in int32 (exact, as vpdpbusd). K is accumulated whole inside the
// tiles, so no partial sums go through memory; a K tail (K % 64) takes one more step from
// zero-padded copies of A's and B's last bytes. Rows that do not fill a 16-row tile, and calls
// with too few rows to pay for the tile setup, go to the VNNI kernel, as does the epilogue
// (zero points, scales, bias) that runs on each finished 32 x 32 block.
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "pyquant/gemm.h"

namespace pyquant {
namespace amx {
namespace {

constexpr int64_t kTileRows = 16;
constexpr int64_t kTileK = 64;                  // k bytes per A tile row = 16 B groups
constexpr int64_t kTileB = kTileK * kGemmNR;    // bytes of one B tile (1 KB)
constexpr int64_t kBBlockBytes = 1024 * 1024;   // B block (K x nc) kept in L2 across row blocks
constexpr int64_t kBlock = 32;                  // rows and columns of an output block

struct alignas(64) TileConfig {
  uint8_t palette_id;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
};

// tmm0..3: C blocks (rows 0-15 / 16-31 x columns 0-15 / 16-31); tmm4, 5: A; tmm6, 7: B.
void configure_tiles() {
  TileConfig cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.palette_id = 1;
  for (int t = 0; t < 8; ++t) {
    cfg.colsb[t] = 64;
    cfg.rows[t] = 16;
  }
  _tile_loadconfig(&cfg);
}

template <bool kTwoRows, bool kTwoCols>
static inline void step(const uint8_t* a, int64_t astride, const int8_t* b0, const int8_t* b1) {
  _tile_loadd(4, a, astride);
  if (kTwoRows) _tile_loadd(5, a + kTileRows * astride, astride);
  _tile_loadd(6, b0, 64);
  if (kTwoCols) _tile_loadd(7, b1, 64);
  _tile_dpbusd(0, 4, 6);
  if (kTwoCols) _tile_dpbusd(1, 4, 7);
  if (kTwoRows) _tile_dpbusd(2, 5, 6);
  if (kTwoRows && kTwoCols) _tile_dpbusd(3, 5, 7);
}

// One output block: c[32 x 32] (ld 32) = A rows x B panels over all of K.
template <bool kTwoRows, bool kTwoCols>
static void block(const uint8_t* a, int64_t lda, const int8_t* b0, const int8_t* b1,
                  int64_t chunks, const uint8_t* a_tail, const int8_t* b_tail0,
                  const int8_t* b_tail1, int32_t* c) {
  _tile_zero(0);
  if (kTwoCols) _tile_zero(1);
  if (kTwoRows) _tile_zero(2);
  if (kTwoRows && kTwoCols) _tile_zero(3);
  for (int64_t q = 0; q < chunks; ++q)
    step<kTwoRows, kTwoCols>(a + q * kTileK, lda, b0 + q * kTileB, b1 + q * kTileB);
  if (a_tail) step<kTwoRows, kTwoCols>(a_tail, kTileK, b_tail0, b_tail1);
  constexpr int64_t ld = kBlock * sizeof(int32_t);
  _tile_stored(0, c, ld);
  if (kTwoCols) _tile_stored(1, c + kGemmNR, ld);
  if (kTwoRows) _tile_stored(2, c + kTileRows * kBlock, ld);
  if (kTwoRows && kTwoCols) _tile_stored(3, c + kTileRows * kBlock + kGemmNR, ld);
}

using BlockFn = void (*)(const uint8_t*, int64_t, const int8_t*, const int8_t*, int64_t,
                         const uint8_t*, const int8_t*, const int8_t*, int32_t*);

}  // namespace

void qu8qs8_gemm(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1) {
  const int64_t K = g.K;
  const int64_t m_amx = m0 + (m1 - m0) / kTileRows * kTileRows;
  if (m_amx == m0 || K < kTileK) {
    avx512vnni::qu8qs8_gemm(g, m0, m1, n0, n1);
    return;
  }
  if (m_amx < m1) avx512vnni::qu8qs8_gemm(g, m_amx, m1, n0, n1);

  const int64_t chunks = K / kTileK, tail = K - chunks * kTileK;
  const int64_t pstride = g.Kp * kGemmNR;
  const int64_t p_first = n0 / kGemmNR, p_end = (n1 + kGemmNR - 1) / kGemmNR;
  // B's last partial chunk, per panel, zero padded to a whole tile (the packed panel ends at
  // Kp, not at a multiple of 64: a whole-tile read would run into the next panel).
  thread_local std::vector<int8_t> b_tail;
  if (tail) {
    b_tail.assign(static_cast<size_t>((p_end - p_first) * kTileB), 0);
    const int64_t bytes = (g.Kp - chunks * kTileK) * kGemmNR;
    for (int64_t p = p_first; p < p_end; ++p)
      memcpy(b_tail.data() + (p - p_first) * kTileB, g.b + p * pstride + chunks * kTileB, bytes);
  }
  alignas(64) uint8_t a_tail[kBlock * kTileK];
  alignas(64) int32_t c[kBlock * kBlock];
  const BlockFn fns[2][2] = {{block<false, false>, block<false, true>},
                             {block<true, false>, block<true, true>}};
  int64_t nc = kBBlockBytes / g.Kp / kBlock * kBlock;
  nc = nc < kBlock ? kBlock : nc;

  configure_tiles();
  for (int64_t nb = n0; nb < n1; nb += nc) {
    const int64_t nb_end = nb + nc < n1 ? nb + nc : n1;
    for (int64_t i0 = m0; i0 < m_amx; i0 += kBlock) {
      const bool two_rows = i0 + kBlock <= m_amx;
      const int64_t rows = two_rows ? kBlock : kTileRows;
      const uint8_t* a = g.a + i0 * g.lda;
      if (tail) {
        memset(a_tail, 0, sizeof(a_tail));
        for (int64_t r = 0; r < rows; ++r)
          memcpy(a_tail + r * kTileK, a + r * g.lda + chunks * kTileK, tail);
      }
      for (int64_t n = nb; n < nb_end; n += kBlock) {
        const int64_t cols = nb_end - n < kBlock ? nb_end - n : kBlock;
        const bool two_cols = cols > kGemmNR;
        const int64_t p = n / kGemmNR;
        const int8_t* bt = tail ? b_tail.data() + (p - p_first) * kTileB : nullptr;
        fns[two_rows][two_cols](a, g.lda, g.b + p * pstride, g.b + (p + 1) * pstride, chunks,
                                tail ? a_tail : nullptr, bt, bt ? bt + kTileB : nullptr, c);
        avx512vnni::qs32_block_epilogue(g, c, kBlock, i0, rows, n, cols);
      }
    }
  }
  _tile_release();  // back to the init state: cheaper context switches for this thread
}

}  // namespace amx
}  // namespace pyquant
