// The VNNI peak of one core, measured: 24 independent vpdpbusd chains (more than latency x
// ports on any VNNI core), nothing else in the loop. Benchmarks report fractions of this.
#include <chrono>
#include <cstdint>

#include "pyquant/gemm.h"

namespace pyquant {
namespace avx512vnni {

double vpdpbusd_peak_gops(int64_t iterations) {
#if !defined(__AVX512F__)
  // Built without AVX-512 (the emulated-ISA tests compile this folder with portable intrinsics).
  (void)iterations;
  return 0.0;
#else
  const int64_t iters = iterations > 0 ? iterations : 1;
  int64_t n = iters;
  const auto t0 = std::chrono::steady_clock::now();
  __asm__ volatile(
      "vpxord %%zmm30, %%zmm30, %%zmm30\n\t"
      "vpxord %%zmm31, %%zmm31, %%zmm31\n\t"
      "1:\n\t"
      ".irp r,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23\n\t"
      "vpdpbusd %%zmm30, %%zmm31, %%zmm\\r\n\t"
      ".endr\n\t"
      "dec %0\n\t"
      "jnz 1b\n\t"
      : "+r"(n)
      :
      : "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
        "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19",
        "xmm20", "xmm21", "xmm22", "xmm23", "xmm30", "xmm31");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return 24.0 * 128.0 * static_cast<double>(iters) / s / 1e9;
#endif
}

}  // namespace avx512vnni
}  // namespace pyquant
