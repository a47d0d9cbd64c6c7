// u8 x s8 -> s32 GEMM: the packed weight layout, the kernel contract and the per-ISA kernels.
//
// Packed weights (PackedB), one layout for every ISA so that set_isa() never needs a repack:
//   B is the K x N int8 matrix of the product C = A B (for a Linear layer, B = W^T).
//   Kp = round_up(K, 4), Np = round_up(N, 16). Columns are grouped into panels of 16, rows
//   into groups of 4 (the quad vpdpbusd consumes). Byte
//       data[p * Kp * 16 + g * 64 + c * 4 + j] = B(4 * g + j, 16 * p + c)
//   for panel p < Np / 16, k-group g < Kp / 4, column-in-panel c < 16, j < 4; padding is 0.
//   So one k-group of one panel is 64 contiguous bytes: a zmm for VNNI, two ymm halves of
//   8 columns for AVX2 (each 16 bytes sign-extended to 16 int16 = 4 columns x 4 k).
//   col_sum[n] = sum_k B(k, n) (int32, Np entries, 0 in the padding) for the a_zero_point
//   correction. Per-column arrays handed to a kernel (b_zero_point, b_scale, bias) must have
//   Np entries too: kernels read whole panels and mask only the stores.
//
// Exactness: every path computes sum_k a(i,k) * B(k,n) with a in [0, 255] and B in [-128, 127]
// without any int16 intermediate that can saturate:
//   scalar: int32 products; AVX2 / AVX-512BW: both operands widened to int16 and multiplied
//   with vpmaddwd (pair sums |2 * 255 * 128| = 65280 fit int32; vpmaddubsw is NOT used because
//   255 * -128 * 2 saturates its int16 result); VNNI: vpdpbusd (quad sums in int32, exact);
//   AMX: tdpbusd (the same quad sums, 16 x 16 x 64 per instruction). The packed layout is also
//   AMX's B tile layout: 16 consecutive k-groups of a panel form one 16-row x 64-byte tile.
// The int32 accumulation and the zero-point correction are modulo 2^32, so the result is exact
// whenever the true value fits int32 (always when K * 255 * 128 < 2^31, i.e. K <= 65793).
#pragma once

#include <cstdint>

namespace pyquant {

constexpr int64_t kGemmNR = 16;  // columns per packed panel
constexpr int64_t kGemmKR = 4;   // k per group

inline int64_t gemm_padded_k(int64_t k) { return (k + kGemmKR - 1) / kGemmKR * kGemmKR; }
inline int64_t gemm_padded_n(int64_t n) { return (n + kGemmNR - 1) / kGemmNR * kGemmNR; }

// One GEMM call. Row i of A is a + i * lda (uint8, K valid bytes). Output row i is
// c_i32 + i * ldc or c_f32 + i * ldc (exactly one is non-null). Per-row arrays are indexed by
// the absolute row, per-column arrays by the absolute column (Np entries each).
// The value written is
//   v = acc - za[i] * col_sum[n] - zb[n] * row_sum[i] + K * za[i] * zb[n]      (int32, mod 2^32)
//   c_i32[i, n] = v,   or   c_f32[i, n] = float(v) * (a_scale[i] * b_scale[n]) + bias[n]
// where acc = sum_k A(i, k) B(k, n); a null za / zb / bias means all zero.
// When the output is float and K spans several cache blocks, the output memory holds the int32
// partial sums between blocks (same size), so no scratch is needed.
struct GemmArgs {
  const uint8_t* a = nullptr;
  int64_t lda = 0;
  const int8_t* b = nullptr;  // PackedB data
  int64_t K = 0, Kp = 0;
  int32_t* c_i32 = nullptr;
  float* c_f32 = nullptr;
  int64_t ldc = 0;
  const int32_t* a_zero_point = nullptr;  // per row
  const int32_t* col_sum = nullptr;       // Np, required when a_zero_point is set
  const int32_t* b_zero_point = nullptr;  // Np
  const int32_t* row_sum = nullptr;       // per row, required when b_zero_point is set
  const float* a_scale = nullptr;         // per row, float output only
  const float* b_scale = nullptr;         // Np, float output only
  const float* bias = nullptr;            // Np or null
};

// Computes rows [m0, m1) and columns [n0, n1) of the output; n0 is a multiple of 16 and
// n1 <= N. Single-threaded; the op splits the tiles over the pool.
using GemmU8S8Fn = void (*)(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);

}  // namespace pyquant

#define PYQUANT_DECLARE_GEMM_KERNELS(ns)                                                     \
  namespace ns {                                                                             \
  void qu8qs8_gemm(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);       \
  }

namespace pyquant {
namespace avx2 {
// Same contract as qu8qs8_gemm with the precondition A(i, k) <= 128 (7-bit activations), which
// makes vpmaddubsw exact; only AVX2 needs a separate kernel for it (see the file's comment).
void qu7qs8_gemm(const GemmArgs& g, int64_t m0, int64_t m1, int64_t n0, int64_t n1);
}  // namespace avx2
PYQUANT_DECLARE_GEMM_KERNELS(ref)
PYQUANT_DECLARE_GEMM_KERNELS(avx2)
PYQUANT_DECLARE_GEMM_KERNELS(avx512)
PYQUANT_DECLARE_GEMM_KERNELS(avx512vnni)
PYQUANT_DECLARE_GEMM_KERNELS(amx)
namespace avx512vnni {
// The finished-sum epilogue of the VNNI kernel for a block of whole-K int32 sums computed
// elsewhere (the AMX kernel's tiles): acc[r * ld + c] is the sum of row i0 + r, column n + c,
// for r < rows and c < cols (<= ld); writes the output as GemmArgs describes.
void qs32_block_epilogue(const GemmArgs& g, const int32_t* acc, int64_t ld, int64_t i0,
                         int64_t rows, int64_t n, int64_t cols);
// The vpdpbusd (zmm) issue rate of the calling core in int8 GOPS (2 x 64 per instruction),
// from 24 independent chains: the peak the GEMM benchmarks compare with. Needs VNNI.
double vpdpbusd_peak_gops(int64_t iterations);
}  // namespace avx512vnni
}  // namespace pyquant
