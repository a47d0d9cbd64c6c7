// Multi-threaded ops over whole tensors: shape logic, work split, kernel choice.
// Inputs are validated by the caller (bindings.cpp); ops only report data-dependent failures.
#pragma once

#include <cstdint>
#include <vector>

namespace pyquant {

enum class Status { ok, nan_in_input, inf_in_input, nonfinite_in_input, range_overflow };
const char* status_message(Status s);

enum class QDtype { s8, u8 };

// How scales map onto x, viewed as [outer, channels, inner] around the quantization axis.
struct QLayout {
  enum class Mode { per_tensor, per_axis, blocked };
  Mode mode = Mode::per_tensor;
  int64_t outer = 1, channels = 1, inner = 1;
  int64_t block_size = 0;                // blocked: elements along the axis sharing one scale
  const float* scale = nullptr;          // per_tensor: 1; per_axis: channels;
                                         // blocked: outer * ceil(channels / block_size) * inner
  const int32_t* zero_point = nullptr;   // same count as scale, or null for all zero
  int64_t numel() const { return outer * channels * inner; }
};

Status quantize(const float* x, void* y, QDtype dtype, const QLayout& layout);
void dequantize(const void* q, QDtype dtype, float* y, const QLayout& layout);

// ONNX DynamicQuantizeLinear for u8 (range widened to include 0); symmetric absmax / 127 for s8.
// x is [rows, cols]; each row gets its own scale and zero point (rows = 1: per tensor).
Status dynamic_quantize(const float* x, void* y, QDtype dtype, int64_t rows, int64_t cols,
                        float* scale, int32_t* zero_point);

// One row of dynamic_quantize's per-row mode, in the calling thread.
Status dynamic_quantize_row(const float* row, int64_t cols, QDtype dtype, void* y, float* scale,
                            int32_t* zero_point);
// The scale and zero point dynamic_quantize derives from a row's min and max.
Status dynamic_qparams(float min, float max, QDtype dtype, float* scale, int32_t* zero_point);

}  // namespace pyquant

// ---------------------------------------------------------------------------------------------
// Magnitude selection over one or more float32 buffers taken together (global), in flat index
// order: buffer 0 first, then buffer 1, ... Nothing is concatenated. Ranking is by the |x| key
// (kernels.h). From 2^20 elements a sample of 64K keys brackets the threshold and one streaming
// pass counts the keys above the bracket and collects those inside (at most n / 25 keys, 4% of
// the input's bytes). If that fails (bracket missed, buffer full), or for small n, an exact
// radix select runs: pass 1 histograms the top 16 key bits, pass 2 the low 15 bits inside the
// chosen bucket (a few histograms per task, ~400 KB). Results never depend on the route.
namespace pyquant {

struct FloatBuffers {
  std::vector<const float*> data;
  std::vector<int64_t> size;
};

// The k-th largest |x| over all buffers (1 <= k <= n), as its key (bits of |x|).
// Returns nan_in_input if any element is NaN. +-Inf is the largest magnitude.
Status abs_topk_key(const FloatBuffers& x, int64_t k, uint32_t* key);

// Keeps exactly k elements (0 <= k <= n): every |x| above the k-th largest, then ties at it
// in flat index order (first come, first kept). masks[i] gets 0/1 bytes for buffer i.
Status abs_select_mask(const FloatBuffers& x, int64_t k, const std::vector<uint8_t*>& masks);

// The same selection applied in place: the n - k elements not kept are set to +0.0f.
// kept[i] gets the number of elements of buffer i kept (kept may be null).
Status abs_select_prune(const std::vector<float*>& x, const std::vector<int64_t>& size, int64_t k,
                        std::vector<int64_t>* kept);

}  // namespace pyquant

// Sparse linear (issue 5). W is a validated SparseMatrix (indices < k, row_ptr monotonic).
#include "pyquant/kernels.h"

namespace pyquant {

// K blocking (optional): the entries are stored block-major and block_ptr is
// [num_blocks][N + 1]; row n's entries with columns in block b are
// [block_ptr[b * (N + 1) + n], block_ptr[b * (N + 1) + n + 1]). The ops walk one block of the
// activation panel at a time (it stays in L1/L2) over a sequential weight stream.
// Null: one block (plain CSR).
struct SparseBlocks {
  const int64_t* block_ptr = nullptr;
  int64_t num_blocks = 1;
};

// y[M, N] = x[M, K] @ W^T (+ bias). Work split over threads by nonzeros. `tiles` (may be
// null): the pack's 16 x 1 tile view, which AVX-512 CPUs run for M >= 2.
void sparse_linear_f32(const SparseMatrix& w, const SparseBlocks& blocks, const float* x,
                       int64_t m, const float* bias, float* y, const F32Tiles* tiles = nullptr);
// y[N, M] = W @ b[K, M] (torch.sparse.mm's op; both row-major, no bias). Work split over
// threads by nonzeros.
void sparse_mm_f32(const SparseMatrix& w, const SparseBlocks& blocks, const float* b, int64_t m,
                   float* y);
// int8 values with per-row scales w_scale[N]; x quantized per row (uint8, ONNX
// DynamicQuantizeLinear) by dynamic_quantize; int32 accumulation; fused epilogue
// y = float(acc) * (x_scale[m] * w_scale[n]) + bias[n]. `quads` (may be null): the pack's
// quad view when it is made of aligned 1 x 4 blocks (k % 4 == 0); used where the CPU has the
// quad kernel (VNNI), else the pair kernel runs the same pack.
Status sparse_linear_q8(const SparseMatrix& w, const SparseBlocks& blocks, const float* w_scale,
                        const float* x, int64_t m, const float* bias, float* y,
                        const QuadMatrix* quads = nullptr);
// The raw int32 accumulators acc[m, n] = sum_k (xq[m, k] - zp[m]) * W[n, k] (for tests).
void sparse_q8_accumulate(const SparseMatrix& w, const SparseBlocks& blocks, const uint8_t* xq,
                          const int32_t* zero_point, int64_t m, int32_t* acc,
                          const QuadMatrix* quads = nullptr);

}  // namespace pyquant

// ---- int8 GEMM (csrc/ops/gemm.cpp); the packed layout and kernel contract are in gemm.h.
#include "pyquant/gemm.h"

namespace pyquant {

// Packs the K x N matrix B into the PackedB layout (gemm.h): packed has gemm_padded_n(N) *
// gemm_padded_k(K) bytes, col_sum gemm_padded_n(N) entries. Element (k, n) of b is
// b[k * ldb + n], or b[n * ldb + k] if `transposed` (a Linear weight [N, K]). A uint8 b is
// stored shifted by -128 (callers fold the shift into the zero point: zb - 128).
void gemm_pack_b(const void* b, bool b_unsigned, bool transposed, int64_t K, int64_t N,
                 int64_t ldb, int8_t* packed, int32_t* col_sum);

// g over an M x N output, split over the thread pool by output tiles (columns first, so each
// thread reads its own share of the weights; rows when there are too few column panels).
void gemm_u8s8(const GemmArgs& g, int64_t M, int64_t N);
// Same with an explicit kernel (e.g. kernels().qu7qs8_gemm when every A value is <= 128).
void gemm_u8s8(const GemmArgs& g, int64_t M, int64_t N, GemmU8S8Fn fn);

// ONNX MatMulInteger: out[M, N] = sum_k (a - a_zp)(b - b_zp[n]) in int32 (mod 2^32).
// a is int8 or uint8 [M, K] row-major; B packed by gemm_pack_b; b_zero_point null or N values
// in b's own domain (the uint8 shift is applied here).
void int8_matmul(const void* a, bool a_signed, int64_t M, int64_t K, int32_t a_zero_point,
                 const int8_t* packed, const int32_t* col_sum, bool b_unsigned,
                 const int32_t* b_zero_point, int64_t N, int32_t* out);

// How quant_linear quantizes its float input.
// dynamic_per_row7: per-row asymmetric uint8 restricted to 0..127 (7 bits, ONNX-style formula
// with 127 levels), which lets AVX2 use the faster exact vpmaddubsw kernel.
enum class ActQuant { dynamic_per_row = 0, dynamic_per_tensor = 1, static_per_tensor = 2,
                      dynamic_per_row7 = 3 };

// Quantized (grouped) linear layer, one call per forward: quantize x [M, groups * K] to uint8
// (into a per-thread buffer reused across calls), then per group g the GEMM with the fused
// epilogue out[:, g*N:(g+1)*N] = dequant(q_x[:, g*K:(g+1)*K] @ W_g^T) + bias_g.
// Per group: packed (Np * Kp bytes), col_sum, w_scale and bias (Np each, bias may be null).
Status quant_linear(const float* x, int64_t M, int64_t K, int64_t N, int64_t groups,
                    ActQuant mode, float static_scale, int32_t static_zero_point,
                    const int8_t* packed, const int32_t* col_sum, const float* w_scale,
                    const float* bias, float* out);

// quant_linear's two halves. quantize_row7: one row of the dynamic_per_row7 mode (in the
// calling thread). quant_gemm_rows: the grouped GEMM and epilogue on rows already quantized
// (q [M, groups * K] uint8 with a scale and zero point per row; seven_bit: all of q <= 128).
Status quantize_row7(const float* row, int64_t n, uint8_t* q, float* scale, int32_t* zero_point);
void quant_gemm_rows(const uint8_t* q, const float* scale, const int32_t* zero_point, int64_t M,
                     int64_t K, int64_t N, int64_t groups, bool seven_bit, const int8_t* packed,
                     const int32_t* col_sum, const float* w_scale, const float* bias,
                     float* out);

// A 2-d convolution's window geometry (kernel, stride, padding, dilation) and output size.
struct Conv2dShape {
  int64_t kh, kw, sh, sw, ph, pw, dh, dw, ho, wo;
};

// im2col: x [B, C, H, W] (nhwc: stored [B, H, W, C]), contiguous float32 -> cols
// [B * ho * wo, C * kh * kw], row (b, oy, ox), column c * kh * kw + ky * kw + kx (F.unfold's
// order, transposed), 0 where the window covers padding. Split over the thread pool by rows.
void im2col_f32(const float* x, bool nhwc, int64_t B, int64_t C, int64_t H, int64_t W,
                const Conv2dShape& s, float* cols);

// QuantConv2d's forward with a dynamic per-row mode (dynamic_per_row or dynamic_per_row7):
// each im2col row is built in cache and quantized there, so the float im2col matrix is never
// written; then quant_gemm_rows. out [B * ho * wo, groups * N]; other arguments as
// quant_linear's (K = C / groups * kh * kw). Other modes are refused by the binding.
Status quant_conv2d(const float* x, bool nhwc, int64_t B, int64_t C, int64_t H, int64_t W,
                    const Conv2dShape& s, int64_t N, int64_t groups, ActQuant mode,
                    const int8_t* packed, const int32_t* col_sum, const float* w_scale,
                    const float* bias, float* out);

}  // namespace pyquant
