/* The loads a CSR sparse x dense kernel cannot avoid, and nothing else: for each nonzero, in
 * the pack's order, the 32-float (128-byte) panel row its column names, summed into 8
 * independent chains (no output rows, no run ends). gather_rows adds the rows: a floor for
 * any kernel that gathers one panel row per nonzero on this CPU; gather_fma also multiplies
 * each by its weight (the FMAs such a kernel must do on top). bench/gather_floor.py compiles
 * this file (GCC / Clang vector extensions, built for the ISA pyquant runs) and calls it by
 * ctypes. */
#include <stdint.h>

typedef float v16 __attribute__((vector_size(64)));

static inline v16 row_half(const float* p) { return *(const v16*)p; } /* 64-byte aligned rows */

/* panels: n_panels panels of k rows x 32 floats, one after the other (the op's 32-column
 * slabs); idx: the n column indices, gathered once per panel; values: their weights, or NULL
 * (then the rows are only added). out: 32 floats. */
static void gather(const float* panels, int64_t n_panels, int64_t k, const uint16_t* idx,
                   const float* values, int64_t n, float* out) {
  v16 a[8][2];
  for (int u = 0; u < 8; ++u) a[u][0] = a[u][1] = (v16){0};
  for (int64_t s = 0; s < n_panels; ++s) {
    const float* panel = panels + s * k * 32;
    int64_t p = 0;
    if (values == 0) {
      for (; p + 8 <= n; p += 8)
#pragma GCC unroll 8
        for (int u = 0; u < 8; ++u) {
          const float* r = panel + (int64_t)idx[p + u] * 32;
          a[u][0] += row_half(r);
          a[u][1] += row_half(r + 16);
        }
    } else {
      for (; p + 8 <= n; p += 8)
#pragma GCC unroll 8
        for (int u = 0; u < 8; ++u) {
          const float* r = panel + (int64_t)idx[p + u] * 32;
          a[u][0] += values[p + u] * row_half(r);
          a[u][1] += values[p + u] * row_half(r + 16);
        }
    }
    for (; p < n; ++p) {
      const float* r = panel + (int64_t)idx[p] * 32;
      const float v = values ? values[p] : 1.0f;
      a[0][0] += v * row_half(r);
      a[0][1] += v * row_half(r + 16);
    }
  }
  for (int u = 1; u < 8; ++u) a[0][0] += a[u][0], a[0][1] += a[u][1];
  for (int j = 0; j < 16; ++j) out[j] = a[0][0][j], out[16 + j] = a[0][1][j];
}

void gather_rows(const float* panels, int64_t n_panels, int64_t k, const uint16_t* idx,
                 int64_t n, float* out) {
  gather(panels, n_panels, k, idx, 0, n, out);
}

void gather_fma(const float* panels, int64_t n_panels, int64_t k, const uint16_t* idx,
                const float* values, int64_t n, float* out) {
  gather(panels, n_panels, k, idx, values, n, out);
}
