// Scalar transposes of the sparse ops: the fp32 activation panel, the fp32 and int8 tile
// epilogues (the contracts are in kernels.h).
#include <cstdint>

#include "pyquant/kernels.h"

namespace pyquant {
namespace ref {
namespace {

// y[(m0 + j) * ldy + n] = f(tile[n * width + j], j, n), 16 rows at a time (both sides in L1).
template <typename T, typename F>
void transpose_rows(const T* tile, int64_t width, int64_t valid, int64_t n0, int64_t n1,
                    float* y, int64_t ldy, int64_t m0, F f) {
  constexpr int64_t kRows = 16;
  for (int64_t nb = n0; nb < n1; nb += kRows) {
    const int64_t ne = nb + kRows < n1 ? nb + kRows : n1;
    for (int64_t j = 0; j < valid; ++j)
      for (int64_t n = nb; n < ne; ++n) y[(m0 + j) * ldy + n] = f(tile[n * width + j], j, n);
  }
}

}  // namespace

void f32_tile_transpose(const float* tile, int64_t width, int64_t valid, int64_t n0, int64_t n1,
                        const float* bias, float* y, int64_t ldy, int64_t m0) {
  transpose_rows(tile, width, valid, n0, n1, y, ldy, m0, [bias](float v, int64_t, int64_t n) {
    return v + (bias ? bias[n] : 0.0f);
  });
}

void qs32_f32_tile_transpose(const int32_t* tile, int64_t width, int64_t valid, int64_t n0,
                             int64_t n1, const float* x_scale, const float* w_scale,
                             const float* bias, float* y, int64_t ldy, int64_t m0) {
  transpose_rows(tile, width, valid, n0, n1, y, ldy, m0, [&](int32_t v, int64_t j, int64_t n) {
    return static_cast<float>(v) * (x_scale[m0 + j] * w_scale[n]) + (bias ? bias[n] : 0.0f);
  });
}

void f32_panel_pack(const float* x, int64_t k, int64_t m0, int64_t valid, int64_t width,
                    int64_t k0, int64_t k1, float* panel) {
  constexpr int64_t kBlock = 64;  // the strided panel writes stay in L1
  for (int64_t kb = k0; kb < k1; kb += kBlock) {
    const int64_t ke = kb + kBlock < k1 ? kb + kBlock : k1;
    for (int64_t j = 0; j < width; ++j)
      for (int64_t kk = kb; kk < ke; ++kk)
        panel[kk * width + j] = j < valid ? x[(m0 + j) * k + kk] : 0.0f;
  }
}

}  // namespace ref
}  // namespace pyquant
