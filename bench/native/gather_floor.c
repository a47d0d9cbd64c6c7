/* The loads a CSR sparse x dense kernel cannot avoid, and nothing else: for each nonzero, in
 * the pack's order, the 32-float (128-byte) panel row its column names, summed into
 * independent chains (no output rows, no run ends). gather_rows adds the rows: a floor for any
 * kernel that gathers one panel row per nonzero on this CPU; gather_fma also multiplies each
 * by its weight (the FMAs such a kernel must do on top). bench/gather_floor.py compiles
 * this file (GCC / Clang vector extensions, built for the ISA pyquant runs) and calls it by
 * ctypes. */
#include <stdint.h>

/* The chains match the op's kernels: with AVX-512 a row is 2 zmm and 8 chains are in flight;
 * with AVX2 it is 4 ymm and 2 chains (8 accumulators of the 16 registers; more would spill). */
#ifdef __AVX512F__
#define LANES 16
#define CHAINS 8
#else
#define LANES 8
#define CHAINS 2
#endif
#define NV (32 / LANES)

typedef float vec __attribute__((vector_size(LANES * 4)));

static inline vec row_part(const float* p) { return *(const vec*)p; } /* 64-byte aligned rows */

/* panels: n_panels panels of k rows x 32 floats, one after the other (the op's 32-column
 * slabs); idx: the n column indices, gathered once per panel; values: their weights, or NULL
 * (then the rows are only added). out: 32 floats. Inlined into both entry points, so the
 * NULL test folds away and gather_rows has no multiply (v * row with v = 1.0f is row). */
static inline __attribute__((always_inline)) void gather(const float* panels, int64_t n_panels,
                                                         int64_t k, const uint16_t* idx,
                                                         const float* values, int64_t n,
                                                         float* out) {
  vec a[CHAINS][NV];
  for (int u = 0; u < CHAINS; ++u)
    for (int j = 0; j < NV; ++j) a[u][j] = (vec){0};
  for (int64_t s = 0; s < n_panels; ++s) {
    const float* panel = panels + s * k * 32;
    int64_t p = 0;
    for (; p + CHAINS <= n; p += CHAINS)
#pragma GCC unroll 8
      for (int u = 0; u < CHAINS; ++u) {
        const float* r = panel + (int64_t)idx[p + u] * 32;
        const float v = values ? values[p + u] : 1.0f;
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) a[u][j] += v * row_part(r + j * LANES);
      }
    for (; p < n; ++p) {
      const float* r = panel + (int64_t)idx[p] * 32;
      const float v = values ? values[p] : 1.0f;
      for (int j = 0; j < NV; ++j) a[0][j] += v * row_part(r + j * LANES);
    }
  }
  for (int u = 1; u < CHAINS; ++u)
    for (int j = 0; j < NV; ++j) a[0][j] += a[u][j];
  for (int j = 0; j < NV; ++j)
    for (int l = 0; l < LANES; ++l) out[j * LANES + l] = a[0][j][l];
}

void gather_rows(const float* panels, int64_t n_panels, int64_t k, const uint16_t* idx,
                 int64_t n, float* out) {
  gather(panels, n_panels, k, idx, 0, n, out);
}

void gather_fma(const float* panels, int64_t n_panels, int64_t k, const uint16_t* idx,
                const float* values, int64_t n, float* out) {
  gather(panels, n_panels, k, idx, values, n, out);
}
