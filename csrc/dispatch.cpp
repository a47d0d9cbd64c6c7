#include "pyquant/dispatch.h"

namespace pyquant {
namespace {

Kernels make_table(Isa isa, int hw_gather) {
  Kernels k;
  k.isa = isa;
  // Fill every op from one ISA namespace; a lower namespace stands in where a level adds no
  // kernel of its own for that op (VNNI adds GEMM and int8 sparse kernels, AMX a GEMM one).
#define PYQUANT_USE(ns, suffix, op) \
  k.op = ns::op;                    \
  k.names.emplace_back(#op, #op "__" suffix);
#define PYQUANT_USE_ALL(ns, suffix)              \
  PYQUANT_USE(ns, suffix, f32_qs8_quantize)      \
  PYQUANT_USE(ns, suffix, f32_qu8_quantize)      \
  PYQUANT_USE(ns, suffix, f32_qs8_quantize_vec)  \
  PYQUANT_USE(ns, suffix, f32_qu8_quantize_vec)  \
  PYQUANT_USE(ns, suffix, qs8_f32_dequantize)    \
  PYQUANT_USE(ns, suffix, qu8_f32_dequantize)    \
  PYQUANT_USE(ns, suffix, qs8_f32_dequantize_vec) \
  PYQUANT_USE(ns, suffix, qu8_f32_dequantize_vec) \
  PYQUANT_USE(ns, suffix, f32_minmax)             \
  PYQUANT_USE(ns, suffix, f32_abs_histogram_hi)   \
  PYQUANT_USE(ns, suffix, f32_abs_histogram_lo)   \
  PYQUANT_USE(ns, suffix, f32_abs_select_mask)    \
  PYQUANT_USE(ns, suffix, f32_abs_select_prune)   \
  PYQUANT_USE(ns, suffix, f32_abs_bracket)        \
  PYQUANT_USE(ns, suffix, f32_spmm_csr)
  switch (isa) {
    case Isa::scalar:
      PYQUANT_USE_ALL(ref, "scalar")
      break;
    case Isa::avx2:
      PYQUANT_USE_ALL(avx2, "avx2")
      break;
    case Isa::avx512:
    case Isa::avx512vnni:
    case Isa::amx:
      PYQUANT_USE_ALL(avx512, "avx512")
      break;
  }
  // The fp32 panel pack and tile epilogue: 8 x 8 (AVX2) or 16 x 16 (AVX-512) blocks
  // transposed in registers; and on AVX-512 the fp32 16 x 1 tile kernel (16 rows per zmm).
  switch (isa) {
    case Isa::scalar:
      PYQUANT_USE(ref, "scalar", f32_tile_transpose)
      PYQUANT_USE(ref, "scalar", f32_panel_pack)
      break;
    case Isa::avx2:
      PYQUANT_USE(avx2, "avx2", f32_tile_transpose)
      PYQUANT_USE(avx2, "avx2", f32_panel_pack)
      break;
    case Isa::avx512:
    case Isa::avx512vnni:
    case Isa::amx:
      PYQUANT_USE(avx512, "avx512", f32_tile_transpose)
      PYQUANT_USE(avx512, "avx512", f32_panel_pack)
      PYQUANT_USE(avx512, "avx512", f32_spmm_tiles)
      break;
  }
  // The int8 one (int32 tile -> scaled fp32): AVX-512 (its multiply with explicit rounding
  // keeps GCC from fusing it with the bias add; AVX2 has no such form), else scalar.
  switch (isa) {
    case Isa::scalar:
    case Isa::avx2: PYQUANT_USE(ref, "scalar", qs32_f32_tile_transpose) break;
    case Isa::avx512:
    case Isa::avx512vnni:
    case Isa::amx: PYQUANT_USE(avx512, "avx512", qs32_f32_tile_transpose) break;
  }
  // M = 1, fp32 and int8 pairs (gathers, memory bound): the AVX-512 kernels on every level
  // from AVX-512 up where the hardware gather is fast; elsewhere (Zen 4, cpu.h) the AVX2
  // kernels, which gather with scalar loads and inserts and run on every AVX-512 CPU. The VNNI
  // quad kernel keeps its hardware gather there (one lane brings 4 inputs): it ran 1.6-2.5x
  // faster than the AVX2 insert-gather kernel on the same quad packs at 90-99% on Zen 4.
  // hw_gather >= 0 overrides the CPU's choice (tests run both kernels on either vendor).
  k.hw_gather = isa >= Isa::avx512 && (hw_gather >= 0 ? hw_gather == 1 : cpu_features().fast_gather);
  const Isa gather_isa = isa >= Isa::avx512 && !k.hw_gather ? Isa::avx2 : isa;
#define PYQUANT_USE_SPMV(ns, suffix)   \
  PYQUANT_USE(ns, suffix, f32_spmv_csr) \
  PYQUANT_USE(ns, suffix, qs16_spmv_csr)
  switch (gather_isa) {
    case Isa::scalar: PYQUANT_USE_SPMV(ref, "scalar") break;
    case Isa::avx2: PYQUANT_USE_SPMV(avx2, "avx2") break;
    case Isa::avx512:
    case Isa::avx512vnni:
    case Isa::amx: PYQUANT_USE_SPMV(avx512, "avx512") break;
  }
#undef PYQUANT_USE_SPMV
  // Sparse int8: VNNI fuses the pair product and its sum (vpdpwssd) and adds the quad kernels
  // (vpdpbusd); AMX has no use for sparse weights.
  switch (isa) {
    case Isa::scalar: PYQUANT_USE(ref, "scalar", qs16_spmm_csr) break;
    case Isa::avx2: PYQUANT_USE(avx2, "avx2", qs16_spmm_csr) break;
    case Isa::avx512: PYQUANT_USE(avx512, "avx512", qs16_spmm_csr) break;
    case Isa::avx512vnni:
    case Isa::amx:
      PYQUANT_USE(avx512vnni, "avx512vnni", qs16_spmm_csr)
      PYQUANT_USE(avx512vnni, "avx512vnni", qu8x4_spmm_csr)
      PYQUANT_USE(avx512vnni, "avx512vnni", qu8x4_spmv_csr)
      PYQUANT_USE(avx512vnni, "avx512vnni", qu8x4_spmm_tiles)
      break;
  }
  // GEMM: the VNNI and AMX levels have their own kernels.
  switch (isa) {
    case Isa::scalar: PYQUANT_USE(ref, "scalar", qu8qs8_gemm) break;
    case Isa::avx2: PYQUANT_USE(avx2, "avx2", qu8qs8_gemm) break;
    case Isa::avx512: PYQUANT_USE(avx512, "avx512", qu8qs8_gemm) break;
    case Isa::avx512vnni: PYQUANT_USE(avx512vnni, "avx512vnni", qu8qs8_gemm) break;
    case Isa::amx: PYQUANT_USE(amx, "amx", qu8qs8_gemm) break;
  }
  // 7-bit activations: AVX2 has a faster exact kernel; elsewhere the general one is as fast.
  k.qu7qs8_gemm = k.qu8qs8_gemm;
  if (isa == Isa::avx2) {
    k.qu7qs8_gemm = avx2::qu7qs8_gemm;
    k.names.emplace_back("qu7qs8_gemm", "qu7qs8_gemm__avx2");
  } else {
    k.names.emplace_back("qu7qs8_gemm", k.names.back().second);
  }
#undef PYQUANT_USE_ALL
#undef PYQUANT_USE
  return k;
}

Kernels& table() {
  static Kernels k = make_table(detected_isa(), -1);
  return k;
}

}  // namespace

const Kernels& kernels() { return table(); }

bool set_isa(Isa isa, int hw_gather) {
  if (static_cast<int>(isa) > static_cast<int>(detected_isa())) return false;
  table() = make_table(isa, hw_gather);
  return true;
}

}  // namespace pyquant
