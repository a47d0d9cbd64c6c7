// AVX-512 sparse x dense kernels (layouts in kernels.h and pyquant/sparse_format.md).
// Same schemes as csrc/avx2/spmm_csr.cpp with 16-float / 32-int16 vectors for the full
// 32-column panels; the narrower tail panels (M % 32) call the AVX2 kernels, which are plain
// out-of-line functions (valid on any AVX-512 CPU) so no inline code is shared.
// Compiled but not run on the development machine (it has no AVX-512).
#include <immintrin.h>

#include <cstdint>

#include "pyquant/kernels.h"

namespace pyquant {
namespace avx512 {
namespace {

// fp32, W = 32: 2 zmm per nonzero, 4 nonzeros in flight -> 8 FMA chains.
template <typename I>
void spmm32(const SparseMatrix* w, const I* idx, int64_t n0, int64_t n1, const float* panel,
            int64_t valid, float* y, int64_t ldy, const float* bias) {
  constexpr int U = 4;
  const auto* values = static_cast<const float*>(w->values);
  alignas(64) float buf[32];
  for (int64_t n = n0; n < n1; ++n) {
    __m512 a[U][2];
    for (int u = 0; u < U; ++u) a[u][0] = a[u][1] = _mm512_setzero_ps();
    int64_t p = w->row_ptr[n];
    const int64_t end = w->row_ptr[n + 1];
    for (; p + U <= end; p += U) {
      for (int u = 0; u < U; ++u) {
        const __m512 v = _mm512_set1_ps(values[p + u]);
        const float* xr = panel + static_cast<int64_t>(idx[p + u]) * 32;
        a[u][0] = _mm512_fmadd_ps(v, _mm512_loadu_ps(xr), a[u][0]);
        a[u][1] = _mm512_fmadd_ps(v, _mm512_loadu_ps(xr + 16), a[u][1]);
      }
    }
    for (; p < end; ++p) {
      const __m512 v = _mm512_set1_ps(values[p]);
      const float* xr = panel + static_cast<int64_t>(idx[p]) * 32;
      a[0][0] = _mm512_fmadd_ps(v, _mm512_loadu_ps(xr), a[0][0]);
      a[0][1] = _mm512_fmadd_ps(v, _mm512_loadu_ps(xr + 16), a[0][1]);
    }
    const __m512 b = _mm512_set1_ps(bias ? bias[n] : 0.0f);
    for (int j = 0; j < 2; ++j) {
      __m512 s = _mm512_add_ps(_mm512_add_ps(a[0][j], a[1][j]), _mm512_add_ps(a[2][j], a[3][j]));
      _mm512_store_ps(buf + 16 * j, _mm512_add_ps(s, b));
    }
    for (int64_t j = 0; j < valid; ++j) y[j * ldy + n] = buf[j];
  }
}

static inline __m512i load_idx16(const uint16_t* p) {
  return _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
static inline __m512i load_idx16(const int32_t* p) { return _mm512_loadu_si512(p); }

template <typename I>
void spmv(const SparseMatrix* w, const I* idx, int64_t n0, int64_t n1, const float* x, float* y,
          const float* bias) {
  const auto* values = static_cast<const float*>(w->values);
  for (int64_t n = n0; n < n1; ++n) {
    int64_t p = w->row_ptr[n];
    const int64_t end = w->row_ptr[n + 1];
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    for (; p + 32 <= end; p += 32) {
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(values + p),
                           _mm512_i32gather_ps(load_idx16(idx + p), x, 4), a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(values + p + 16),
                           _mm512_i32gather_ps(load_idx16(idx + p + 16), x, 4), a1);
    }
    float s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; p < end; ++p) s += values[p] * x[idx[p]];
    y[n] = s + (bias ? bias[n] : 0.0f);
  }
}

// int8, W = 32: one zmm of int16 per panel row. unpacklo/hi work per 128-bit lane, so lo
// holds columns {8q .. 8q+3} and hi {8q+4 .. 8q+7} of lane q.
template <typename I>
void q32(const SparseMatrix* w, const I* idx, int64_t n0, int64_t n1, const int16_t* panel,
         int64_t valid, int32_t* out, int64_t ld, const float* xs, const float* ws, float* y,
         const float* bias) {
  const auto* values = static_cast<const int16_t*>(w->values);
  alignas(64) int32_t lo_buf[16], hi_buf[16];
  int32_t buf[32];
  for (int64_t n = n0; n < n1; ++n) {
    __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
    const int64_t end = w->row_ptr[n + 1];
    for (int64_t p = w->row_ptr[n]; p < end; p += 2) {
      int32_t pair;
      __builtin_memcpy(&pair, values + p, 4);
      const __m512i wp = _mm512_set1_epi32(pair);
      const __m512i a = _mm512_loadu_si512(panel + static_cast<int64_t>(idx[p]) * 32);
      const __m512i b = _mm512_loadu_si512(panel + static_cast<int64_t>(idx[p + 1]) * 32);
      lo = _mm512_add_epi32(lo, _mm512_madd_epi16(_mm512_unpacklo_epi16(a, b), wp));
      hi = _mm512_add_epi32(hi, _mm512_madd_epi16(_mm512_unpackhi_epi16(a, b), wp));
    }
    _mm512_store_si512(lo_buf, lo);
    _mm512_store_si512(hi_buf, hi);
    for (int q = 0; q < 4; ++q)
      for (int i = 0; i < 4; ++i) {
        buf[8 * q + i] = lo_buf[4 * q + i];
        buf[8 * q + 4 + i] = hi_buf[4 * q + i];
      }
    if (y) {
      const float s = ws[n], b = bias ? bias[n] : 0.0f;
      for (int64_t j = 0; j < valid; ++j)
        y[j * ld + n] = static_cast<float>(buf[j]) * (xs[j] * s) + b;
    } else {
      for (int64_t j = 0; j < valid; ++j) out[j * ld + n] = buf[j];
    }
  }
}

}  // namespace

void f32_spmm_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const float* panel,
                  int64_t width, int64_t valid, float* y, int64_t ldy, const float* bias) {
  if (width != 32) return avx2::f32_spmm_csr(w, n0, n1, panel, width, valid, y, ldy, bias);
  if (w->idx16) spmm32(w, w->idx16, n0, n1, panel, valid, y, ldy, bias);
  else spmm32(w, w->idx32, n0, n1, panel, valid, y, ldy, bias);
}

void f32_spmv_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const float* x, float* y,
                  const float* bias) {
  if (w->idx16) spmv(w, w->idx16, n0, n1, x, y, bias);
  else spmv(w, w->idx32, n0, n1, x, y, bias);
}

void qs16_spmm_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int16_t* panel,
                   int64_t width, int64_t valid, const float* x_scale, const float* w_scale,
                   float* y, int64_t ldy, const float* bias) {
  if (width != 32)
    return avx2::qs16_spmm_csr(w, n0, n1, panel, width, valid, x_scale, w_scale, y, ldy, bias);
  if (w->idx16) q32(w, w->idx16, n0, n1, panel, valid, nullptr, ldy, x_scale, w_scale, y, bias);
  else q32(w, w->idx32, n0, n1, panel, valid, nullptr, ldy, x_scale, w_scale, y, bias);
}

void qs16_spmm_csr_acc(const SparseMatrix* w, int64_t n0, int64_t n1, const int16_t* panel,
                       int64_t width, int64_t valid, int32_t* acc, int64_t ldacc) {
  if (width != 32) return avx2::qs16_spmm_csr_acc(w, n0, n1, panel, width, valid, acc, ldacc);
  if (w->idx16)
    q32(w, w->idx16, n0, n1, panel, valid, acc, ldacc, nullptr, nullptr, nullptr, nullptr);
  else
    q32(w, w->idx32, n0, n1, panel, valid, acc, ldacc, nullptr, nullptr, nullptr, nullptr);
}

}  // namespace avx512
}  // namespace pyquant
