// Checks the AVX-512 kernels against the scalar oracle with the intrinsics emulated by SIMDe
// (see simde_immintrin/immintrin.h). Built and run by tests/test_emulated_isa.py on machines
// without AVX-512, so that code path is verified even where it cannot execute natively.
// Prints one line per failure and a closing "N passed, M failed" line; exit code 1 on failure.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "pyquant/gemm.h"
#include "pyquant/kernels.h"
#include "xorshift.h"

namespace {

int passed = 0, failed = 0;

void check(bool ok, const char* what, int64_t n) {
  if (ok) {
    ++passed;
  } else {
    ++failed;
    std::printf("FAILED %s n=%lld\n", what, static_cast<long long>(n));
  }
}

float next_float(float spread) { return (static_cast<float>(next_u32() % 2000001) / 1e6f - 1.0f) * spread; }

// Values that stress rounding and saturation: ties, +-0, subnormals, infinities, huge.
std::vector<float> make_input(int64_t n, bool specials) {
  std::vector<float> x(n + 64);  // padding: emulated masked stores may touch whole vectors
  const float special[] = {0.5f, 1.5f, 2.5f, -0.5f, -2.5f, -0.0f, 0.0f, 1e-45f, -1e-40f,
                           std::numeric_limits<float>::infinity(),
                           -std::numeric_limits<float>::infinity(), 3e38f, -3e38f, 127.5f, -128.5f};
  for (int64_t i = 0; i < n; ++i) {
    x[i] = specials && next_u32() % 4 == 0 ? special[next_u32() % 15] : next_float(300.0f);
  }
  return x;
}

const int64_t kSizes[] = {0, 1, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000, 4099};

void check_quantize() {
  for (int64_t n : kSizes) {
    for (int is_signed = 0; is_signed < 2; ++is_signed) {
      const std::vector<float> x = make_input(n, true);
      std::vector<float> scale(n + 64);
      std::vector<int32_t> zp(n + 64);
      for (int64_t i = 0; i < n; ++i) {
        scale[i] = 0.01f + static_cast<float>(next_u32() % 1000) / 100.0f;
        zp[i] = static_cast<int32_t>(next_u32() % 256) - (is_signed ? 128 : 0);
      }
      std::vector<uint8_t> a(n + 64, 0xAB), b(n + 64, 0xAB);
      const int32_t z = is_signed ? -3 : 131;
      bool nan_a, nan_b;
      if (is_signed) {
        nan_a = pyquant::ref::f32_qs8_quantize(x.data(), a.data(), n, 0.37f, z);
        nan_b = pyquant::avx512::f32_qs8_quantize(x.data(), b.data(), n, 0.37f, z);
      } else {
        nan_a = pyquant::ref::f32_qu8_quantize(x.data(), a.data(), n, 0.37f, z);
        nan_b = pyquant::avx512::f32_qu8_quantize(x.data(), b.data(), n, 0.37f, z);
      }
      check(a == b && nan_a == nan_b, is_signed ? "f32_qs8_quantize" : "f32_qu8_quantize", n);
      std::fill(a.begin(), a.end(), 0xAB);
      std::fill(b.begin(), b.end(), 0xAB);
      if (is_signed) {
        pyquant::ref::f32_qs8_quantize_vec(x.data(), a.data(), n, scale.data(), zp.data());
        pyquant::avx512::f32_qs8_quantize_vec(x.data(), b.data(), n, scale.data(), zp.data());
      } else {
        pyquant::ref::f32_qu8_quantize_vec(x.data(), a.data(), n, scale.data(), nullptr);
        pyquant::avx512::f32_qu8_quantize_vec(x.data(), b.data(), n, scale.data(), nullptr);
      }
      check(a == b, "f32_qx8_quantize_vec", n);
    }
  }
  // NaN is reported.
  std::vector<float> x(100 + 64, 1.0f);
  x[77] = std::numeric_limits<float>::quiet_NaN();
  std::vector<uint8_t> y(100 + 64);
  check(pyquant::avx512::f32_qs8_quantize(x.data(), y.data(), 100, 1.0f, 0), "quantize NaN flag", 100);
}

void check_dequantize() {
  for (int64_t n : kSizes) {
    std::vector<uint8_t> q(n + 64);
    std::vector<float> scale(n + 64);
    std::vector<int32_t> zp(n + 64);
    for (int64_t i = 0; i < n; ++i) {
      q[i] = static_cast<uint8_t>(next_u32());
      scale[i] = 0.01f + static_cast<float>(next_u32() % 1000) / 100.0f;
      zp[i] = static_cast<int32_t>(next_u32() % 256) - 128;
    }
    std::vector<float> a(n + 64, -7.0f), b(n + 64, -7.0f);
    pyquant::ref::qs8_f32_dequantize(q.data(), a.data(), n, 0.031f, 5);
    pyquant::avx512::qs8_f32_dequantize(q.data(), b.data(), n, 0.031f, 5);
    check(std::memcmp(a.data(), b.data(), a.size() * 4) == 0, "qs8_f32_dequantize", n);
    pyquant::ref::qu8_f32_dequantize(q.data(), a.data(), n, 0.031f, 200);
    pyquant::avx512::qu8_f32_dequantize(q.data(), b.data(), n, 0.031f, 200);
    check(std::memcmp(a.data(), b.data(), a.size() * 4) == 0, "qu8_f32_dequantize", n);
    pyquant::ref::qs8_f32_dequantize_vec(q.data(), a.data(), n, scale.data(), zp.data());
    pyquant::avx512::qs8_f32_dequantize_vec(q.data(), b.data(), n, scale.data(), zp.data());
    check(std::memcmp(a.data(), b.data(), a.size() * 4) == 0, "qs8_f32_dequantize_vec", n);
    pyquant::ref::qu8_f32_dequantize_vec(q.data(), a.data(), n, scale.data(), nullptr);
    pyquant::avx512::qu8_f32_dequantize_vec(q.data(), b.data(), n, scale.data(), nullptr);
    check(std::memcmp(a.data(), b.data(), a.size() * 4) == 0, "qu8_f32_dequantize_vec", n);
  }
}

void check_minmax() {
  for (int64_t n : kSizes) {
    if (n == 0) continue;
    for (int with_nan = 0; with_nan < 2; ++with_nan) {
      std::vector<float> x = make_input(n, true);
      if (with_nan) x[next_u32() % n] = std::numeric_limits<float>::quiet_NaN();
      float mn_a, mx_a, mn_b, mx_b;
      const bool na = pyquant::ref::f32_minmax(x.data(), n, &mn_a, &mx_a);
      const bool nb = pyquant::avx512::f32_minmax(x.data(), n, &mn_b, &mx_b);
      // -0.0 and 0.0 compare equal; either may come first.
      check(na == nb && mn_a == mn_b && mx_a == mx_b, "f32_minmax", n);
    }
  }
}

// Sparse CSR kernels (issue 5): random CSR with uint16 indices, every panel width.
void check_sparse() {
  for (int64_t n_rows : {1, 7, 37}) {
    const int64_t k = 300;
    std::vector<int64_t> row_ptr(1, 0);
    std::vector<uint16_t> idx;
    std::vector<float> vf;
    std::vector<int16_t> vq;
    for (int64_t r = 0; r < n_rows; ++r) {
      int64_t cnt = 0;
      for (int64_t c = 0; c < k; ++c) {
        if (next_u32() % 5 == 0 || (r == 0 && c < 2)) {
          idx.push_back(static_cast<uint16_t>(c));
          vf.push_back(next_float(1.0f));
          vq.push_back(static_cast<int16_t>(static_cast<int32_t>(next_u32() % 255) - 127));
          ++cnt;
        }
      }
      if (cnt % 2) {  // int8 rows are padded to an even count with a zero that repeats an index
        idx.push_back(idx.back());
        vf.push_back(0.0f);
        vq.push_back(0);
      }
      row_ptr.push_back(static_cast<int64_t>(idx.size()));
    }
    pyquant::SparseMatrix wf;
    wf.n = n_rows;
    wf.k = k;
    wf.row_ptr = row_ptr.data();
    wf.idx16 = idx.data();
    wf.values = vf.data();
    pyquant::SparseMatrix wq = wf;
    wq.values = vq.data();
    for (int64_t width : {8, 16, 24, 32}) {
      std::vector<float> panel(k * width + 64);
      std::vector<int16_t> qpanel(k * width + 64);
      for (int64_t i = 0; i < k * width; ++i) {
        panel[i] = next_float(2.0f);
        qpanel[i] = static_cast<int16_t>(static_cast<int32_t>(next_u32() % 511) - 255);
      }
      std::vector<float> ya(n_rows * width + 64, 0.0f), yb(ya);
      pyquant::ref::f32_spmm_csr(&wf, 0, n_rows, row_ptr.data(), row_ptr.data() + 1, 1,
                                 panel.data(), width, width, ya.data(), width, false);
      pyquant::avx512::f32_spmm_csr(&wf, 0, n_rows, row_ptr.data(), row_ptr.data() + 1, 1,
                                    panel.data(), width, width, yb.data(), width, false);
      bool close = true;
      for (size_t i = 0; i < ya.size(); ++i)
        close &= std::fabs(ya[i] - yb[i]) <= 1e-4f * (1.0f + std::fabs(ya[i]));
      check(close, "f32_spmm_csr", n_rows * width);
      std::vector<int32_t> qa(n_rows * width + 64, 0), qb(qa);
      pyquant::ref::qs16_spmm_csr(&wq, 0, n_rows, row_ptr.data(), row_ptr.data() + 1, 1,
                                  qpanel.data(), width, qa.data(), false);
      pyquant::avx512::qs16_spmm_csr(&wq, 0, n_rows, row_ptr.data(), row_ptr.data() + 1, 1,
                                     qpanel.data(), width, qb.data(), false);
      check(qa == qb, "qs16_spmm_csr", n_rows * width);
      std::vector<int32_t> qc(qa.size(), 0);
      pyquant::avx512vnni::qs16_spmm_csr(&wq, 0, n_rows, row_ptr.data(), row_ptr.data() + 1, 1,
                                         qpanel.data(), width, qc.data(), false);
      check(qa == qc, "qs16_spmm_csr avx512vnni", n_rows * width);
    }
    std::vector<float> x(k + 64), ya(n_rows + 64, 0.0f), yb(ya);
    for (int64_t i = 0; i < k; ++i) x[i] = next_float(2.0f);
    // Whole rows, then the same rows again as two runs each (a K-blocked pack's call
    // pattern: the second call accumulates), which gives every tail length 0..15.
    const int64_t* rp = row_ptr.data();
    std::vector<int64_t> mid(n_rows + 1);
    for (int64_t r = 0; r < n_rows; ++r) mid[r] = rp[r] + (rp[r + 1] - rp[r]) / 3;
    for (bool split : {false, true}) {
      const int64_t* e0 = split ? mid.data() : rp + 1;
      pyquant::ref::f32_spmv_csr(&wf, 0, n_rows, rp, e0, x.data(), ya.data(), false);
      pyquant::avx512::f32_spmv_csr(&wf, 0, n_rows, rp, e0, x.data(), yb.data(), false);
      if (split) {
        pyquant::ref::f32_spmv_csr(&wf, 0, n_rows, mid.data(), rp + 1, x.data(), ya.data(), true);
        pyquant::avx512::f32_spmv_csr(&wf, 0, n_rows, mid.data(), rp + 1, x.data(), yb.data(),
                                      true);
      }
      bool close = true;
      for (size_t i = 0; i < ya.size(); ++i)
        close &= std::fabs(ya[i] - yb[i]) <= 1e-4f * (1.0f + std::fabs(ya[i]));
      check(close, split ? "f32_spmv_csr (two runs per row)" : "f32_spmv_csr", n_rows);
    }
    // int8 M = 1: xz holds x_q - zp in the low int16, 0 in the high one (kernels.h).
    std::vector<int32_t> xz(k + 64);
    for (int64_t i = 0; i < k; ++i)
      xz[i] = static_cast<uint16_t>(static_cast<int16_t>(static_cast<int32_t>(next_u32() % 511) - 255));
    for (bool split : {false, true}) {
      std::vector<int32_t> qa(n_rows + 64, 0), qb(qa);
      const int64_t* e0 = split ? mid.data() : rp + 1;
      pyquant::ref::qs16_spmv_csr(&wq, 0, n_rows, rp, e0, xz.data(), qa.data(), false);
      pyquant::avx512::qs16_spmv_csr(&wq, 0, n_rows, rp, e0, xz.data(), qb.data(), false);
      if (split) {
        pyquant::ref::qs16_spmv_csr(&wq, 0, n_rows, mid.data(), rp + 1, xz.data(), qa.data(), true);
        pyquant::avx512::qs16_spmv_csr(&wq, 0, n_rows, mid.data(), rp + 1, xz.data(), qb.data(),
                                       true);
      }
      check(qa == qb, split ? "qs16_spmv_csr (two runs per row)" : "qs16_spmv_csr", n_rows);
    }
  }
}

// int8 GEMM (issue 4): ref vs AVX-512BW vs VNNI on random and worst-case operands, int32
// output bit-exact, fp32 epilogue within rounding. B packed as documented in gemm.h.
void check_gemm() {
  const int64_t shapes[][3] = {{1, 4, 16}, {3, 7, 5}, {5, 33, 17}, {8, 64, 32}, {13, 130, 47},
                               {4, 1000, 40}, {17, 600, 300},
                               // few rows over several k blocks with a ragged tail; many rows
                               // (> 32) over equal k blocks with a ragged tail
                               {2, 2500, 18}, {33, 1030, 33}, {40, 2051, 20}};
  for (const auto& sh : shapes) {
    for (int worst = 0; worst < 2; ++worst) {
      const int64_t m = sh[0], k = sh[1], n = sh[2];
      const int64_t kp = pyquant::gemm_padded_k(k), np = pyquant::gemm_padded_n(n);
      std::vector<uint8_t> a(m * k + 64);
      std::vector<int8_t> b(k * n), packed(kp * np + 64, 0);
      for (auto& v : a) v = worst ? 255 : static_cast<uint8_t>(next_u32());
      for (auto& v : b) v = worst ? -128 : static_cast<int8_t>(next_u32());
      std::vector<int32_t> col_sum(np, 0), row_sum(m, 0), za(m), zb(np, 0);
      std::vector<float> sa(m), sb(np, 0.0f), bias(np, 0.0f);
      for (int64_t kk = 0; kk < k; ++kk)
        for (int64_t c = 0; c < n; ++c) {
          const int8_t v = b[kk * n + c];
          packed[(c / 16) * kp * 16 + (kk / 4) * 64 + (c % 16) * 4 + kk % 4] = v;
          col_sum[c] += v;
        }
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t kk = 0; kk < k; ++kk) row_sum[i] += a[i * k + kk];
        za[i] = static_cast<int32_t>(next_u32() % 256);
        sa[i] = 0.001f * (1 + next_u32() % 100);
      }
      for (int64_t c = 0; c < n; ++c) {
        zb[c] = static_cast<int32_t>(next_u32() % 256) - 128;
        sb[c] = 0.001f * (1 + next_u32() % 100);
        bias[c] = next_float(1.0f);
      }
      for (int mode = 0; mode < 2; ++mode) {  // int32 with both zero points; fp32 epilogue
        pyquant::GemmArgs g;
        g.a = a.data();
        g.lda = k;
        g.b = packed.data();
        g.K = k;
        g.Kp = kp;
        g.ldc = n;
        g.a_zero_point = za.data();
        g.col_sum = col_sum.data();
        if (mode == 0) {
          g.b_zero_point = zb.data();
          g.row_sum = row_sum.data();
        } else {
          g.a_scale = sa.data();
          g.b_scale = sb.data();
          g.bias = bias.data();
        }
        std::vector<int32_t> c0(m * n + 64, 7), c1(c0), c2(c0);
        std::vector<float> f0(m * n + 64, 7.0f), f1(f0), f2(f0);
        auto run = [&](pyquant::GemmU8S8Fn fn, std::vector<int32_t>& ci, std::vector<float>& cf) {
          pyquant::GemmArgs gg = g;
          if (mode == 0) gg.c_i32 = ci.data(); else gg.c_f32 = cf.data();
          fn(gg, 0, m, 0, n);
        };
        run(pyquant::ref::qu8qs8_gemm, c0, f0);
        run(pyquant::avx512::qu8qs8_gemm, c1, f1);
        run(pyquant::avx512vnni::qu8qs8_gemm, c2, f2);
        if (mode == 0) {
          check(c0 == c1, "qu8qs8_gemm__avx512 int32", m * k * n);
          check(c0 == c2, "qu8qs8_gemm__avx512vnni int32", m * k * n);
        } else {
          bool close1 = true, close2 = true;
          for (size_t i = 0; i < f0.size(); ++i) {
            const float tol = 1e-5f * (1.0f + std::fabs(f0[i]));
            close1 &= std::fabs(f0[i] - f1[i]) <= tol;
            close2 &= std::fabs(f0[i] - f2[i]) <= tol;
          }
          check(close1, "qu8qs8_gemm__avx512 f32", m * k * n);
          check(close2, "qu8qs8_gemm__avx512vnni f32", m * k * n);
        }
      }
    }
  }
}

// The VNNI quad kernel (1 x 4 blocked int8) against the scalar one: random quads per row
// (empty rows included), widths 16 and 32, fresh tiles and accumulation into them.
void check_quads() {
  for (int64_t n_rows : {1, 9, 40}) {
    const int64_t k4 = 70;  // quads per row of the dense weight
    std::vector<int64_t> row_ptr(1, 0);
    std::vector<int32_t> quad_w, quad_col, row_sum(n_rows, 0);
    for (int64_t r = 0; r < n_rows; ++r) {
      for (int64_t q = 0; q < k4; ++q) {
        if (r == 1 || next_u32() % 4 != 0) continue;  // row 1 empty
        uint32_t packed = 0;
        for (int t = 0; t < 4; ++t) {
          const int32_t v = static_cast<int32_t>(next_u32() % 255) - 127;
          packed |= static_cast<uint32_t>(static_cast<uint8_t>(static_cast<int8_t>(v))) << (8 * t);
          row_sum[r] += v;
        }
        quad_w.push_back(static_cast<int32_t>(packed));
        quad_col.push_back(static_cast<int32_t>(q));
      }
      row_ptr.push_back(static_cast<int64_t>(quad_w.size()) * 4);  // entry offsets
    }
    pyquant::QuadMatrix w;
    w.quad_w = quad_w.data();
    w.quad_col = quad_col.data();
    w.row_sum = row_sum.data();
    for (int64_t width : {16, 32}) {
      std::vector<uint8_t> panel(k4 * width * 4 + 64);
      for (auto& v : panel) v = static_cast<uint8_t>(next_u32());
      std::vector<int32_t> zp(width);
      for (auto& z : zp) z = static_cast<int32_t>(next_u32() % 256);
      for (bool accumulate : {false, true}) {
        std::vector<int32_t> qa(n_rows * width, 7), qb(qa);
        pyquant::ref::qu8x4_spmm_csr(&w, 0, n_rows, row_ptr.data(), row_ptr.data() + 1, 1,
                                     panel.data(), width, zp.data(), qa.data(), accumulate);
        pyquant::avx512vnni::qu8x4_spmm_csr(&w, 0, n_rows, row_ptr.data(), row_ptr.data() + 1,
                                            1, panel.data(), width, zp.data(), qb.data(),
                                            accumulate);
        check(qa == qb, "qu8x4_spmm_csr avx512vnni", n_rows * width);
      }
    }
    // M = 1: x_q is K = 4 * k4 bytes; runs of up to 70 quads give every tail length 0..15.
    std::vector<uint8_t> xq(k4 * 4 + 64);
    for (auto& v : xq) v = static_cast<uint8_t>(next_u32());
    const int32_t zp = static_cast<int32_t>(next_u32() % 256);
    for (bool accumulate : {false, true}) {
      std::vector<int32_t> qa(n_rows, 7), qb(qa);
      pyquant::ref::qu8x4_spmv_csr(&w, 0, n_rows, row_ptr.data(), row_ptr.data() + 1, xq.data(),
                                   zp, qa.data(), accumulate);
      pyquant::avx512vnni::qu8x4_spmv_csr(&w, 0, n_rows, row_ptr.data(), row_ptr.data() + 1,
                                          xq.data(), zp, qb.data(), accumulate);
      check(qa == qb, "qu8x4_spmv_csr avx512vnni", n_rows);
    }
  }
}

// The VNNI 16 x 4 tile kernel against the scalar one: random shared quads per 16-row group,
// zero slots (a row lacking a group quad) and a partial last group, all groups and a subrange.
void check_quad_tiles() {
  for (int64_t n_rows : {1, 16, 40}) {
    const int64_t k4 = 70, groups = (n_rows + 15) / 16;
    std::vector<int64_t> group_ptr(1, 0);
    std::vector<int32_t> group_col, group_w, row_sum(n_rows, 0);
    for (int64_t g = 0; g < groups; ++g) {
      for (int64_t q = 0; q < k4; ++q) {
        if (next_u32() % 3 != 0) continue;
        group_col.push_back(static_cast<int32_t>(q));
        for (int64_t r = 0; r < 16; ++r) {
          uint32_t packed = 0;
          if (g * 16 + r < n_rows && next_u32() % 8 != 0) {
            for (int t = 0; t < 4; ++t) {
              const int32_t v = static_cast<int32_t>(next_u32() % 255) - 127;
              packed |= static_cast<uint32_t>(static_cast<uint8_t>(static_cast<int8_t>(v)))
                        << (8 * t);
              row_sum[g * 16 + r] += v;
            }
          }
          group_w.push_back(static_cast<int32_t>(packed));
        }
      }
      group_ptr.push_back(static_cast<int64_t>(group_col.size()));
    }
    pyquant::QuadMatrix w;
    w.row_sum = row_sum.data();
    w.groups = groups;
    w.group_ptr = group_ptr.data();
    w.group_col = group_col.data();
    w.group_w = group_w.data();
    std::vector<uint8_t> panel(k4 * 64);
    for (auto& v : panel) v = static_cast<uint8_t>(next_u32());
    std::vector<int32_t> zp(16);
    for (auto& z : zp) z = static_cast<int32_t>(next_u32() % 256);
    // Output [m0 + 16, N] with the panel at columns m0 = 3 .. 18 (valid 16, then 5): the
    // int32 accumulators exactly, and the float epilogue (same roundings) exactly.
    const int64_t m0 = 3, rows_out = m0 + 16;
    std::vector<float> x_scale(rows_out), w_scale(n_rows), bias(n_rows);
    for (auto& v : x_scale) v = 1e-3f * static_cast<float>(next_u32() % 1000 + 1);
    for (auto& v : w_scale) v = 1e-3f * static_cast<float>(next_u32() % 1000 + 1);
    for (auto& v : bias) v = static_cast<float>(static_cast<int32_t>(next_u32() % 200) - 100);
    for (int64_t g0 : {int64_t{0}, groups - 1}) {
      for (int64_t valid : {16, 5}) {
        std::vector<int32_t> qa(rows_out * n_rows, 7), qb(qa);
        pyquant::TileOut oa, ob;
        oa.acc = qa.data();
        ob.acc = qb.data();
        pyquant::ref::qu8x4_spmm_tiles(&w, n_rows, g0, groups, panel.data(), m0, valid,
                                       zp.data(), &oa);
        pyquant::avx512vnni::qu8x4_spmm_tiles(&w, n_rows, g0, groups, panel.data(), m0, valid,
                                              zp.data(), &ob);
        check(qa == qb, "qu8x4_spmm_tiles avx512vnni int32", rows_out * n_rows);
        const float* no_bias = nullptr;
        for (const float* b : {no_bias, static_cast<const float*>(bias.data())}) {
          std::vector<float> ya(rows_out * n_rows, 7.0f), yb(ya);
          pyquant::TileOut fa, fb;
          fa.y = ya.data();
          fb.y = yb.data();
          fa.x_scale = fb.x_scale = x_scale.data();
          fa.w_scale = fb.w_scale = w_scale.data();
          fa.bias = fb.bias = b;
          pyquant::ref::qu8x4_spmm_tiles(&w, n_rows, g0, groups, panel.data(), m0, valid,
                                         zp.data(), &fa);
          pyquant::avx512vnni::qu8x4_spmm_tiles(&w, n_rows, g0, groups, panel.data(), m0,
                                                valid, zp.data(), &fb);
          check(ya == yb, "qu8x4_spmm_tiles avx512vnni f32", rows_out * n_rows);
        }
      }
    }
  }
}

// The fp32 16 x 1 tile kernel against the scalar one: partial last groups, empty slots (which
// must not carry a NaN / Inf input into their rows), offset output columns, valid 16 and 5,
// with and without bias: within 1e-5 (SIMDe's FMA rounds the product on its own; natively the
// two round alike), and with +-Inf inputs NaN / Inf exactly where the other has them.
void check_f32_tiles() {
  for (int64_t n_rows : {1, 16, 40}) {
    const int64_t k = 70, groups = (n_rows + 15) / 16;
    std::vector<int64_t> group_ptr(1, 0);
    std::vector<int32_t> group_col;
    std::vector<float> group_w;
    for (int64_t g = 0; g < groups; ++g) {
      for (int64_t c = 0; c < k; ++c) {
        if (next_u32() % 3 != 0) continue;
        group_col.push_back(static_cast<int32_t>(c));
        for (int64_t r = 0; r < 16; ++r)
          group_w.push_back(g * 16 + r < n_rows && next_u32() % 8 != 0 ? next_float(2.0f) : 0.0f);
      }
      group_ptr.push_back(static_cast<int64_t>(group_col.size()));
    }
    pyquant::F32Tiles w;
    w.groups = groups;
    w.group_ptr = group_ptr.data();
    w.group_col = group_col.data();
    w.group_w = group_w.data();
    const int64_t m0 = 3, rows_out = m0 + 16;
    std::vector<float> bias(n_rows);
    for (auto& v : bias) v = next_float(10.0f);
    for (bool specials : {false, true}) {
      // specials: some inputs +-Inf (they must reach exactly the rows holding their column).
      std::vector<float> panel(k * 16);
      for (auto& v : panel)
        v = specials && next_u32() % 20 == 0
                ? (next_u32() % 2 ? 1.0f : -1.0f) * std::numeric_limits<float>::infinity()
                : next_float(2.0f);
      for (int64_t g0 : {int64_t{0}, groups - 1}) {
        for (int64_t valid : {16, 5}) {
          const float* no_bias = nullptr;
          for (const float* b : {no_bias, static_cast<const float*>(bias.data())}) {
            std::vector<float> ya(rows_out * n_rows, 7.0f), yb(ya);
            pyquant::ref::f32_spmm_tiles(&w, n_rows, g0, groups, panel.data(), m0, valid, b,
                                         ya.data());
            pyquant::avx512::f32_spmm_tiles(&w, n_rows, g0, groups, panel.data(), m0, valid, b,
                                            yb.data());
            bool same = true;
            for (size_t i = 0; i < ya.size(); ++i) {
              same &= ya[i] == yb[i] || (std::isnan(ya[i]) && std::isnan(yb[i])) ||
                      std::fabs(ya[i] - yb[i]) <= 1e-5f * (1.0f + std::fabs(ya[i]));
            }
            check(same, specials ? "f32_spmm_tiles avx512 specials" : "f32_spmm_tiles avx512",
                  rows_out * n_rows);
          }
        }
      }
    }
  }
}

// The AVX-512 and AVX2 fp32 tile epilogues against the scalar one: every panel width, valid columns
// below it, row ranges with 16-row tails and an offset start, with and without bias: exact.
void check_tile_transpose() {
  const int64_t n = 45, m0 = 2;
  std::vector<float> bias(n);
  for (auto& v : bias) v = static_cast<float>(static_cast<int32_t>(next_u32() % 2001) - 1000);
  for (int64_t width : {8, 16, 24, 32}) {
    std::vector<float> tile(n * width);
    for (auto& v : tile) v = static_cast<float>(static_cast<int32_t>(next_u32() % 2001) - 1000);
    for (int64_t valid : {width, width - 3}) {
      for (const auto& range : {std::pair<int64_t, int64_t>{0, n}, {5, 38}, {7, 9}}) {
        const float* no_bias = nullptr;
        for (const float* b : {no_bias, static_cast<const float*>(bias.data())}) {
          std::vector<float> ya((m0 + width) * n, 7.0f), yb(ya);
          pyquant::ref::f32_tile_transpose(tile.data(), width, valid, range.first, range.second,
                                           b, ya.data(), n, m0);
          std::vector<float> yc(ya);
          pyquant::avx512::f32_tile_transpose(tile.data(), width, valid, range.first,
                                              range.second, b, yb.data(), n, m0);
          pyquant::avx2::f32_tile_transpose(tile.data(), width, valid, range.first,
                                            range.second, b, yc.data(), n, m0);
          check(ya == yb, "f32_tile_transpose avx512", valid * (range.second - range.first));
          check(ya == yc, "f32_tile_transpose avx2", valid * (range.second - range.first));
        }
      }
    }
  }
}

// The AVX-512 int8 tile epilogue (int32 tile -> scaled fp32 + bias) against the scalar one:
// widths 1 (M = 1), 8, 16, 24 and 32, tails in rows and columns, with and without bias: exact
// (both round the scale products and the accumulator product before adding the bias).
void check_tile_dequantize() {
  const int64_t n = 45, m0 = 2;
  std::vector<float> x_scale(m0 + 32), w_scale(n), bias(n);
  for (auto& v : x_scale) v = 1e-3f * static_cast<float>(next_u32() % 1000 + 1);
  for (auto& v : w_scale) v = 1e-3f * static_cast<float>(next_u32() % 1000 + 1);
  for (auto& v : bias) v = static_cast<float>(static_cast<int32_t>(next_u32() % 2001) - 1000);
  for (int64_t width : {1, 8, 16, 24, 32}) {
    std::vector<int32_t> tile(n * width);
    for (auto& v : tile) v = static_cast<int32_t>(next_u32() % 2000001) - 1000000;
    for (int64_t valid : {width, width > 3 ? width - 3 : width}) {
      for (const auto& range : {std::pair<int64_t, int64_t>{0, n}, {5, 38}, {7, 9}}) {
        const float* no_bias = nullptr;
        for (const float* b : {no_bias, static_cast<const float*>(bias.data())}) {
          std::vector<float> ya((m0 + width) * n, 7.0f), yb(ya);
          pyquant::ref::qs32_f32_tile_transpose(tile.data(), width, valid, range.first,
                                                range.second, x_scale.data(), w_scale.data(), b,
                                                ya.data(), n, m0);
          pyquant::avx512::qs32_f32_tile_transpose(tile.data(), width, valid, range.first,
                                                   range.second, x_scale.data(), w_scale.data(),
                                                   b, yb.data(), n, m0);
          check(ya == yb, "qs32_f32_tile_transpose avx512",
                valid * (range.second - range.first));
        }
      }
    }
  }
}

// The AVX-512 and AVX2 fp32 panel packs against the scalar one: every width with valid
// columns below it, K ranges with 16- and 8-column tails and an offset start: exact.
void check_panel_pack() {
  const int64_t k = 77, m = 40;
  std::vector<float> x(m * k);
  for (auto& v : x) v = static_cast<float>(static_cast<int32_t>(next_u32() % 2001) - 1000);
  for (int64_t width : {8, 16, 24, 32}) {
    for (int64_t valid : {width, width - 3, int64_t{1}}) {
      for (const auto& range : {std::pair<int64_t, int64_t>{0, k}, {5, 70}, {9, 12}}) {
        std::vector<float> pa(k * width, 7.0f), pb(pa), pc(pa);
        pyquant::ref::f32_panel_pack(x.data(), k, 3, valid, width, range.first, range.second,
                                     pa.data());
        pyquant::avx512::f32_panel_pack(x.data(), k, 3, valid, width, range.first, range.second,
                                        pb.data());
        pyquant::avx2::f32_panel_pack(x.data(), k, 3, valid, width, range.first, range.second,
                                      pc.data());
        check(pa == pb, "f32_panel_pack avx512", width * (range.second - range.first));
        check(pa == pc, "f32_panel_pack avx2", width * (range.second - range.first));
      }
    }
  }
}

}  // namespace

// Families added later register their checks here.
int main() {
  check_quantize();
  check_dequantize();
  check_minmax();
  check_sparse();
  check_quads();
  check_quad_tiles();
  check_f32_tiles();
  check_tile_transpose();
  check_tile_dequantize();
  check_panel_pack();
  check_gemm();
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
