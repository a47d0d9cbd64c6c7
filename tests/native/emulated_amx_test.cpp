// Checks the AMX-INT8 GEMM kernel (csrc/amx/) against the scalar oracle with the tile
// instructions emulated in C++ and the VNNI fallback / epilogue by SIMDe (see
// amx_immintrin/immintrin.h). Built and run by tests/test_emulated_isa.py on machines without
// AMX. Covers the kernel's edges: 16-row tiles vs row tails (to VNNI), K < 64 (all VNNI), K
// tails (K % 64 from zero-padded copies), one vs two 16-column panels per block, column blocks
// (large K), sub-ranges, padded lda / ldc, and the int32 worst case.
// Prints one line per failure and a closing "N passed, M failed" line; exit code 1 on failure.
#include <immintrin.h>  // the stand-in: amx_emu::state()

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <vector>

#include "pyquant/gemm.h"
#include "xorshift.h"

namespace {

int passed = 0, failed = 0;


// One problem with every per-row / per-column array; the sizes are exact (Np per column) so a
// sanitizer build would catch reads past them.
struct Problem {
  int64_t m, k, n, lda, kp, np;
  std::vector<uint8_t> a;
  std::vector<int8_t> packed;
  std::vector<int32_t> col_sum, row_sum, za, zb;
  std::vector<float> sa, sb, bias;
};

Problem make_problem(int64_t m, int64_t k, int64_t n, int64_t lda, bool worst) {
  Problem p{m, k, n, lda, pyquant::gemm_padded_k(k), pyquant::gemm_padded_n(n)};
  p.a.assign(m * lda, 0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t kk = 0; kk < lda; ++kk)  // bytes past K are garbage the kernel must ignore
      p.a[i * lda + kk] = worst && kk < k ? 255 : static_cast<uint8_t>(next_u32());
  // Packed as gemm.h documents: data[p*Kp*16 + g*64 + c*4 + j] = B(4g + j, 16p + c), 0 padding.
  p.packed.assign(p.kp * p.np, 0);
  p.col_sum.assign(p.np, 0);
  for (int64_t kk = 0; kk < k; ++kk)
    for (int64_t c = 0; c < n; ++c) {
      const int8_t v = worst ? -128 : static_cast<int8_t>(next_u32());
      p.packed[(c / 16) * p.kp * 16 + (kk / 4) * 64 + (c % 16) * 4 + kk % 4] = v;
      p.col_sum[c] += v;
    }
  p.row_sum.assign(m, 0);
  p.za.resize(m);
  p.sa.resize(m);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t kk = 0; kk < k; ++kk) p.row_sum[i] += p.a[i * lda + kk];
    p.za[i] = static_cast<int32_t>(next_u32() % 256);
    p.sa[i] = 0.001f * (1 + next_u32() % 100);
  }
  p.zb.assign(p.np, 0);
  p.sb.assign(p.np, 0.0f);
  p.bias.assign(p.np, 0.0f);
  for (int64_t c = 0; c < n; ++c) {
    p.zb[c] = static_cast<int32_t>(next_u32() % 256) - 128;
    p.sb[c] = 0.001f * (1 + next_u32() % 100);
    p.bias[c] = static_cast<float>(next_u32() % 2001) / 1000.0f - 1.0f;
  }
  return p;
}

enum Mode { kInt32, kInt32ZeroPoints, kFloat };
const char* const kModeName[] = {"int32", "int32+zero points", "f32+zero points+bias"};

// Runs rows [m0, m1) x columns [n0, n1) through both kernels into sentinel-filled outputs and
// compares the whole buffers, so writes outside the range fail too.
void check(const Problem& p, Mode mode, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
           int64_t ldc) {
  pyquant::GemmArgs g;
  g.a = p.a.data();
  g.lda = p.lda;
  g.b = p.packed.data();
  g.K = p.k;
  g.Kp = p.kp;
  g.ldc = ldc;
  if (mode != kInt32) {
    g.a_zero_point = p.za.data();
    g.col_sum = p.col_sum.data();
    g.b_zero_point = p.zb.data();
    g.row_sum = p.row_sum.data();
  }
  if (mode == kFloat) {
    g.a_scale = p.sa.data();
    g.b_scale = p.sb.data();
    g.bias = p.bias.data();
  }
  const size_t size = static_cast<size_t>(p.m * ldc);
  std::vector<int32_t> ci_ref(size, 0x5A5A5A5A), ci_amx(ci_ref);
  std::vector<float> cf_ref(size, -7.25f), cf_amx(cf_ref);
  pyquant::GemmArgs g_ref = g, g_amx = g;
  if (mode == kFloat) {
    g_ref.c_f32 = cf_ref.data();
    g_amx.c_f32 = cf_amx.data();
  } else {
    g_ref.c_i32 = ci_ref.data();
    g_amx.c_i32 = ci_amx.data();
  }
  pyquant::ref::qu8qs8_gemm(g_ref, m0, m1, n0, n1);
  amx_emu::State& st = amx_emu::state();
  const long calls = st.loadconfig_calls;
  pyquant::amx::qu8qs8_gemm(g_amx, m0, m1, n0, n1);
  // The tile path must run exactly when there is a whole 16-row tile and a whole 64-k step,
  // and must leave the tiles released.
  const bool want_tiles = (m1 - m0) >= 16 && p.k >= 64;
  const bool used_tiles = st.loadconfig_calls != calls;
  bool ok = true;
  if (mode == kFloat) {
    for (size_t i = 0; i < size; ++i)
      ok &= std::fabs(cf_ref[i] - cf_amx[i]) <= 1e-5f * std::fmax(1.0f, std::fabs(cf_ref[i]));
  } else {
    ok = ci_ref == ci_amx;
  }
  if (ok && used_tiles == want_tiles && !st.configured) {
    ++passed;
    return;
  }
  ++failed;
  std::printf("FAILED %s M=%lld K=%lld N=%lld lda=%lld ldc=%lld rows [%lld, %lld) cols "
              "[%lld, %lld)%s%s%s\n",
              kModeName[mode], static_cast<long long>(p.m), static_cast<long long>(p.k),
              static_cast<long long>(p.n), static_cast<long long>(p.lda),
              static_cast<long long>(ldc), static_cast<long long>(m0), static_cast<long long>(m1),
              static_cast<long long>(n0), static_cast<long long>(n1), ok ? "" : ": wrong output",
              used_tiles == want_tiles ? "" : (used_tiles ? ": tiles used unexpectedly"
                                                          : ": tile path not taken"),
              st.configured ? ": tiles not released" : "");
}

void check_all_modes(const Problem& p, int64_t m0, int64_t m1, int64_t n0, int64_t n1,
                     int64_t ldc) {
  for (Mode mode : {kInt32, kInt32ZeroPoints, kFloat}) check(p, mode, m0, m1, n0, n1, ldc);
}

}  // namespace

int main() {
  const int64_t ms[] = {1, 15, 16, 17, 31, 32, 33, 48, 50, 64};
  const int64_t ks[] = {1, 63, 64, 65, 130, 200, 1030};
  const int64_t ns[] = {1, 15, 16, 17, 32, 33, 48, 100};
  int variant = 0;
  for (int64_t m : ms)
    for (int64_t k : ks)
      for (int64_t n : ns) {
        // Every other shape with an lda / ldc past K / N: rows are read and written in place.
        const int64_t pad = variant++ % 2 ? 5 : 0;
        check_all_modes(make_problem(m, k, n, k + pad, false), 0, m, 0, n, n + pad);
      }

  // Worst case for int32: every product 255 * -128. K = 16447 also makes the kernel split the
  // columns into several 32-wide B blocks (1 MB / Kp) with a 63-byte K tail.
  for (int64_t k : {64, 1030, 16447})
    for (int64_t m : {16, 33, 64})
      for (int64_t n : {17, 100}) check_all_modes(make_problem(m, k, n, k, true), 0, m, 0, n, n);

  // Sub-ranges as the op's tiling calls them: m0 > 0, n0 a multiple of 16 > 0, n1 <= N.
  const int64_t ranges[][4] = {{16, 48, 32, 100}, {1, 50, 16, 33}, {17, 64, 48, 100},
                               {3, 19, 80, 100},  {40, 64, 96, 100}, {5, 60, 16, 50},
                               {31, 63, 64, 81}};
  for (int64_t k : {65, 200, 1030, 16447}) {
    const Problem p = make_problem(64, k, 100, k + 3, false);
    for (const auto& r : ranges) check_all_modes(p, r[0], r[1], r[2], r[3], 100 + 7);
  }

  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
