// Portable sparse x dense kernels: the fallback and the oracle for the SIMD paths.
// Layouts are documented in kernels.h (SparseMatrix, panels) and pyquant/sparse_format.md.
#include <cstdint>

#include "pyquant/kernels.h"

namespace pyquant {
namespace ref {
namespace {

template <typename I>
void spmm(const SparseMatrix* w, const I* idx, int64_t n0, int64_t n1, const float* panel,
          int64_t width, int64_t valid, float* y, int64_t ldy, const float* bias) {
  const auto* values = static_cast<const float*>(w->values);
  float acc[32];
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t j = 0; j < width; ++j) acc[j] = 0.0f;
    for (int64_t p = w->row_ptr[n]; p < w->row_ptr[n + 1]; ++p) {
      const float v = values[p];
      const float* xr = panel + static_cast<int64_t>(idx[p]) * width;
      for (int64_t j = 0; j < width; ++j) acc[j] += v * xr[j];
    }
    const float b = bias ? bias[n] : 0.0f;
    for (int64_t j = 0; j < valid; ++j) y[j * ldy + n] = acc[j] + b;
  }
}

template <typename I>
void spmv(const SparseMatrix* w, const I* idx, int64_t n0, int64_t n1, const float* x, float* y,
          const float* bias) {
  const auto* values = static_cast<const float*>(w->values);
  for (int64_t n = n0; n < n1; ++n) {
    float acc = 0.0f;
    for (int64_t p = w->row_ptr[n]; p < w->row_ptr[n + 1]; ++p) acc += values[p] * x[idx[p]];
    y[n] = acc + (bias ? bias[n] : 0.0f);
  }
}

template <typename I>
void q_acc(const SparseMatrix* w, const I* idx, int64_t n0, int64_t n1, const int16_t* panel,
           int64_t width, int64_t valid, int32_t* out, int64_t ld, bool epilogue,
           const float* x_scale, const float* w_scale, float* y, const float* bias) {
  const auto* values = static_cast<const int16_t*>(w->values);
  int32_t acc[32];
  for (int64_t n = n0; n < n1; ++n) {
    for (int64_t j = 0; j < width; ++j) acc[j] = 0;
    for (int64_t p = w->row_ptr[n]; p < w->row_ptr[n + 1]; ++p) {
      const int32_t v = values[p];
      const int16_t* xr = panel + static_cast<int64_t>(idx[p]) * width;
      for (int64_t j = 0; j < width; ++j) acc[j] += v * static_cast<int32_t>(xr[j]);
    }
    if (epilogue) {
      const float b = bias ? bias[n] : 0.0f;
      for (int64_t j = 0; j < valid; ++j)
        y[j * ld + n] = static_cast<float>(acc[j]) * (x_scale[j] * w_scale[n]) + b;
    } else {
      for (int64_t j = 0; j < valid; ++j) out[j * ld + n] = acc[j];
    }
  }
}

}  // namespace

void f32_spmm_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const float* panel,
                  int64_t width, int64_t valid, float* y, int64_t ldy, const float* bias) {
  if (w->idx16) spmm(w, w->idx16, n0, n1, panel, width, valid, y, ldy, bias);
  else spmm(w, w->idx32, n0, n1, panel, width, valid, y, ldy, bias);
}

void f32_spmv_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const float* x, float* y,
                  const float* bias) {
  if (w->idx16) spmv(w, w->idx16, n0, n1, x, y, bias);
  else spmv(w, w->idx32, n0, n1, x, y, bias);
}

void qs16_spmm_csr(const SparseMatrix* w, int64_t n0, int64_t n1, const int16_t* panel,
                   int64_t width, int64_t valid, const float* x_scale, const float* w_scale,
                   float* y, int64_t ldy, const float* bias) {
  if (w->idx16)
    q_acc(w, w->idx16, n0, n1, panel, width, valid, nullptr, ldy, true, x_scale, w_scale, y, bias);
  else
    q_acc(w, w->idx32, n0, n1, panel, width, valid, nullptr, ldy, true, x_scale, w_scale, y, bias);
}

void qs16_spmm_csr_acc(const SparseMatrix* w, int64_t n0, int64_t n1, const int16_t* panel,
                       int64_t width, int64_t valid, int32_t* acc, int64_t ldacc) {
  if (w->idx16)
    q_acc(w, w->idx16, n0, n1, panel, width, valid, acc, ldacc, false, nullptr, nullptr, nullptr,
          nullptr);
  else
    q_acc(w, w->idx32, n0, n1, panel, width, valid, acc, ldacc, false, nullptr, nullptr, nullptr,
          nullptr);
}

}  // namespace ref
}  // namespace pyquant
