// Scalar fp32 tile epilogue of the sparse ops (the contract is in kernels.h).
#include <cstdint>

#include "pyquant/kernels.h"

namespace pyquant {
namespace ref {

void f32_tile_transpose(const float* tile, int64_t width, int64_t valid, int64_t n0, int64_t n1,
                        const float* bias, float* y, int64_t ldy, int64_t m0) {
  constexpr int64_t kRows = 16;  // both sides stay in L1
  for (int64_t nb = n0; nb < n1; nb += kRows) {
    const int64_t ne = nb + kRows < n1 ? nb + kRows : n1;
    for (int64_t j = 0; j < valid; ++j)
      for (int64_t n = nb; n < ne; ++n)
        y[(m0 + j) * ldy + n] = tile[n * width + j] + (bias ? bias[n] : 0.0f);
  }
}

}  // namespace ref
}  // namespace pyquant
