// AVX2 transposes of the sparse ops (the contracts are in kernels.h): the fp32 activation panel
// and the fp32 tile epilogue, 8 x 8 blocks transposed in registers (unpack, shuffle_ps,
// permute2f128); edges of fewer than 8 go element by element.
#include <immintrin.h>

#include <cstdint>

#include "pyquant/kernels.h"

namespace pyquant {
namespace avx2 {
namespace {

// r[i] = row i (8 floats) -> r[j] = column j.
void transpose8(__m256 r[8]) {
  __m256 t[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // Per 128-bit lane L, u[4i + c] = column 4L + c of rows 4i .. 4i + 3.
  __m256 u[8];
  for (int i = 0; i < 2; ++i) {
    u[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[4 + c] = _mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
}

}  // namespace

void f32_tile_transpose(const float* tile, int64_t width, int64_t valid, int64_t n0, int64_t n1,
                        const float* bias, float* y, int64_t ldy, int64_t m0) {
  int64_t nb = n0;
  for (; nb + 8 <= n1; nb += 8) {
    const __m256 b = bias ? _mm256_loadu_ps(bias + nb) : _mm256_setzero_ps();
    for (int64_t j0 = 0; j0 < valid; j0 += 8) {  // width is a multiple of 8
      __m256 r[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(tile + (nb + i) * width + j0);
      transpose8(r);
      const int64_t out = valid - j0 < 8 ? valid - j0 : 8;
      for (int64_t j = 0; j < out; ++j)
        _mm256_storeu_ps(y + (m0 + j0 + j) * ldy + nb, _mm256_add_ps(r[j], b));
    }
  }
  for (int64_t j = 0; j < valid; ++j)
    for (int64_t n = nb; n < n1; ++n)
      y[(m0 + j) * ldy + n] = tile[n * width + j] + (bias ? bias[n] : 0.0f);
}

void f32_panel_pack(const float* x, int64_t k, int64_t m0, int64_t valid, int64_t width,
                    int64_t k0, int64_t k1, float* panel) {
  // k outer: each 8-column step of x fills 8 whole panel rows.
  int64_t kk = k0;
  for (; kk + 8 <= k1; kk += 8) {
    for (int64_t j0 = 0; j0 < width; j0 += 8) {  // width is a multiple of 8
      __m256 r[8];
      for (int64_t i = 0; i < 8; ++i)
        r[i] = j0 + i < valid ? _mm256_loadu_ps(x + (m0 + j0 + i) * k + kk) : _mm256_setzero_ps();
      transpose8(r);
      for (int c = 0; c < 8; ++c) _mm256_storeu_ps(panel + (kk + c) * width + j0, r[c]);
    }
  }
  for (; kk < k1; ++kk)
    for (int64_t j = 0; j < width; ++j)
      panel[kk * width + j] = j < valid ? x[(m0 + j) * k + kk] : 0.0f;
}

}  // namespace avx2
}  // namespace pyquant
