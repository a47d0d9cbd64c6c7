// int8 GEMM ops: weight packing, the tile split over the pool, MatMulInteger and the fused
// quantized linear layer.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "pyquant/dispatch.h"
#include "pyquant/ops.h"
#include "pyquant/threadpool.h"

namespace pyquant {
namespace {

// Multiply-accumulates per task below which a thread costs more than it saves (~10 us).
constexpr int64_t kGemmGrain = 256 * 1024;
constexpr int64_t kRowBlock = 12;  // a multiple of the SIMD kernels' tile heights (4, 6)

// Reused across calls (one set per calling thread): the quantized activations and their
// per-row parameters. Steady-state forwards allocate nothing.
struct Scratch {
  std::vector<uint8_t> q;
  std::vector<float> scale;
  std::vector<int32_t> zero_point;
  std::vector<int32_t> row_sum;
  std::vector<int32_t> b_zero_point;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

}  // namespace

void gemm_pack_b(const void* b, bool b_unsigned, bool transposed, int64_t K, int64_t N,
                 int64_t ldb, int8_t* packed, int32_t* col_sum) {
  const int64_t Kp = gemm_padded_k(K), Np = gemm_padded_n(N);
  const auto* src = static_cast<const uint8_t*>(b);
  const int64_t panels = Np / kGemmNR;
  for (int64_t p = 0; p < panels; ++p) {
    int8_t* panel = packed + p * Kp * kGemmNR;
    for (int64_t c = 0; c < kGemmNR; ++c) {
      const int64_t n = p * kGemmNR + c;
      int32_t sum = 0;
      for (int64_t k = 0; k < Kp; ++k) {
        int8_t v = 0;
        if (n < N && k < K) {
          const uint8_t raw = transposed ? src[n * ldb + k] : src[k * ldb + n];
          // uint8 -> int8 by subtracting 128 (flip the top bit); int8 bytes as they are.
          v = static_cast<int8_t>(b_unsigned ? static_cast<uint8_t>(raw ^ 0x80u) : raw);
        }
        panel[(k / kGemmKR) * (kGemmNR * kGemmKR) + c * kGemmKR + k % kGemmKR] = v;
        sum += v;
      }
      col_sum[n] = sum;
    }
  }
}

void gemm_u8s8(const GemmArgs& g, int64_t M, int64_t N) { gemm_u8s8(g, M, N, kernels().qu8qs8_gemm); }

void gemm_u8s8(const GemmArgs& g, int64_t M, int64_t N, GemmU8S8Fn fn) {
  if (M <= 0 || N <= 0) return;
  const int64_t tasks = num_tasks_for(M * N * std::max<int64_t>(g.K, 1), kGemmGrain);
  if (tasks == 1) {
    fn(g, 0, M, 0, N);
    return;
  }
  const int64_t panels = gemm_padded_n(N) / kGemmNR;
  const int64_t row_blocks = (M + kRowBlock - 1) / kRowBlock;
  if (panels >= 2 * tasks || row_blocks < tasks) {
    // Columns: every thread reads only its own panels of B (what matters when M is small).
    ThreadPool::global().run(tasks, [&](int64_t t) {
      const int64_t p0 = panels * t / tasks, p1 = panels * (t + 1) / tasks;
      const int64_t n1 = std::min(N, p1 * kGemmNR);
      if (p0 * kGemmNR < n1) fn(g, 0, M, p0 * kGemmNR, n1);
    });
  } else {
    ThreadPool::global().run(tasks, [&](int64_t t) {
      const int64_t b0 = row_blocks * t / tasks, b1 = row_blocks * (t + 1) / tasks;
      const int64_t m0 = b0 * kRowBlock, m1 = std::min(M, b1 * kRowBlock);
      if (m0 < m1) fn(g, m0, m1, 0, N);
    });
  }
}

void int8_matmul(const void* a, bool a_signed, int64_t M, int64_t K, int32_t a_zero_point,
                 const int8_t* packed, const int32_t* col_sum, bool b_unsigned,
                 const int32_t* b_zero_point, int64_t N, int32_t* out) {
  if (M <= 0 || N <= 0) return;
  Scratch& s = scratch();
  const auto* a_u8 = static_cast<const uint8_t*>(a);
  int32_t za = a_zero_point;
  if (a_signed) {
    // int8 -> uint8 by adding 128 (flip the top bit); the zero point moves with the data.
    s.q.resize(static_cast<size_t>(M * K));
    const auto* src = static_cast<const uint8_t*>(a);
    for (int64_t i = 0; i < M * K; ++i) s.q[i] = static_cast<uint8_t>(src[i] ^ 0x80u);
    a_u8 = s.q.data();
    za += 128;
  }
  // The kernels see int8 B; a uint8 B was shifted by -128 when packed, so its zero point is too.
  const int64_t Np = gemm_padded_n(N);
  bool any_zb = false;
  s.b_zero_point.assign(static_cast<size_t>(Np), 0);
  for (int64_t n = 0; n < N; ++n) {
    const int32_t z = (b_zero_point ? b_zero_point[n] : 0) - (b_unsigned ? 128 : 0);
    s.b_zero_point[n] = z;
    any_zb |= z != 0;
  }
  if (any_zb) {
    s.row_sum.resize(static_cast<size_t>(M));
    for (int64_t i = 0; i < M; ++i) {
      int32_t sum = 0;
      for (int64_t k = 0; k < K; ++k) sum += a_u8[i * K + k];
      s.row_sum[i] = sum;
    }
  }
  s.zero_point.assign(static_cast<size_t>(M), za);
  GemmArgs g;
  g.a = a_u8;
  g.lda = K;
  g.b = packed;
  g.K = K;
  g.Kp = gemm_padded_k(K);
  g.c_i32 = out;
  g.ldc = N;
  g.a_zero_point = za ? s.zero_point.data() : nullptr;
  g.col_sum = col_sum;
  g.b_zero_point = any_zb ? s.b_zero_point.data() : nullptr;
  g.row_sum = any_zb ? s.row_sum.data() : nullptr;
  // Activations that all fit 0..128 take the faster exact kernel (vpmaddubsw cannot saturate).
  uint8_t amax = 0;
  for (int64_t i = 0; i < M * K; ++i) amax = std::max(amax, a_u8[i]);
  gemm_u8s8(g, M, N, amax <= 128 ? kernels().qu7qs8_gemm : kernels().qu8qs8_gemm);
}

Status quant_linear(const float* x, int64_t M, int64_t K, int64_t N, int64_t groups,
                    ActQuant mode, float static_scale, int32_t static_zero_point,
                    const int8_t* packed, const int32_t* col_sum, const float* w_scale,
                    const float* bias, float* out) {
  if (M <= 0 || N <= 0 || groups <= 0) return Status::ok;
  Scratch& s = scratch();
  const int64_t Kt = K * groups;
  if (s.q.size() < static_cast<size_t>(M * Kt)) s.q.resize(static_cast<size_t>(M * Kt));
  if (s.scale.size() < static_cast<size_t>(M)) {
    s.scale.resize(static_cast<size_t>(M));
    s.zero_point.resize(static_cast<size_t>(M));
  }
  Status st = Status::ok;
  switch (mode) {
    case ActQuant::dynamic_per_row:
      st = dynamic_quantize(x, s.q.data(), QDtype::u8, M, Kt, s.scale.data(), s.zero_point.data());
      break;
    case ActQuant::dynamic_per_tensor:
      st = dynamic_quantize(x, s.q.data(), QDtype::u8, 1, M * Kt, s.scale.data(),
                            s.zero_point.data());
      std::fill(s.scale.begin() + 1, s.scale.begin() + M, s.scale[0]);
      std::fill(s.zero_point.begin() + 1, s.zero_point.begin() + M, s.zero_point[0]);
      break;
    case ActQuant::dynamic_per_row7: {
      // Per-row asymmetric over 0..127 (7 bits). Rounding can reach 128 at most, which the
      // 7-bit kernels still handle exactly; the clamp makes the precondition unconditional.
      const Kernels& k = kernels();
      std::atomic<int> failure{static_cast<int>(Status::ok)};
      const int64_t tasks = num_tasks_for(M * Kt, 64 * 1024);
      ThreadPool::global().run(tasks, [&](int64_t t) {
        const int64_t r0 = M * t / tasks, r1 = M * (t + 1) / tasks;
        for (int64_t r = r0; r < r1; ++r) {
          const float* row = x + r * Kt;
          float mn = 0.0f, mx = 0.0f;
          if (Kt > 0 && k.f32_minmax(row, Kt, &mn, &mx)) {
            failure.store(static_cast<int>(Status::nan_in_input));
            return;
          }
          if (std::isinf(mn) || std::isinf(mx)) {
            failure.store(static_cast<int>(Status::inf_in_input));
            return;
          }
          mn = std::min(mn, 0.0f);
          mx = std::max(mx, 0.0f);
          float sc = (mx - mn) / 127.0f;
          int32_t zp = 0;
          if (sc == 0.0f) {
            sc = 1.0f;
          } else if (!std::isfinite(sc)) {
            failure.store(static_cast<int>(Status::range_overflow));
            return;
          } else {
            zp = static_cast<int32_t>(std::nearbyint(std::min(std::max(0.0f - mn / sc, 0.0f), 127.0f)));
          }
          s.scale[r] = sc;
          s.zero_point[r] = zp;
          uint8_t* q = s.q.data() + r * Kt;
          k.f32_qu8_quantize(row, q, Kt, sc, zp);
          for (int64_t i = 0; i < Kt; ++i) q[i] = q[i] > 128 ? 128 : q[i];
        }
      });
      st = static_cast<Status>(failure.load());
      break;
    }
    case ActQuant::static_per_tensor: {
      QLayout l;
      l.channels = M * Kt;
      l.scale = &static_scale;
      l.zero_point = &static_zero_point;
      st = quantize(x, s.q.data(), QDtype::u8, l);
      std::fill(s.scale.begin(), s.scale.begin() + M, static_scale);
      std::fill(s.zero_point.begin(), s.zero_point.begin() + M, static_zero_point);
      break;
    }
  }
  if (st != Status::ok) return st;
  const int64_t Np = gemm_padded_n(N), Kp = gemm_padded_k(K);
  for (int64_t gi = 0; gi < groups; ++gi) {
    GemmArgs g;
    g.a = s.q.data() + gi * K;
    g.lda = Kt;
    g.b = packed + gi * Np * Kp;
    g.K = K;
    g.Kp = Kp;
    g.c_f32 = out + gi * N;
    g.ldc = N * groups;
    g.a_zero_point = s.zero_point.data();
    g.col_sum = col_sum + gi * Np;
    g.a_scale = s.scale.data();
    g.b_scale = w_scale + gi * Np;
    g.bias = bias ? bias + gi * Np : nullptr;
    gemm_u8s8(g, M, N, mode == ActQuant::dynamic_per_row7 ? kernels().qu7qs8_gemm
                                                         : kernels().qu8qs8_gemm);
  }
  return Status::ok;
}

}  // namespace pyquant
