// The dispatch table: for each op, the best kernel that is built and supported.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "pyquant/cpu.h"
#include "pyquant/kernels.h"
#include "pyquant/gemm.h"

namespace pyquant {

struct Kernels {
  Isa isa = Isa::scalar;
  QuantizeFn f32_qs8_quantize = nullptr;
  QuantizeFn f32_qu8_quantize = nullptr;
  QuantizeVecFn f32_qs8_quantize_vec = nullptr;
  QuantizeVecFn f32_qu8_quantize_vec = nullptr;
  DequantizeFn qs8_f32_dequantize = nullptr;
  DequantizeFn qu8_f32_dequantize = nullptr;
  DequantizeVecFn qs8_f32_dequantize_vec = nullptr;
  DequantizeVecFn qu8_f32_dequantize_vec = nullptr;
  MinMaxFn f32_minmax = nullptr;
  AbsHistHiFn f32_abs_histogram_hi = nullptr;
  AbsHistLoFn f32_abs_histogram_lo = nullptr;
  AbsSelectMaskFn f32_abs_select_mask = nullptr;
  AbsSelectPruneFn f32_abs_select_prune = nullptr;
  AbsBracketFn f32_abs_bracket = nullptr;
  SpmmF32Fn f32_spmm_csr = nullptr;
  SpmvF32Fn f32_spmv_csr = nullptr;
  SpmmF32TileFn f32_spmm_tiles = nullptr;  // AVX-512 and up only; the op falls back to CSR
  TileTransposeF32Fn f32_tile_transpose = nullptr;
  PanelPackF32Fn f32_panel_pack = nullptr;
  TileDequantizeFn qs32_f32_tile_transpose = nullptr;
  SpmmQ8Fn qs16_spmm_csr = nullptr;
  SpmvQ8Fn qs16_spmv_csr = nullptr;
  SpmmQu8x4Fn qu8x4_spmm_csr = nullptr;  // VNNI and up only; the op falls back to pairs
  SpmvQu8x4Fn qu8x4_spmv_csr = nullptr;  // likewise
  SpmmQu8x4TileFn qu8x4_spmm_tiles = nullptr;  // likewise
  GemmU8S8Fn qu8qs8_gemm = nullptr;
  GemmU8S8Fn qu7qs8_gemm = nullptr;  // A <= 128 only; the general kernel where no faster one
  bool hw_gather = false;  // the M = 1 gather kernels are the AVX-512 ones
  // (op, kernel) pairs, e.g. ("f32_qs8_quantize", "f32_qs8_quantize__avx2"), for cpu_info().
  std::vector<std::pair<std::string, std::string>> names;
};

// The table in use. Filled for the detected ISA on first use.
const Kernels& kernels();

// Refill the table for `isa`. Returns false (and changes nothing) if the CPU lacks it.
// hw_gather picks the M = 1 gather kernels at the AVX-512 levels: 1 the hardware-gather ones,
// 0 the AVX2 insert-gather ones, -1 as the CPU's fast_gather says (cpu.h). Not safe to call
// while kernels run on other threads.
bool set_isa(Isa isa, int hw_gather = -1);

}  // namespace pyquant
