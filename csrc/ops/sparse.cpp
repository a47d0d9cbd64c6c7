// Sparse linear ops: activation panels, the nonzero-balanced split over threads, K blocking,
// kernel calls, and the transposing epilogue.
//
// Loop order: for each 32-row slab of x (packed into a transposed panel, reused by the next
// slab), per task (a range of output rows with about equal nonzeros): for each K block, for
// each row: kernel -> yt[n][32], then yt -> y[m][n] (+ epilogue). sparse_mm (y = W b) needs no
// transpose: its kernel writes y's rows in place.
// The K block of the panel (<= 128 KB) stays in L1/L2 while all rows stream over it (the pack
// stores the entries block-major, so the weight stream is sequential); the transposed tile yt
// is read and written sequentially.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>


#include "pyquant/dispatch.h"
#include "pyquant/memory.h"
#include "pyquant/ops.h"
#include "pyquant/threadpool.h"

namespace pyquant {
namespace {

constexpr int64_t kPanel = 32;           // columns of M per panel (the kernels' register tile)
constexpr int64_t kWidePanel = 64;       // fp32, density >= 1/6: see wide_panels
constexpr int64_t kRowCost = 8;          // a row's fixed cost (tile stores) in nonzero units
constexpr int64_t kGrainMacs = 1 << 16;  // below this many multiply-adds per task: one thread

struct Panel {
  int64_t m0, valid, width, offset;
};

// Panels of `columns` (default kPanel) columns of M, the last one `multiple`-rounded (the fp32
// and pair kernels take multiples of 8 columns, the quad kernels multiples of 16).
// With `wide` > 0, whole panels of `wide` columns come first and only the rest is cut into
// `columns`-wide ones.
std::vector<Panel> make_panels(int64_t m, int64_t k, int64_t* total, int64_t multiple,
                               int64_t columns = kPanel, int64_t wide = 0) {
  std::vector<Panel> panels;
  int64_t offset = 0;
  for (int64_t m0 = 0; m0 < m;) {
    const int64_t cols = wide > 0 && m - m0 >= wide ? wide : columns;
    const int64_t valid = std::min(cols, m - m0);
    const int64_t width = (valid + multiple - 1) / multiple * multiple;
    panels.push_back({m0, valid, width, offset});
    offset += width * k;
    m0 += cols;
  }
  *total = offset;
  return panels;
}

// A per-thread scratch buffer that only grows (two slots per element type: scratch<T>(n, 0)
// and scratch<U>(n, 0) are different buffers): a fresh multi-MB allocation per call would
// page-fault on every call. 64-byte aligned: glibc hands out large blocks at 16 mod 64, which
// made half of the 32-byte panel loads straddle two cache lines.
template <typename T>
T* scratch(size_t n, int slot) {
  thread_local std::vector<char, CacheAlignedAllocator<char>> bufs[2];
  auto& b = bufs[slot];
  if (b.size() < n * sizeof(T)) b.resize(n * sizeof(T));
  return reinterpret_cast<T*>(b.data());
}

// fp32 M >= 64 runs whole 64-column panels (4 zmm per nonzero on AVX-512, 8 ymm on AVX2) when
// the weight is at least 1/6 dense: each pass streams the weights once per panel, and at low
// sparsity that stream (6 bytes per nonzero, from memory) is what the passes cost. 4096 x 4096,
// one thread, three alternating processes against 32-column panels only (AVX-512): M = 256
// 70% 43-49 -> 36-40 ms, M = 128 80% 16.8-18.9 -> 13.5-13.9 ms, M = 256 50% 64-80 -> 57-59 ms,
// M = 64 50% 18.0-18.7 -> 14.2-17.1 ms; 85-90% within the noise; sparser lost (M = 256 99%:
// 2.8-3.9 -> 3.4-4.9 ms, 95% 7.9-9.4 -> 9.1-11.1 ms): the N x 64 tile and the 64-row panel no
// longer both stay in L2, and the weights are few. Held to AVX2 here: within the noise.
// The bound was 20% until a random 80% weight (19.996% dense) measured right at it; sparse_mm
// with y in place, three alternating processes, wide against not: 80% M = 256 24.8-28.9 against
// 31.4-34.0 ms, M = 64 6.35-7.19 against 7.20-7.93 ms; 85% M = 256 26.1-30.1 against
// 20.3-24.0 ms, M = 128 13.2-13.6 against 11.3-11.6 ms. Hence 1/6 (83% sparsity).
// sparse_linear at 80%, 1/6 against 1/5 (three alternating processes): M = 128 12.8-14.0
// against 16.1-19.6 ms, M = 256 25.7-32.6 against 30.5-33.6 ms, M = 64 7.3-8.7 against
// 7.7-9.8 ms.
int64_t wide_panels(const SparseMatrix& w) {
  return w.row_ptr[w.n] * 6 >= w.n * w.k ? kWidePanel : 0;
}

// Transposes x rows [m0, m0 + valid) into panel[k * width + j] for k in [k0, k1), padding
// columns j >= valid with zero. Blocked over k so the strided writes stay in L1.
template <typename Src, typename Dst, typename Conv>
void pack_panel(const Src* x, int64_t k, const Panel& p, int64_t k0, int64_t k1, Dst* panel,
                Conv conv) {
  constexpr int64_t kBlock = 64;
  for (int64_t kb = k0; kb < k1; kb += kBlock) {
    const int64_t ke = std::min(k1, kb + kBlock);
    for (int64_t j = 0; j < p.valid; ++j) {
      const Src* row = x + (p.m0 + j) * k;
      for (int64_t kk = kb; kk < ke; ++kk) panel[kk * p.width + j] = conv(row[kk], p.m0 + j);
    }
    for (int64_t j = p.valid; j < p.width; ++j)
      for (int64_t kk = kb; kk < ke; ++kk) panel[kk * p.width + j] = Dst(0);
  }
}

// uint8 x_q rows [m0, m0 + valid) into the quad kernel's VNNI-order panel for columns
// [k0, k1) (multiples of 4): panel[(q * width + j) * 4 + t] = x_q[m0 + j, 4q + t], zero for
// j >= valid.
void pack_panel_quads(const uint8_t* xq, int64_t k, const Panel& p, int64_t k0, int64_t k1,
                      uint8_t* panel) {
  const int64_t w = p.width;
  for (int64_t q = k0 / 4; q < k1 / 4; ++q) {
    uint8_t* o = panel + q * w * 4;
    for (int64_t j = 0; j < p.valid; ++j) std::memcpy(o + j * 4, xq + (p.m0 + j) * k + 4 * q, 4);
    std::memset(o + p.valid * 4, 0, static_cast<size_t>((w - p.valid) * 4));
  }
}

// Packs every panel, split over threads by panel and K range; pack(p, k0, k1, dst).
template <typename Dst, typename Pack>
void pack_panels(int64_t m, int64_t k, const std::vector<Panel>& panels, Dst* buf, Pack pack) {
  const int64_t tasks = num_tasks_for(m * k, 1 << 16);
  const int64_t per_panel = std::max<int64_t>(1, tasks / static_cast<int64_t>(panels.size()));
  const int64_t chunk = ((k + per_panel - 1) / per_panel + 3) / 4 * 4;  // whole quads
  ThreadPool::global().run(static_cast<int64_t>(panels.size()) * per_panel, [&](int64_t t) {
    const Panel& p = panels[t / per_panel];
    const int64_t k0 = std::min(k, (t % per_panel) * chunk), k1 = std::min(k, k0 + chunk);
    pack(p, k0, k1, buf + p.offset);
  });
}

// Row boundaries of `tasks` ranges with about equal nonzeros (plus a per-row cost):
// bounds[t] = first row whose cost prefix reaches t / tasks of the total.
std::vector<int64_t> balanced_rows(const SparseMatrix& w, int64_t tasks) {
  const int64_t n = w.n;
  const int64_t total = w.row_ptr[n] + kRowCost * n;
  std::vector<int64_t> bounds(tasks + 1, n);
  bounds[0] = 0;
  int64_t row = 0;
  for (int64_t t = 1; t < tasks; ++t) {
    const int64_t target = total * t / tasks;
    while (row < n && w.row_ptr[row] + kRowCost * row < target) ++row;
    bounds[t] = row;
  }
  return bounds;
}

int64_t tasks_for(const SparseMatrix& w, int64_t m) {
  const int64_t macs = (w.row_ptr[w.n] + kRowCost * w.n) * std::max<int64_t>(m, 8);
  return std::min<int64_t>(num_tasks_for(macs, kGrainMacs), std::max<int64_t>(w.n, 1));
}

// The (begin, end) pointer pair of K block b for the kernels (stride 1): plain CSR is one
// block over row_ptr; block-major packs have block_ptr[b * (N + 1) + n].
inline const int64_t* block_base(const SparseMatrix& w, const SparseBlocks& blocks, int64_t b) {
  return blocks.block_ptr != nullptr ? blocks.block_ptr + b * (w.n + 1) : w.row_ptr;
}
inline int64_t block_count(const SparseBlocks& blocks) {
  return blocks.block_ptr != nullptr ? blocks.num_blocks : 1;
}

// Each task's rows (a range with about equal nonzeros, `bounds` from balanced_rows) through
// every K block, kernel(n0, n1, begin, end, accumulate), then done(n0, n1) on the task's
// finished rows. Blocks outer: each block's runs of the task's rows are one sequential stretch
// of the weight stream. A row through all its blocks in turn reads one short run from each of
// nb places, which the prefetchers follow worse (4096 x 4096, 90%, K block 256, standalone
// loop, M = 1: 0.87 ms row by row, 0.60 ms blocks outer; 0.42 and 0.40 ms at K block 1024).
template <typename Kernel, typename Done>
void run_blocks(const SparseMatrix& w, const SparseBlocks& blocks,
                const std::vector<int64_t>& bounds, Kernel kernel, Done done) {
  const int64_t nb = block_count(blocks);
  ThreadPool::global().run(static_cast<int64_t>(bounds.size()) - 1, [&](int64_t t) {
    const int64_t n0 = bounds[t], n1 = bounds[t + 1];
    if (n0 >= n1) return;
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t* base = block_base(w, blocks, b);
      kernel(n0, n1, base, base + 1, b > 0);
    }
    done(n0, n1);
  });
}

// M = 1: run_blocks with the split for one column.
template <typename Kernel, typename Done>
void run_rows(const SparseMatrix& w, const SparseBlocks& blocks, Kernel kernel, Done done) {
  run_blocks(w, blocks, balanced_rows(w, tasks_for(w, 1)), kernel, done);
}

// M >= 2: the panels (slabs of M) one after the other: stage(p) returns the panel the kernel
// reads for slab p (packing it where it must), then kernel(n0, n1, begin, end, panel data, p,
// accumulate) runs every K block over each task's rows and finish(n0, n1, p) completes the
// task's rows of y. One slab's panel (32 x K) and tile (N x 32) are reused by the next, so
// they stay in L2 / L3 instead of all M / 32 of each going through memory (4096 x 4096,
// M = 256, one thread, against packing every panel first, three alternating processes: 99%
// 2.9-3.5 -> 2.2-2.6 ms, 95% 9.1-9.4 -> 7.5-7.9 ms, 50% the same; two threads within the
// noise). Per slab, blocks outer and rows inner: the weight stream is read sequentially (the
// pack stores it block-major), one K block of the panel stays in L1/L2 while every row uses
// it, and the task's tile rows are read and written sequentially once per block.
template <typename Stage, typename Kernel, typename Finish>
void run_slabs(const SparseMatrix& w, const SparseBlocks& blocks,
               const std::vector<Panel>& panels, Stage stage, Kernel kernel, Finish finish) {
  // The first panel is the widest: only the last one is narrower.
  const std::vector<int64_t> bounds = balanced_rows(w, tasks_for(w, panels.front().width));
  for (const Panel& p : panels) {
    const auto* data = stage(p);
    run_blocks(
        w, blocks, bounds,
        [&](int64_t n0, int64_t n1, const int64_t* begin, const int64_t* end, bool acc) {
          kernel(n0, n1, begin, end, data, p, acc);
        },
        [&](int64_t n0, int64_t n1) { finish(n0, n1, p); });
  }
}

// Slab p packed into the reused buffer `panel` by pack(p, k0, k1, dst), split over threads.
template <typename P, typename Pack>
const P* pack_slab(const Panel& p, int64_t k, P* panel, Pack pack) {
  Panel at_start = p;
  at_start.offset = 0;
  pack_panels(p.valid, k, {at_start}, panel, pack);
  return panel;
}

// run_slabs with every slab packed into one reused panel and run into one reused N x width
// tile: pack(panel, k0, k1, dst) packs a slab, kernel(n0, n1, begin, end, stride, panel data,
// panel, tile, accumulate) runs the task's rows into the tile and finish(task rows, panel,
// tile) converts them into y. Panels in scratch slot 1 (the int8 ops' x_q holds uint8 slot 0),
// tiles in slot 0.
template <typename A, typename P, typename Pack, typename Kernel, typename Finish>
void run_tiles(const SparseMatrix& w, const SparseBlocks& blocks, int64_t m, int64_t multiple,
               Pack pack, Kernel kernel, Finish finish, int64_t wide = 0) {
  int64_t total = 0;
  const std::vector<Panel> panels = make_panels(m, w.k, &total, multiple, kPanel, wide);
  const int64_t width = panels.front().width;
  P* panel = scratch<P>(static_cast<size_t>(width * w.k), 1);
  A* tile = scratch<A>(static_cast<size_t>(width * w.n), 0);
  run_slabs(
      w, blocks, panels, [&](const Panel& p) { return pack_slab(p, w.k, panel, pack); },
      [&](int64_t n0, int64_t n1, const int64_t* begin, const int64_t* end, const P* data,
          const Panel& p, bool acc) { kernel(n0, n1, begin, end, 1, data, p, tile, acc); },
      [&](int64_t n0, int64_t n1, const Panel& p) { finish(n0, n1, p, tile); });
}

// tile[n * width + j] -> out[(m0 + j) * n_total + n] via f, 16 rows at a time so both sides
// stay in L1: the int32 accumulators of sparse_q8_accumulate (y goes through the epilogue
// kernels, f32_tile_transpose / qs32_f32_tile_transpose).
template <typename A, typename F>
void transpose_out(int64_t n0, int64_t n1, const Panel& p, const A* tile, F f) {
  constexpr int64_t kRows = 16;
  for (int64_t nb = n0; nb < n1; nb += kRows) {
    const int64_t ne = std::min(n1, nb + kRows);
    for (int64_t j = 0; j < p.valid; ++j)
      for (int64_t n = nb; n < ne; ++n) f(p.m0 + j, n, tile[n * p.width + j]);
  }
}

// The quad kernels' zero points: one per panel column, 0 in the padding columns of the last
// 16-column panel.
std::vector<int32_t> padded_zero_points(const int32_t* zero_point, int64_t m) {
  std::vector<int32_t> zp((m + 15) / 16 * 16, 0);
  std::copy(zero_point, zero_point + m, zp.begin());
  return zp;
}

// The tile kernels' tasks: task(g0, g1) on ranges of whole 16-row groups with about equal
// nonzeros.
template <typename Task>
void run_groups(const SparseMatrix& w, int64_t m, Task task) {
  const int64_t tasks = tasks_for(w, m);
  std::vector<int64_t> bounds = balanced_rows(w, tasks);
  for (int64_t& b : bounds) b = (b + 15) / 16;  // in whole groups: 0 .. ceil(N / 16)
  ThreadPool::global().run(tasks, [&](int64_t t) {
    if (bounds[t] < bounds[t + 1]) task(bounds[t], bounds[t + 1]);
  });
}

// 16 x 4 tiles (M >= 2, VNNI): 16-column VNNI-order panels, each group one pass over K per
// panel: the 16-column panel is 16 * K bytes (64 KB at K = 4096) and every row it loads
// serves 16 rows. (In a standalone loop of the kernel a 32 KB, L1-sized panel ran ~8% faster
// per quad than the 64 KB one: K blocks might win that; not done.) The kernel writes y (or
// the int32 accumulators) itself.
void run_quad_tiles(const SparseMatrix& w, const QuadMatrix& quads, const uint8_t* xq,
                    const int32_t* zero_point, int64_t m, const TileOut& out) {
  const Kernels& kt = kernels();
  const std::vector<int32_t> zp = padded_zero_points(zero_point, m);
  int64_t total = 0;
  const std::vector<Panel> panels = make_panels(m, w.k, &total, 16, 16);
  uint8_t* buf = scratch<uint8_t>(static_cast<size_t>(total), 1);
  pack_panels(m, w.k, panels, buf, [&](const Panel& p, int64_t k0, int64_t k1, uint8_t* dst) {
    pack_panel_quads(xq, w.k, p, k0, k1, dst);
  });
  run_groups(w, m, [&](int64_t g0, int64_t g1) {
    for (const Panel& p : panels)
      kt.qu8x4_spmm_tiles(&quads, w.n, g0, g1, buf + p.offset, p.m0, p.valid, zp.data() + p.m0,
                          &out);
  });
}

// fp32 16 x 1 tiles (M >= 2, AVX-512): 16-column fp32 panels (16 * K floats: 256 KB at
// K = 4096), tasks of whole groups, one pass over K per group and panel; the kernel adds the
// bias and writes y. A group's weights (64 bytes per column) are read once per panel, so while
// all panels fit in L2 (kTilePanelBytes) chunks of kTileChunk groups run every panel before the
// next chunk (the weights then come from memory once; M = 32, 90%: 2.16 -> 1.79 ms in one
// interleaved run); beyond that panel by panel as the int8 tiles (M = 256 chunked: 15.3 ->
// 17.8 ms, the panels then coming from L3). A K-blocked walk with the panel block in L1 ran
// no faster in a standalone loop (7.0 against 4.75 ns per group column).
constexpr int64_t kTilePanelBytes = 1 << 20;
constexpr int64_t kTileChunk = 4;

void run_f32_tiles(const SparseMatrix& w, const F32Tiles& tiles, const float* x, int64_t m,
                   const float* bias, float* y) {
  const Kernels& kt = kernels();
  int64_t total = 0;
  const std::vector<Panel> panels = make_panels(m, w.k, &total, 16, 16);
  float* buf = scratch<float>(static_cast<size_t>(total), 1);
  pack_panels(m, w.k, panels, buf, [&](const Panel& p, int64_t k0, int64_t k1, float* dst) {
    kt.f32_panel_pack(x, w.k, p.m0, p.valid, p.width, k0, k1, dst);
  });
  const int64_t chunk = total * static_cast<int64_t>(sizeof(float)) <= kTilePanelBytes
                            ? kTileChunk
                            : w.n;  // panel by panel over the task's groups
  run_groups(w, m, [&](int64_t g0, int64_t g1) {
    for (int64_t c0 = g0; c0 < g1; c0 += chunk)
      for (const Panel& p : panels)
        kt.f32_spmm_tiles(&tiles, w.n, c0, std::min(g1, c0 + chunk), buf + p.offset, p.m0,
                          p.valid, bias, y);
  });
}

// The int8 ops' shared body: x_q [m, k] uint8 with per-row zero points -> `out`: the int32
// accumulators (out.acc) or y = acc * (x_scale * w_scale) + bias (out.y). The tile paths
// finish each task's tile into out; the tile kernel writes out itself.
// Quad packs (1 x 4 blocks) where the CPU has the quad kernel: x_q as uint8 panels in VNNI
// order (16-column multiples), each tile started at -zp * row_sum by the kernel; with 16 x 4
// tiles (quads->groups), run_quad_tiles.
// Otherwise pairs: int16 panels of x_q - zp in [-255, 255] (subtracting the zero point while
// widening is free and removes gemmlowp's row-sum correction term).
void run_int8(const SparseMatrix& w, const SparseBlocks& blocks, const QuadMatrix* quads,
              const uint8_t* xq, const int32_t* zero_point, int64_t m, const TileOut& out) {
  const Kernels& kt = kernels();
  const int64_t n = w.n;
  const auto finish = [&](int64_t n0, int64_t n1, const Panel& p, const int32_t* tile) {
    if (out.acc == nullptr) {
      kt.qs32_f32_tile_transpose(tile, p.width, p.valid, n0, n1, out.x_scale, out.w_scale,
                                 out.bias, out.y, n, p.m0);
    } else {
      transpose_out(n0, n1, p, tile,
                    [&](int64_t mi, int64_t ni, int32_t v) { out.acc[mi * n + ni] = v; });
    }
  };
  // M = 1: gather kernels into an int32 row of accumulators, handed to finish as a 1-wide
  // tile, instead of a panel of 8 (pairs) or 16 (quads) columns that are all padding but one:
  // pairs 2.3-2.6x faster at 50-99%, quads (VNNI) 1.7-1.9x at 80-95% (4096 x 4096, one
  // thread, alternating-process A/Bs). Below VNNI quad packs take the pair kernel.
  if (m == 1) {
    int32_t* acc = scratch<int32_t>(static_cast<size_t>(w.n), 0);
    const Panel row{0, 1, 1, 0};
    const auto done = [&](int64_t n0, int64_t n1) { finish(n0, n1, row, acc); };
    if (quads != nullptr && kt.qu8x4_spmv_csr != nullptr) {
      run_rows(
          w, blocks,
          [&](int64_t n0, int64_t n1, const int64_t* b, const int64_t* e, bool a) {
            kt.qu8x4_spmv_csr(quads, n0, n1, b, e, xq, zero_point[0], acc, a);
          },
          done);
      return;
    }
    int32_t* xz = scratch<int32_t>(static_cast<size_t>(w.k), 1);
    for (int64_t k = 0; k < w.k; ++k)  // low int16 = x_q - zp, high int16 = 0 (kernels.h)
      xz[k] = static_cast<uint16_t>(static_cast<int16_t>(xq[k] - zero_point[0]));
    run_rows(
        w, blocks,
        [&](int64_t n0, int64_t n1, const int64_t* b, const int64_t* e, bool a) {
          kt.qs16_spmv_csr(&w, n0, n1, b, e, xz, acc, a);
        },
        done);
    return;
  }
  if (quads != nullptr && quads->groups > 0 && kt.qu8x4_spmm_tiles != nullptr)
    return run_quad_tiles(w, *quads, xq, zero_point, m, out);
  if (quads != nullptr && kt.qu8x4_spmm_csr != nullptr) {
    const std::vector<int32_t> zp = padded_zero_points(zero_point, m);
    run_tiles<int32_t, uint8_t>(
        w, blocks, m, 16,
        [&](const Panel& p, int64_t k0, int64_t k1, uint8_t* dst) {
          pack_panel_quads(xq, w.k, p, k0, k1, dst);
        },
        [&](int64_t n0, int64_t n1, const int64_t* b, const int64_t* e, int64_t s,
            const uint8_t* pb, const Panel& p, int32_t* tile, bool acc) {
          kt.qu8x4_spmm_csr(quads, n0, n1, b, e, s, pb, p.width, zp.data() + p.m0, tile, acc);
        },
        finish);
    return;
  }
  run_tiles<int32_t, int16_t>(
      w, blocks, m, 8,
      [&](const Panel& p, int64_t k0, int64_t k1, int16_t* dst) {
        pack_panel(xq, w.k, p, k0, k1, dst, [zero_point](uint8_t v, int64_t mi) {
          return static_cast<int16_t>(static_cast<int32_t>(v) - zero_point[mi]);
        });
      },
      [&](int64_t n0, int64_t n1, const int64_t* b, const int64_t* e, int64_t s,
          const int16_t* pb, const Panel& p, int32_t* tile, bool acc) {
        kt.qs16_spmm_csr(&w, n0, n1, b, e, s, pb, p.width, tile, acc);
      },
      finish);
}

// fp32 M = 1: y = W x (+ bias) with the gather kernel (sparse_linear_f32, and sparse_mm on a
// one-column b).
void run_f32_vector(const SparseMatrix& w, const SparseBlocks& blocks, const float* x,
                    const float* bias, float* y) {
  const Kernels& kt = kernels();
  run_rows(
      w, blocks,
      [&](int64_t n0, int64_t n1, const int64_t* b, const int64_t* e, bool a) {
        kt.f32_spmv_csr(&w, n0, n1, b, e, x, y, a);
      },
      [&](int64_t n0, int64_t n1) {
        if (bias != nullptr)
          for (int64_t r = n0; r < n1; ++r) y[r] += bias[r];
      });
}

}  // namespace

void sparse_linear_f32(const SparseMatrix& w, const SparseBlocks& blocks, const float* x,
                       int64_t m, const float* bias, float* y, const F32Tiles* tiles) {
  const Kernels& kt = kernels();
  if (m == 0 || w.n == 0) return;
  if (m >= 2 && w.k > 0 && tiles != nullptr && tiles->groups > 0 &&
      kt.f32_spmm_tiles != nullptr)
    return run_f32_tiles(w, *tiles, x, m, bias, y);
  if (m == 1) return run_f32_vector(w, blocks, x, bias, y);
  // Packed transposed panels (64 columns wide where wide_panels says so), the CSR kernel into
  // tiles, each task's tile transposed into y.
  const int64_t n = w.n;
  run_tiles<float, float>(
      w, blocks, m, 8,
      [&](const Panel& p, int64_t k0, int64_t k1, float* dst) {
        kt.f32_panel_pack(x, w.k, p.m0, p.valid, p.width, k0, k1, dst);
      },
      [&](int64_t n0, int64_t n1, const int64_t* b, const int64_t* e, int64_t s, const float* pb,
          const Panel& p, float* tile, bool acc) {
        kt.f32_spmm_csr(&w, n0, n1, b, e, s, pb, p.width, p.width, tile, p.width, acc);
      },
      [&](int64_t n0, int64_t n1, const Panel& p, const float* tile) {
        kt.f32_tile_transpose(tile, p.width, p.valid, n0, n1, bias, y, n, p.m0);
      },
      wide_panels(w));
}

void sparse_mm_f32(const SparseMatrix& w, const SparseBlocks& blocks, const float* b, int64_t m,
                   float* y) {
  const Kernels& kt = kernels();
  if (m == 0 || w.n == 0) return;
  if (m == 1) return run_f32_vector(w, blocks, b, nullptr, y);  // b and y are vectors
  // Slab by slab as run_tiles, but y is the kernel's tile in place (row stride M) for every
  // whole panel, so no tile is copied out: 4096 x 4096, one thread, against the tile-and-copy
  // path (same packs), three alternating processes: M = 256 99% 2.45-3.17 -> 1.91-2.25 ms,
  // M = 128 99% 1.00-1.02 -> 0.90-0.92 ms; 95% and 90% within the noise. Only a last panel
  // whose width is not a multiple of 8 goes through a tile. Where one panel spans b (M = 32, or
  // 64 with wide panels) b is the panel itself; otherwise each slab of b is copied into a
  // compact panel: in place its rows lie M floats apart (1 KB at M = 256), and the panel rows
  // the kernel gathers then share 1/16 of the cache sets. M = 32 in place against copying b
  // (one-entry-per-row weight 0.069-0.077 against 0.082-0.109 ms, 99% 0.216-0.260 against
  // 0.242-0.300 ms, 90% within the noise).
  int64_t total = 0;
  const std::vector<Panel> panels = make_panels(m, w.k, &total, 8, kPanel, wide_panels(w));
  const int64_t width = panels.front().width;
  // b is the panel only when its rows start on cache lines: each panel row the kernel gathers
  // is then whole lines. A b 16 or 32 bytes off them (a view) spans one more line per row:
  // 99%, M = 32 0.216 -> 0.31-0.38 ms, 95% 0.86-0.96 -> 1.22-1.43 ms; copied: 0.23-0.32, 0.86-0.89.
  const bool b_is_panel = panels.size() == 1 && width == m &&  // then its row stride is width
                          reinterpret_cast<uintptr_t>(b) % 64 == 0;
  float* panel = b_is_panel ? nullptr : scratch<float>(static_cast<size_t>(width * w.k), 1);
  const Panel& last = panels.back();
  float* tile = last.valid < last.width
                    ? scratch<float>(static_cast<size_t>(last.width * w.n), 0)
                    : nullptr;
  const auto in_place = [](const Panel& p) { return p.valid == p.width; };
  const auto copy_slab = [&](const Panel& p, int64_t k0, int64_t k1, float* dst) {
    for (int64_t kk = k0; kk < k1; ++kk) {
      std::memcpy(dst + kk * p.width, b + kk * m + p.m0, sizeof(float) * p.valid);
      std::fill(dst + kk * p.width + p.valid, dst + (kk + 1) * p.width, 0.0f);
    }
  };
  run_slabs(
      w, blocks, panels,
      [&](const Panel& p) { return b_is_panel ? b : pack_slab(p, w.k, panel, copy_slab); },
      [&](int64_t n0, int64_t n1, const int64_t* bp, const int64_t* e, const float* data,
          const Panel& p, bool a) {
        float* out = in_place(p) ? y + p.m0 : tile;
        kt.f32_spmm_csr(&w, n0, n1, bp, e, 1, data, p.width, p.width, out,
                        in_place(p) ? m : p.width, a);
      },
      [&](int64_t n0, int64_t n1, const Panel& p) {
        if (!in_place(p))
          for (int64_t r = n0; r < n1; ++r)
            std::memcpy(y + r * m + p.m0, tile + r * p.width, sizeof(float) * p.valid);
      });
}

Status sparse_linear_q8(const SparseMatrix& w, const SparseBlocks& blocks, const float* w_scale,
                        const float* x, int64_t m, const float* bias, float* y,
                        const QuadMatrix* quads) {
  if (m == 0 || w.n == 0) return Status::ok;
  // Per-row dynamic quantization with the core op (also catches NaN / Inf in x).
  uint8_t* xq = scratch<uint8_t>(static_cast<size_t>(m * w.k), 0);
  std::vector<float> xs(m);
  std::vector<int32_t> zp(m);
  const Status st = dynamic_quantize(x, xq, QDtype::u8, m, w.k, xs.data(), zp.data());
  if (st != Status::ok) return st;
  TileOut out;
  out.y = y;
  out.x_scale = xs.data();
  out.w_scale = w_scale;
  out.bias = bias;
  run_int8(w, blocks, quads, xq, zp.data(), m, out);
  return Status::ok;
}

void sparse_q8_accumulate(const SparseMatrix& w, const SparseBlocks& blocks, const uint8_t* xq,
                          const int32_t* zero_point, int64_t m, int32_t* acc,
                          const QuadMatrix* quads) {
  if (m == 0 || w.n == 0) return;
  TileOut out;
  out.acc = acc;
  run_int8(w, blocks, quads, xq, zero_point, m, out);
}

}  // namespace pyquant
