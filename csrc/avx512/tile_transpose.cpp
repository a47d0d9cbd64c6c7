// AVX-512 transposes of the sparse ops (the contracts are in kernels.h): the fp32 activation
// panel and the fp32 and int8 tile epilogues, 16 x 16 blocks transposed in registers (unpack,
// shuffle_ps, two rounds of shuffle_f32x4), masked at the edges, instead of one scalar load and
// strided store per element.
#include <immintrin.h>

#include <cstdint>

#include "pyquant/kernels.h"

namespace pyquant {
namespace avx512 {
namespace {

// r[i] = row i (16 floats) -> r[j] = column j.
void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // Per 128-bit lane L, r[4i + c] = column 4L + c of rows 4i .. 4i + 3.
  for (int i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    t[c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88);
    t[4 + c] = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);
    t[8 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
    t[12 + c] = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(t[c], t[8 + c], 0xDD);
    r[4 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(t[4 + c], t[12 + c], 0xDD);
  }
}

inline __mmask16 first_lanes(int64_t count) {
  return static_cast<__mmask16>(count >= 16 ? 0xFFFF : (1u << count) - 1u);
}

// The shared walk of both epilogues: 16 x 16 blocks of the tile (read as 32-bit lanes; the
// transpose moves bits only, so int32 accumulators come through intact), then for column j of
// the panel and rows nb .. nb + 15 (mask live) y's row gets finish(lanes, j, nb, live).
template <typename Finish>
void transpose_blocks(const void* tile, int64_t width, int64_t valid, int64_t n0, int64_t n1,
                      float* y, int64_t ldy, int64_t m0, Finish finish) {
  const auto* t = static_cast<const float*>(tile);
  for (int64_t nb = n0; nb < n1; nb += 16) {
    const int64_t rows = n1 - nb < 16 ? n1 - nb : 16;
    const __mmask16 live = first_lanes(rows);
    for (int64_t j0 = 0; j0 < valid; j0 += 16) {
      const __mmask16 in = first_lanes(width - j0);  // readable tile columns
      __m512 r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = i < rows ? _mm512_maskz_loadu_ps(in, t + (nb + i) * width + j0)
                        : _mm512_setzero_ps();
      transpose16(r);
      const int64_t out = valid - j0 < 16 ? valid - j0 : 16;
      for (int64_t j = 0; j < out; ++j)
        _mm512_mask_storeu_ps(y + (m0 + j0 + j) * ldy + nb, live,
                              finish(r[j], j0 + j, nb, live));
    }
  }
}

// The products rounded on their own, as the scalar epilogue does: the explicit-rounding
// multiply is opaque to GCC, which would contract a plain mul + add into one FMA.
inline __m512 mul_rounded(__m512 a, __m512 b) {
  return _mm512_mul_round_ps(a, b, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

}  // namespace

void f32_tile_transpose(const float* tile, int64_t width, int64_t valid, int64_t n0, int64_t n1,
                        const float* bias, float* y, int64_t ldy, int64_t m0) {
  transpose_blocks(tile, width, valid, n0, n1, y, ldy, m0,
                   [bias](__m512 v, int64_t, int64_t nb, __mmask16 live) {
                     const __m512 b =
                         bias ? _mm512_maskz_loadu_ps(live, bias + nb) : _mm512_setzero_ps();
                     return _mm512_add_ps(v, b);
                   });
}

void qs32_f32_tile_transpose(const int32_t* tile, int64_t width, int64_t valid, int64_t n0,
                             int64_t n1, const float* x_scale, const float* w_scale,
                             const float* bias, float* y, int64_t ldy, int64_t m0) {
  const auto finish = [&](__m512 lanes, int64_t j, int64_t nb, __mmask16 live) {
    const __m512 s = mul_rounded(_mm512_set1_ps(x_scale[m0 + j]),
                                 _mm512_maskz_loadu_ps(live, w_scale + nb));
    const __m512 b = bias ? _mm512_maskz_loadu_ps(live, bias + nb) : _mm512_setzero_ps();
    return _mm512_add_ps(mul_rounded(_mm512_cvtepi32_ps(_mm512_castps_si512(lanes)), s), b);
  };
  if (width == 1) {  // M = 1: the accumulators are one contiguous row of y
    const auto* lanes = reinterpret_cast<const float*>(tile);
    for (int64_t n = n0; n < n1; n += 16) {
      const __mmask16 live = first_lanes(n1 - n);
      const __m512 acc = _mm512_maskz_loadu_ps(live, lanes + n);
      _mm512_mask_storeu_ps(y + m0 * ldy + n, live, finish(acc, 0, n, live));
    }
    return;
  }
  transpose_blocks(tile, width, valid, n0, n1, y, ldy, m0, finish);
}

void f32_panel_pack(const float* x, int64_t k, int64_t m0, int64_t valid, int64_t width,
                    int64_t k0, int64_t k1, float* panel) {
  // k outer: each 16-column step of x fills 16 whole panel rows (both halves of a 32-wide one).
  for (int64_t kk = k0; kk < k1; kk += 16) {
    const int64_t cols = k1 - kk < 16 ? k1 - kk : 16;
    const __mmask16 in = first_lanes(cols);
    for (int64_t j0 = 0; j0 < width; j0 += 16) {
      const int64_t rows = valid - j0 < 16 ? (valid - j0 > 0 ? valid - j0 : 0) : 16;
      const __mmask16 out = first_lanes(width - j0);  // 8 lanes when the panel is 8 or 24 wide
      __m512 r[16];
      for (int i = 0; i < 16; ++i)
        r[i] = i < rows ? _mm512_maskz_loadu_ps(in, x + (m0 + j0 + i) * k + kk)
                        : _mm512_setzero_ps();
      transpose16(r);
      for (int64_t c = 0; c < cols; ++c)
        _mm512_mask_storeu_ps(panel + (kk + c) * width + j0, out, r[c]);
    }
  }
}

}  // namespace avx512
}  // namespace pyquant
