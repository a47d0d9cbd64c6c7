// Portable sparse x dense kernels: the fallback and the oracle for the SIMD paths.
// Layouts are documented in kernels.h (SparseMatrix, panels) and pyquant/sparse_format.md.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "pyquant/kernels.h"

namespace pyquant {
namespace ref {
namespace {

template <typename T, typename P, typename A, typename I>
void spmm(const T* values, const I* idx, int64_t n0, int64_t n1, const int64_t* begin,
          const int64_t* end, int64_t stride, const P* panel, int64_t width, int64_t panel_ld,
          A* yt, int64_t out_ld, bool accumulate) {
  for (int64_t n = n0; n < n1; ++n) {
    A* acc = yt + n * out_ld;
    if (!accumulate)
      for (int64_t j = 0; j < width; ++j) acc[j] = A(0);
    for (int64_t p = begin[n * stride]; p < end[n * stride]; ++p) {
      const A v = static_cast<A>(values[p]);
      const auto* xr = panel + static_cast<int64_t>(idx[p]) * panel_ld;
      for (int64_t j = 0; j < width; ++j) acc[j] += v * static_cast<A>(xr[j]);
    }
  }
}

template <typename I>
void spmv(const SparseMatrix* w, const I* idx, int64_t n0, int64_t n1, const int64_t* begin,
          const int64_t* end, const float* x, float* y, bool accumulate) {
  const auto* values = static_cast<const float*>(w->values);
  for (int64_t n = n0; n < n1; ++n) {
    float acc = 0.0f;
    for (int64_t p = begin[n]; p < end[n]; ++p) acc += values[p] * x[idx[p]];
    y[n] = (accumulate ? y[n] : 0.0f) + acc;
  }
}

template <typename I>
void q_spmv(const int16_t* values, const I* idx, int64_t n0, int64_t n1, const int64_t* begin,
            const int64_t* end, const int32_t* xz, int32_t* acc, bool accumulate) {
  for (int64_t n = n0; n < n1; ++n) {
    int32_t s = 0;
    for (int64_t p = begin[n]; p < end[n]; ++p)
      s += static_cast<int32_t>(values[p]) *
           static_cast<int32_t>(static_cast<int16_t>(static_cast<uint16_t>(xz[idx[p]])));
    acc[n] = (accumulate ? acc[n] : 0) + s;
  }
}

}  // namespace

void f32_spmm_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                  const int64_t* end, int64_t stride, const float* panel, int64_t width,
                  int64_t panel_ld, float* yt, int64_t out_ld, bool accumulate) {
  const auto* v = static_cast<const float*>(w->values);
  if (w->idx16) spmm(v, w->idx16, n0, n1, begin, end, stride, panel, width, panel_ld, yt, out_ld,
                    accumulate);
  else spmm(v, w->idx32, n0, n1, begin, end, stride, panel, width, panel_ld, yt, out_ld,
            accumulate);
}

void f32_spmv_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                  const int64_t* end, const float* x, float* y, bool accumulate) {
  if (w->idx16) spmv(w, w->idx16, n0, n1, begin, end, x, y, accumulate);
  else spmv(w, w->idx32, n0, n1, begin, end, x, y, accumulate);
}

void qs16_spmm_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                   const int64_t* end, int64_t stride, const int16_t* panel, int64_t width,
                   int32_t* acct, bool accumulate) {
  const auto* v = static_cast<const int16_t*>(w->values);
  const int64_t ld = width;
  if (w->idx16) spmm(v, w->idx16, n0, n1, begin, end, stride, panel, width, ld, acct, ld,
                    accumulate);
  else spmm(v, w->idx32, n0, n1, begin, end, stride, panel, width, ld, acct, ld, accumulate);
}

void qs16_spmv_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                   const int64_t* end, const int32_t* xz, int32_t* acc, bool accumulate) {
  const auto* v = static_cast<const int16_t*>(w->values);
  if (w->idx16) q_spmv(v, w->idx16, n0, n1, begin, end, xz, acc, accumulate);
  else q_spmv(v, w->idx32, n0, n1, begin, end, xz, acc, accumulate);
}

void qu8x4_spmm_csr(const QuadMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                    const int64_t* end, int64_t stride, const uint8_t* panel, int64_t width,
                    const int32_t* zp, int32_t* acct, bool accumulate) {
  for (int64_t n = n0; n < n1; ++n) {
    int32_t* out = acct + n * width;
    if (!accumulate)
      for (int64_t j = 0; j < width; ++j) out[j] = -zp[j] * w->row_sum[n];
    for (int64_t i = begin[n * stride] / 4; i < end[n * stride] / 4; ++i) {
      const uint32_t quad = static_cast<uint32_t>(w->quad_w[i]);
      const uint8_t* xr = panel + static_cast<int64_t>(w->quad_col[i]) * width * 4;
      for (int64_t j = 0; j < width; ++j)
        for (int t = 0; t < 4; ++t)
          out[j] += static_cast<int32_t>(xr[j * 4 + t]) *
                    static_cast<int32_t>(static_cast<int8_t>(quad >> (8 * t)));
    }
  }
}

void qu8x4_spmm_tiles(const QuadMatrix* w, int64_t n, int64_t g0, int64_t g1,
                      const uint8_t* panel, int64_t m0, int64_t valid, const int32_t* zp,
                      const TileOut* out) {
  for (int64_t g = g0; g < g1; ++g) {
    for (int64_t nn = g * 16; nn < std::min(n, g * 16 + 16); ++nn) {
      for (int64_t j = 0; j < valid; ++j) {
        int32_t acc = -zp[j] * w->row_sum[nn];
        for (int64_t i = w->group_ptr[g]; i < w->group_ptr[g + 1]; ++i) {
          const uint32_t quad = static_cast<uint32_t>(w->group_w[i * 16 + nn - g * 16]);
          const uint8_t* xr = panel + (static_cast<int64_t>(w->group_col[i]) * 16 + j) * 4;
          for (int t = 0; t < 4; ++t)
            acc += static_cast<int32_t>(xr[t]) *
                   static_cast<int32_t>(static_cast<int8_t>(quad >> (8 * t)));
        }
        const int64_t o = (m0 + j) * n + nn;
        if (out->acc != nullptr)
          out->acc[o] = acc;
        else
          out->y[o] = static_cast<float>(acc) * (out->x_scale[m0 + j] * out->w_scale[nn]) +
                      (out->bias ? out->bias[nn] : 0.0f);
      }
    }
  }
}

void f32_spmm_tiles(const F32Tiles* w, int64_t n, int64_t g0, int64_t g1, const float* panel,
                    int64_t m0, int64_t valid, const float* bias, float* y) {
  for (int64_t g = g0; g < g1; ++g) {
    for (int64_t nn = g * 16; nn < std::min(n, g * 16 + 16); ++nn) {
      for (int64_t j = 0; j < valid; ++j) {
        float acc = 0.0f;
        for (int64_t i = w->group_ptr[g]; i < w->group_ptr[g + 1]; ++i) {
          const float v = w->group_w[i * 16 + nn - g * 16];
          if (v != 0.0f)  // an empty slot: as in CSR, no product (NaN / Inf stay in their rows)
            acc = std::fma(v, panel[static_cast<int64_t>(w->group_col[i]) * 16 + j], acc);
        }
        y[(m0 + j) * n + nn] = acc + (bias ? bias[nn] : 0.0f);
      }
    }
  }
}

void qu8x4_spmv_csr(const QuadMatrix* w, int64_t n0, int64_t n1, const int64_t* begin,
                    const int64_t* end, const uint8_t* xq, int32_t zp, int32_t* acc,
                    bool accumulate) {
  for (int64_t n = n0; n < n1; ++n) {
    int32_t s = accumulate ? acc[n] : -zp * w->row_sum[n];
    for (int64_t i = begin[n] / 4; i < end[n] / 4; ++i) {
      const uint32_t quad = static_cast<uint32_t>(w->quad_w[i]);
      const uint8_t* xr = xq + static_cast<int64_t>(w->quad_col[i]) * 4;
      for (int t = 0; t < 4; ++t)
        s += static_cast<int32_t>(xr[t]) * static_cast<int32_t>(static_cast<int8_t>(quad >> (8 * t)));
    }
    acc[n] = s;
  }
}

}  // namespace ref
}  // namespace pyquant
