// Multi-threaded ops over whole tensors: shape logic, work split, kernel choice.
// Inputs are validated by the caller (bindings.cpp); ops only report data-dependent failures.
#pragma once

#include <cstdint>

namespace pyquant {

enum class Status { ok, nan_in_input, inf_in_input, range_overflow };
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

// The scale and zero point dynamic_quantize derives from a row's min and max.
Status dynamic_qparams(float min, float max, QDtype dtype, float* scale, int32_t* zero_point);

}  // namespace pyquant

// ---------------------------------------------------------------------------------------------
// Sparse linear (issue 5). W is a validated SparseMatrix (indices < k, row_ptr monotonic).
#include "pyquant/kernels.h"

namespace pyquant {

// K blocking (optional): block_ptr is [N][num_blocks + 1]; row n's entries with columns in
// block b are [block_ptr[n * (nb + 1) + b], block_ptr[n * (nb + 1) + b + 1]). The kernels walk
// one block of the activation panel at a time so it stays in L2. Null: one block (plain CSR).
struct SparseBlocks {
  const int64_t* block_ptr = nullptr;
  int64_t num_blocks = 1;
};

// y[M, N] = x[M, K] @ W^T (+ bias). Work split over threads by nonzeros.
void sparse_linear_f32(const SparseMatrix& w, const SparseBlocks& blocks, const float* x,
                       int64_t m, const float* bias, float* y);
// int8 values with per-row scales w_scale[N]; x quantized per row (uint8, ONNX
// DynamicQuantizeLinear) by dynamic_quantize; int32 accumulation; fused epilogue
// y = float(acc) * (x_scale[m] * w_scale[n]) + bias[n].
Status sparse_linear_q8(const SparseMatrix& w, const SparseBlocks& blocks, const float* w_scale,
                        const float* x, int64_t m, const float* bias, float* y);
// The raw int32 accumulators acc[m, n] = sum_k (xq[m, k] - zp[m]) * W[n, k] (for tests).
void sparse_q8_accumulate(const SparseMatrix& w, const SparseBlocks& blocks, const uint8_t* xq,
                          const int32_t* zero_point, int64_t m, int32_t* acc);

}  // namespace pyquant
