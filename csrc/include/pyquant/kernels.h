// Kernel signatures and the per-ISA declarations.
//
// Every kernel exists once per ISA namespace (pyquant::ref, pyquant::avx2, pyquant::avx512),
// in a file of the same stem in csrc/<isa>/. Kernels are single-threaded and work on a
// contiguous range; the ops in csrc/ops/ split the work and pick the kernel via dispatch.h.
#pragma once

#include <cstdint>

namespace pyquant {

// ONNX QuantizeLinear on n contiguous floats with one scale:
//   y[i] = saturate(round_half_to_even(x[i] / scale) + zero_point)   (true division)
// y is int8_t* or uint8_t* by the kernel's name. Returns true if any x[i] is NaN
// (NaN elements are written as the dtype's minimum; the op turns the flag into an error).
using QuantizeFn = bool (*)(const float* x, void* y, int64_t n, float scale, int32_t zero_point);
// Same, element i with scale[i] and zero_point[i]; zero_point may be null (all zero).
using QuantizeVecFn = bool (*)(const float* x, void* y, int64_t n, const float* scale,
                               const int32_t* zero_point);
// ONNX DequantizeLinear: y[i] = float(q[i] - zero_point) * scale.
using DequantizeFn = void (*)(const void* q, float* y, int64_t n, float scale, int32_t zero_point);
using DequantizeVecFn = void (*)(const void* q, float* y, int64_t n, const float* scale,
                                 const int32_t* zero_point);
// Minimum and maximum of n >= 1 floats, NaNs skipped (both stay +-inf if all are NaN).
// Returns true if any x[i] is NaN.
using MinMaxFn = bool (*)(const float* x, int64_t n, float* min, float* max);

}  // namespace pyquant

#define PYQUANT_DECLARE_KERNELS(ns)                                                            \
  namespace ns {                                                                               \
  bool f32_qs8_quantize(const float* x, void* y, int64_t n, float scale, int32_t zero_point); \
  bool f32_qu8_quantize(const float* x, void* y, int64_t n, float scale, int32_t zero_point); \
  bool f32_qs8_quantize_vec(const float* x, void* y, int64_t n, const float* scale,           \
                            const int32_t* zero_point);                                        \
  bool f32_qu8_quantize_vec(const float* x, void* y, int64_t n, const float* scale,           \
                            const int32_t* zero_point);                                        \
  void qs8_f32_dequantize(const void* q, float* y, int64_t n, float scale, int32_t zero_point); \
  void qu8_f32_dequantize(const void* q, float* y, int64_t n, float scale, int32_t zero_point); \
  void qs8_f32_dequantize_vec(const void* q, float* y, int64_t n, const float* scale,         \
                              const int32_t* zero_point);                                      \
  void qu8_f32_dequantize_vec(const void* q, float* y, int64_t n, const float* scale,         \
                              const int32_t* zero_point);                                      \
  bool f32_minmax(const float* x, int64_t n, float* min, float* max);                          \
  }

namespace pyquant {
PYQUANT_DECLARE_KERNELS(ref)
PYQUANT_DECLARE_KERNELS(avx2)
PYQUANT_DECLARE_KERNELS(avx512)
}  // namespace pyquant

// ---------------------------------------------------------------------------------------------
// Magnitude selection (top-k threshold, magnitude masks). Every float is ordered by its "key",
// the bit pattern of |x| as uint32 (bits & 0x7fffffff): for non-NaN floats the key is monotone
// in |x|, +0 and -0 share key 0, +-Inf is 0x7f800000 (above every finite value) and a NaN is
// any key above 0x7f800000. A radix select needs two histograms: the top 16 bits of the key
// (key >> 15) and, inside one top bucket, the low 15 bits (key & 0x7fff).
namespace pyquant {
constexpr int kAbsHistHiBins = 1 << 16;
constexpr int kAbsHistLoBins = 1 << 15;
constexpr uint32_t kAbsKeyInf = 0x7f800000u;
// Keys above this are Inf or NaN: a weight tensor holding one is broken, the ops refuse it.
constexpr uint32_t kAbsKeyMaxFinite = 0x7f7fffffu;
// hist[key >> 15] += 1 for each of the n floats; returns true if any is NaN. The caller keeps
// every bin below 2^32 (it calls with fewer than 2^31 elements between flushes).
using AbsHistHiFn = bool (*)(const float* x, int64_t n, uint32_t* hist);
// hist[key & 0x7fff] += 1 for each float whose key >> 15 == hi.
using AbsHistLoFn = void (*)(const float* x, int64_t n, uint32_t hi, uint32_t* hist);
// mask[i] = key(x[i]) > t, or key(x[i]) == t while *ties_left > 0 (which it then decrements):
// the first *ties_left elements at the threshold, in index order, are kept. mask bytes are 0/1.
using AbsSelectMaskFn = void (*)(const float* x, int64_t n, uint32_t t, int64_t* ties_left,
                                 uint8_t* mask);
// The same selection applied in place: every element not selected is set to +0.0f.
// Returns how many elements were kept.
using AbsSelectPruneFn = int64_t (*)(float* x, int64_t n, uint32_t t, int64_t* ties_left);
// One pass of a sampled select: adds the number of keys > hi to *above; writes the keys in
// [lo, hi] to buf while fewer than cap are written; sets *nan if any element is NaN. Returns
// how many keys are in [lo, hi] (all of them, also past cap). lo <= hi <= 0x7fffffff.
using AbsBracketFn = int64_t (*)(const float* x, int64_t n, uint32_t lo, uint32_t hi,
                                 uint32_t* buf, int64_t cap, int64_t* above, bool* nan);
}  // namespace pyquant

#define PYQUANT_DECLARE_ABS_SELECT_KERNELS(ns)                                             \
  namespace ns {                                                                           \
  bool f32_abs_histogram_hi(const float* x, int64_t n, uint32_t* hist);                    \
  void f32_abs_histogram_lo(const float* x, int64_t n, uint32_t hi, uint32_t* hist);       \
  void f32_abs_select_mask(const float* x, int64_t n, uint32_t t, int64_t* ties_left,      \
                           uint8_t* mask);                                                 \
  int64_t f32_abs_select_prune(float* x, int64_t n, uint32_t t, int64_t* ties_left);       \
  int64_t f32_abs_bracket(const float* x, int64_t n, uint32_t lo, uint32_t hi, uint32_t* buf, \
                          int64_t cap, int64_t* above, bool* nan);                         \
  }

namespace pyquant {
PYQUANT_DECLARE_ABS_SELECT_KERNELS(ref)
PYQUANT_DECLARE_ABS_SELECT_KERNELS(avx2)
PYQUANT_DECLARE_ABS_SELECT_KERNELS(avx512)
}  // namespace pyquant
// Sparse x dense kernels (issue 5): y[m, n] = sum_k x[m, k] * W[n, k] (+ bias[n]) with W sparse.
//
// Packed weight (built once by pyquant.ops.sparse_pack, see pyquant/sparse_format.md):
// CSR over the N output rows, optionally split into K blocks stored block-major (then
// row_ptr only gives the row counts and the ops pass each block's pointers to the kernels).
// row_ptr[N + 1] (int64) gives each row's range of nonzeros;
// col[nnz] holds K indices, uint16 when K <= 65536 (idx16) else int32 (idx32); exactly one of
// the two pointers is set. fp32: values[nnz] float32 -> 6 bytes per nonzero (uint16 indices).
// int8: every run's nonzero count is padded to even (a pad has value 0 and repeats a valid
// index), values are int8-range numbers stored as int16 so that two neighbours form one 32-bit
// operand of vpmaddwd -> 4 bytes per nonzero.
namespace pyquant {

struct SparseMatrix {
  int64_t n = 0, k = 0;
  const int64_t* row_ptr = nullptr;
  const uint16_t* idx16 = nullptr;
  const int32_t* idx32 = nullptr;
  const void* values = nullptr;  // float (fp32) or int16_t (int8)
};

// Activations are packed per call into panels of `width` (8, 16, 24 or 32) columns of M:
// panel[k * width + j] = x[m0 + j, k] (zero for j >= valid). A kernel call handles rows
// [n0, n1): row n's entries are [begin[n * stride], end[n * stride]) (plain CSR: begin =
// row_ptr, end = row_ptr + 1, stride 1; K block b: block_ptr + b * (N + 1), its + 1, stride 1),
// and it writes the transposed tile yt[n * width + j] for all j < width (fp32:
// yt[n * out_ld + j]): set if !accumulate, else added to. The fp32 kernel takes the row
// strides (>= width) of the panel (panel row k at panel + k * panel_ld) and of the tile (row n
// at yt + n * out_ld): sparse_linear passes width for both (its packed panel and tile),
// sparse_mm the M of y [N, M] as out_ld where y is the tile.
using SpmmF32Fn = void (*)(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                           const int64_t* end, int64_t stride, const float* panel, int64_t width,
                           int64_t panel_ld, float* yt, int64_t out_ld, bool accumulate);
// The fp32 ops' epilogue: y[(m0 + j) * ldy + n] = tile[n * width + j] + (bias ? bias[n] : 0)
// for n in [n0, n1) and j < valid (the transposed tile back into y's rows).
using TileTransposeF32Fn = void (*)(const float* tile, int64_t width, int64_t valid, int64_t n0,
                                    int64_t n1, const float* bias, float* y, int64_t ldy,
                                    int64_t m0);
// The fp32 ops' activation panel: panel[kk * width + j] = x[(m0 + j) * k + kk] for j < valid,
// 0 for valid <= j < width, kk in [k0, k1) (x is [M, k] row-major; width a multiple of 8).
using PanelPackF32Fn = void (*)(const float* x, int64_t k, int64_t m0, int64_t valid,
                                int64_t width, int64_t k0, int64_t k1, float* panel);
// The int8 ops' epilogue: y[(m0 + j) * ldy + n] = float(tile[n * width + j]) *
// (x_scale[m0 + j] * w_scale[n]) + (bias ? bias[n] : 0), each product rounded (no FMA), for n
// in [n0, n1) and j < valid; width 1 is the M = 1 row of accumulators.
using TileDequantizeFn = void (*)(const int32_t* tile, int64_t width, int64_t valid, int64_t n0,
                                  int64_t n1, const float* x_scale, const float* w_scale,
                                  const float* bias, float* y, int64_t ldy, int64_t m0);
// M = 1: y[n] = (accumulate ? y[n] : 0) + sum_{p in [begin[n], end[n])} values[p] * x[col[p]]
// for n in [n0, n1): one call per K block (the op adds the bias after the last).
using SpmvF32Fn = void (*)(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                           const int64_t* end, const float* x, float* y, bool accumulate);
// int8: the panel holds int16 (x_q - zero_point) in [-255, 255]; int32 accumulation, exact
// (|sum| <= nnz_row * 255 * 127 < 2^31 is checked at pack time). Entries come in pairs.
using SpmmQ8Fn = void (*)(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                          const int64_t* end, int64_t stride, const int16_t* panel, int64_t width,
                          int32_t* acct, bool accumulate);

// M = 1, int8: acc[n] = (accumulate ? acc[n] : 0) + sum_{p in [begin[n], end[n])}
// values[p] * xz[col[p]] for n in [n0, n1). xz[k] holds x_q[k] - zero_point (in [-255, 255])
// in its low int16 and 0 in its high one, so one vpmaddwd of gathered xz with the
// sign-extended values is the exact product (the high halves multiply to 0). Exact in int32
// under the pack's per-row entry limit, as the tile kernels.
using SpmvQ8Fn = void (*)(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                          const int64_t* end, const int32_t* xz, int32_t* acc, bool accumulate);

// int8 packs made of aligned quads (1 x 4 blocks along K, e.g. from prune.block_prune_): every
// run is a sequence of quads, entries 4i..4i+3 covering columns 4q..4q+3. quad_w[i] holds the
// four int8 values of quad i (little-endian, entry 4i lowest), quad_col[i] = q, row_sum[n] the
// sum of row n's values. begin / end are entry offsets (multiples of 4) as for the pair
// kernels. The panel holds uint8 x_q in VNNI order, width a multiple of 16:
// panel[(q * width + j) * 4 + t] = x_q[m0 + j, 4q + t]. Without accumulate the tile starts at
// -zp[j] * row_sum[n], which makes sum w * x_q into the exact sum w * (x_q - zp).
struct QuadMatrix {
  const int32_t* quad_w = nullptr;
  const int32_t* quad_col = nullptr;
  const int32_t* row_sum = nullptr;
  // Optional 16 x 4 tiles (set when the quads of each 16-row group share their columns, as
  // prune.block_mask(..., block=(16, 4)) makes them): group g (rows 16g .. 16g + 15) holds
  // quads [group_ptr[g], group_ptr[g + 1]), quad i at column 4 * group_col[i] with row r's
  // four weights in group_w[i * 16 + r] (0 where row r lacks that quad or is past N).
  int64_t groups = 0;  // ceil(N / 16), or 0 when absent
  const int64_t* group_ptr = nullptr;
  const int32_t* group_col = nullptr;
  const int32_t* group_w = nullptr;
};
using SpmmQu8x4Fn = void (*)(const QuadMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                             const int64_t* end, int64_t stride, const uint8_t* panel,
                             int64_t width, const int32_t* zp, int32_t* acct, bool accumulate);
// 16 x 4 tiles: groups [g0, g1) against a 16-column VNNI-order panel (as above, width 16) of
// columns m0 .. m0 + 15 of M (the first `valid` real), one pass over all of K (no K blocks).
// Row r of group g and column j accumulate -zp[j] * row_sum[n] + the group's quad weights .
// x_q in int32 (n = 16g + r < N); the kernel then writes them straight into the [M, N] output,
// no tile: out.acc[(m0 + j) * N + n] as int32, or (out.acc null) out.y as float
// acc * (x_scale[m0 + j] * w_scale[n]) (+ bias[n]), rounded as qs32_f32_tile_transpose.
// Vectors run along the group's 16 rows: each quad's 16 weights are one 64-byte load and each
// column's 4 inputs one broadcast, so the 16 columns' results are 16 contiguous outputs.
struct TileOut {
  int32_t* acc = nullptr;
  float* y = nullptr;
  const float* x_scale = nullptr;
  const float* w_scale = nullptr;
  const float* bias = nullptr;  // optional
};
// fp32 16 x 1 tiles (prune.block_mask(..., block=(16, 1)): the 16 rows of a group share their
// columns): group g (rows 16g .. 16g + 15) holds columns group_col[group_ptr[g] ..
// group_ptr[g + 1]) (ascending), row r's weight at column i in group_w[i * 16 + r] (0 where row
// r lacks it or is past N). A derived view of an fp32 pack, built once per pack.
struct F32Tiles {
  int64_t groups = 0;  // ceil(N / 16), or 0 when absent
  const int64_t* group_ptr = nullptr;
  const int32_t* group_col = nullptr;
  const float* group_w = nullptr;
};
// Groups [g0, g1) against a 16-column fp32 panel (panel[k * 16 + j] = x[m0 + j, k], the first
// `valid` real, one pass over all of K): y[(m0 + j) * N + n] = the sum, one FMA each in order,
// of group_w[c * 16 + r] * panel[group_col[c] * 16 + j] over the group's columns c with a
// nonzero weight, + bias[n] if bias, for n = 16g + r < N. Vectors run along the group's 16
// rows: each column's 16 weights are one 64-byte load, each panel value one broadcast, and the
// 16 accumulators are 16 rows of y.
using SpmmF32TileFn = void (*)(const F32Tiles* w, int64_t n, int64_t g0, int64_t g1,
                               const float* panel, int64_t m0, int64_t valid, const float* bias,
                               float* y);
using SpmmQu8x4TileFn = void (*)(const QuadMatrix* w, int64_t n, int64_t g0, int64_t g1,
                                 const uint8_t* panel, int64_t m0, int64_t valid,
                                 const int32_t* zp, const TileOut* out);
// M = 1 on quads: acc[n] = (accumulate ? acc[n] : -zp * row_sum[n]) + sum over the run's
// quads i of quad_w[i] . x_q[4 q_i .. 4 q_i + 3] (begin / end as above), x_q the K uint8.
using SpmvQu8x4Fn = void (*)(const QuadMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                             const int64_t* end, const uint8_t* xq, int32_t zp, int32_t* acc,
                             bool accumulate);

}  // namespace pyquant

#define PYQUANT_DECLARE_SPARSE_KERNELS(ns)                                                      \
  namespace ns {                                                                                \
  void f32_spmm_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,        \
                    const int64_t* end, int64_t stride, const float* panel, int64_t width,      \
                    int64_t panel_ld, float* yt, int64_t out_ld, bool accumulate);              \
  void f32_spmv_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,        \
                    const int64_t* end, const float* x, float* y, bool accumulate);             \
  void qs16_spmm_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,       \
                     const int64_t* end, int64_t stride, const int16_t* panel, int64_t width,   \
                     int32_t* acct, bool accumulate);                                           \
  void qs16_spmv_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,       \
                     const int64_t* end, const int32_t* xz, int32_t* acc, bool accumulate);     \
  }
// The fp32 transposes (tile_transpose.cpp of ref, avx2, avx512): panel pack and epilogue.
#define PYQUANT_DECLARE_F32_TRANSPOSES(ns)                                                      \
  namespace ns {                                                                                \
  void f32_panel_pack(const float* x, int64_t k, int64_t m0, int64_t valid, int64_t width,      \
                      int64_t k0, int64_t k1, float* panel);                                    \
  void f32_tile_transpose(const float* tile, int64_t width, int64_t valid, int64_t n0,          \
                          int64_t n1, const float* bias, float* y, int64_t ldy, int64_t m0);    \
  }
#define PYQUANT_DECLARE_TILE_DEQUANTIZE(ns)                                                     \
  namespace ns {                                                                                \
  void qs32_f32_tile_transpose(const int32_t* tile, int64_t width, int64_t valid, int64_t n0,   \
                               int64_t n1, const float* x_scale, const float* w_scale,          \
                               const float* bias, float* y, int64_t ldy, int64_t m0);           \
  }

namespace pyquant {
PYQUANT_DECLARE_SPARSE_KERNELS(ref)
PYQUANT_DECLARE_SPARSE_KERNELS(avx2)
PYQUANT_DECLARE_SPARSE_KERNELS(avx512)
PYQUANT_DECLARE_F32_TRANSPOSES(ref)
PYQUANT_DECLARE_F32_TRANSPOSES(avx2)
PYQUANT_DECLARE_F32_TRANSPOSES(avx512)
PYQUANT_DECLARE_TILE_DEQUANTIZE(ref)
PYQUANT_DECLARE_TILE_DEQUANTIZE(avx512)
#define PYQUANT_DECLARE_QUAD_KERNEL(ns)                                                         \
  namespace ns {                                                                                \
  void qu8x4_spmm_csr(const QuadMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,        \
                      const int64_t* end, int64_t stride, const uint8_t* panel, int64_t width,  \
                      const int32_t* zp, int32_t* acct, bool accumulate);                       \
  void qu8x4_spmv_csr(const QuadMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,        \
                      const int64_t* end, const uint8_t* xq, int32_t zp, int32_t* acc,          \
                      bool accumulate);                                                         \
  void qu8x4_spmm_tiles(const QuadMatrix* w, int64_t n, int64_t g0, int64_t g1,                 \
                        const uint8_t* panel, int64_t m0, int64_t valid, const int32_t* zp,     \
                        const TileOut* out);                                                    \
  }
#define PYQUANT_DECLARE_F32_TILE_KERNEL(ns)                                                     \
  namespace ns {                                                                                \
  void f32_spmm_tiles(const F32Tiles* w, int64_t n, int64_t g0, int64_t g1, const float* panel, \
                      int64_t m0, int64_t valid, const float* bias, float* y);                  \
  }
// The fp32 tile kernel: AVX-512 (16 rows = one zmm); ref is its oracle; below AVX-512 the op
// runs the same pack with the CSR kernel.
PYQUANT_DECLARE_F32_TILE_KERNEL(ref)
PYQUANT_DECLARE_F32_TILE_KERNEL(avx512)
// The quad kernel needs vpdpbusd: VNNI has it, ref is its oracle (tests); below VNNI the op runs
// quad packs with the pair kernel, which they also satisfy.
PYQUANT_DECLARE_QUAD_KERNEL(ref)
PYQUANT_DECLARE_QUAD_KERNEL(avx512vnni)
// VNNI's other sparse kernel: int8 pairs with vpdpwssd; its fp32 ones are the AVX-512 ones.
namespace avx512vnni {
void qs16_spmm_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                   const int64_t* end, int64_t stride, const int16_t* panel, int64_t width,
                   int32_t* acct, bool accumulate);
}
}  // namespace pyquant
