// int8 GEMM ops: weight packing, the tile split over the pool, MatMulInteger and the fused
// quantized linear layer.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include <emmintrin.h>  // SSE2, part of the x86-64 baseline

#include "pyquant/dispatch.h"
#include "pyquant/memory.h"
#include "pyquant/ops.h"
#include "pyquant/threadpool.h"

namespace pyquant {
namespace {

// Multiply-accumulates per task below which a thread costs more than it saves (~10 us).
constexpr int64_t kGemmGrain = 256 * 1024;
constexpr int64_t kRowBlock = 24;  // a multiple of the SIMD kernels' tile heights (4, 6, 8)

// Reused across calls (one set per calling thread): the quantized activations and their
// per-row parameters. Steady-state forwards allocate nothing.
struct Scratch {
  std::vector<uint8_t, CacheAlignedAllocator<uint8_t>> q;
  std::vector<float> scale;
  std::vector<int32_t> zero_point;
  std::vector<int32_t> row_sum;
  std::vector<int32_t> b_zero_point;
};
Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// One 64-byte k-group of one panel: B(4g + j, 16p + c) at c * 4 + j, 0 outside K x N.
void pack_group_edge(const uint8_t* src, bool transposed, uint8_t flip, int64_t K, int64_t N,
                     int64_t ldb, int64_t p, int64_t g, int8_t* dst) {
  for (int64_t c = 0; c < kGemmNR; ++c)
    for (int64_t j = 0; j < kGemmKR; ++j) {
      const int64_t k = g * kGemmKR + j, n = p * kGemmNR + c;
      int8_t v = 0;
      // uint8 -> int8 by subtracting 128 (flip the top bit); int8 bytes as they are.
      if (k < K && n < N)
        v = static_cast<int8_t>((transposed ? src[n * ldb + k] : src[k * ldb + n]) ^ flip);
      dst[c * kGemmKR + j] = v;
    }
}

// Column sums of panels [p0, p1) from their packed bytes (SSE2: the x86-64 baseline).
void panel_col_sums(const int8_t* packed, int64_t Kp, int64_t p0, int64_t p1, int32_t* col_sum) {
  const __m128i ones = _mm_set1_epi16(1);
  for (int64_t p = p0; p < p1; ++p) {
    const int8_t* panel = packed + p * Kp * kGemmNR;
    // acc[2 * q + h]: int32 pair sums of columns 4q + 2h and 4q + 2h + 1.
    __m128i acc[8];
    for (auto& v : acc) v = _mm_setzero_si128();
    for (int64_t g = 0; g < Kp / kGemmKR; ++g)
      for (int q = 0; q < 4; ++q) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(panel + g * 64 + q * 16));
        const __m128i lo = _mm_srai_epi16(_mm_unpacklo_epi8(v, v), 8);  // bytes 0-7 as int16
        const __m128i hi = _mm_srai_epi16(_mm_unpackhi_epi8(v, v), 8);
        acc[2 * q] = _mm_add_epi32(acc[2 * q], _mm_madd_epi16(lo, ones));
        acc[2 * q + 1] = _mm_add_epi32(acc[2 * q + 1], _mm_madd_epi16(hi, ones));
      }
    for (int h = 0; h < 8; ++h) {
      alignas(16) int32_t lanes[4];
      _mm_store_si128(reinterpret_cast<__m128i*>(lanes), acc[h]);
      col_sum[p * kGemmNR + 2 * h] = lanes[0] + lanes[1];
      col_sum[p * kGemmNR + 2 * h + 1] = lanes[2] + lanes[3];
    }
  }
}

}  // namespace

void gemm_pack_b(const void* b, bool b_unsigned, bool transposed, int64_t K, int64_t N,
                 int64_t ldb, int8_t* packed, int32_t* col_sum) {
  const int64_t Kp = gemm_padded_k(K), Np = gemm_padded_n(N);
  const int64_t panels = Np / kGemmNR, groups = Kp / kGemmKR;
  const auto* src = static_cast<const uint8_t*>(b);
  const uint8_t flip = b_unsigned ? 0x80u : 0u;
  const __m128i flip16 = _mm_set1_epi8(static_cast<char>(flip));
  // int8_matmul packs its B on every call, so this runs at memory speed on every thread.
  const int64_t tasks = std::min(num_tasks_for(Kp * Np, 512 * 1024), std::max<int64_t>(panels, 1));
  ThreadPool::global().run(tasks, [&](int64_t t) {
    const int64_t p0 = panels * t / tasks, p1 = panels * (t + 1) / tasks;
    if (!transposed) {
      // Bands of 4 rows of B, read across; each 16 x 4 block becomes one group by byte
      // interleaving (rows 0,1 and 2,3 into pairs, pairs into quads).
      for (int64_t g = 0; g < groups; ++g)
        for (int64_t p = p0; p < p1; ++p) {
          int8_t* dst = packed + p * Kp * kGemmNR + g * kGemmNR * kGemmKR;
          if (g * kGemmKR + kGemmKR > K || p * kGemmNR + kGemmNR > N) {
            pack_group_edge(src, false, flip, K, N, ldb, p, g, dst);
            continue;
          }
          const uint8_t* r = src + g * kGemmKR * ldb + p * kGemmNR;
          auto row = [&](int64_t j) {
            return _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(r + j * ldb)),
                                 flip16);
          };
          const __m128i r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3);
          const __m128i p01l = _mm_unpacklo_epi8(r0, r1), p01h = _mm_unpackhi_epi8(r0, r1);
          const __m128i p23l = _mm_unpacklo_epi8(r2, r3), p23h = _mm_unpackhi_epi8(r2, r3);
          auto* d = reinterpret_cast<__m128i*>(dst);
          _mm_storeu_si128(d + 0, _mm_unpacklo_epi16(p01l, p23l));  // columns 0-3
          _mm_storeu_si128(d + 1, _mm_unpackhi_epi16(p01l, p23l));  // 4-7
          _mm_storeu_si128(d + 2, _mm_unpacklo_epi16(p01h, p23h));  // 8-11
          _mm_storeu_si128(d + 3, _mm_unpackhi_epi16(p01h, p23h));  // 12-15
        }
    } else {
      // B^T rows (weights [N, K]) are read along k; each column gives 4 bytes per group.
      for (int64_t p = p0; p < p1; ++p)
        for (int64_t g = 0; g < groups; ++g) {
          int8_t* dst = packed + p * Kp * kGemmNR + g * kGemmNR * kGemmKR;
          if (g * kGemmKR + kGemmKR > K || p * kGemmNR + kGemmNR > N) {
            pack_group_edge(src, true, flip, K, N, ldb, p, g, dst);
            continue;
          }
          for (int64_t c = 0; c < kGemmNR; ++c) {
            uint32_t quad;
            memcpy(&quad, src + (p * kGemmNR + c) * ldb + g * kGemmKR, sizeof(quad));
            quad ^= flip * 0x01010101u;
            memcpy(dst + c * kGemmKR, &quad, sizeof(quad));
          }
        }
    }
    panel_col_sums(packed, Kp, p0, p1, col_sum);
  });
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
    // Explicit SSE2, on the pool: GCC left the byte loop scalar (a uint8_t store may alias any
    // pointer held in memory); 4M bytes took 1.4 ms that way, 0.3 ms now.
    uint8_t* dst = s.q.data();
    const int64_t total = M * K;
    const int64_t tasks = num_tasks_for(total, 1 << 20);
    ThreadPool::global().run(tasks, [dst, src, total, tasks](int64_t t) {
      const int64_t i0 = total * t / tasks, i1 = total * (t + 1) / tasks;
      const __m128i top = _mm_set1_epi8(static_cast<char>(0x80));
      int64_t i = i0;
      for (; i + 16 <= i1; i += 16)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                         _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)), top));
      for (; i < i1; ++i) dst[i] = static_cast<uint8_t>(src[i] ^ 0x80u);
    });
    a_u8 = dst;
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
  // Activations that all fit 0..128 take the faster exact kernel (vpmaddubsw cannot saturate),
  // where this ISA has one.
  const Kernels& kt = kernels();
  GemmU8S8Fn fn = kt.qu8qs8_gemm;
  if (kt.qu7qs8_gemm != kt.qu8qs8_gemm) {
    uint8_t amax = 0;
    for (int64_t i = 0; i < M * K; ++i) amax = std::max(amax, a_u8[i]);
    if (amax <= 128) fn = kt.qu7qs8_gemm;
  }
  gemm_u8s8(g, M, N, fn);
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
      std::atomic<int> failure{static_cast<int>(Status::ok)};
      const int64_t tasks = num_tasks_for(M * Kt, 64 * 1024);
      ThreadPool::global().run(tasks, [&](int64_t t) {
        const int64_t r0 = M * t / tasks, r1 = M * (t + 1) / tasks;
        for (int64_t r = r0; r < r1; ++r) {
          const Status rs = quantize_row7(x + r * Kt, Kt, s.q.data() + r * Kt, &s.scale[r],
                                          &s.zero_point[r]);
          if (rs != Status::ok) {
            failure.store(static_cast<int>(rs));
            return;
          }
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
  quant_gemm_rows(s.q.data(), s.scale.data(), s.zero_point.data(), M, K, N, groups,
                  mode == ActQuant::dynamic_per_row7, packed, col_sum, w_scale, bias, out);
  return Status::ok;
}

Status quantize_row7(const float* row, int64_t n, uint8_t* q, float* scale, int32_t* zero_point) {
  // Per-row asymmetric over 0..127 (7 bits). Rounding can reach 128 at most, which the 7-bit
  // kernels still handle exactly; the clamp makes the precondition unconditional.
  const Kernels& k = kernels();
  float mn = 0.0f, mx = 0.0f;
  if (n > 0 && k.f32_minmax(row, n, &mn, &mx)) return Status::nan_in_input;
  if (std::isinf(mn) || std::isinf(mx)) return Status::inf_in_input;
  mn = std::min(mn, 0.0f);
  mx = std::max(mx, 0.0f);
  float sc = (mx - mn) / 127.0f;
  int32_t zp = 0;
  if (sc == 0.0f) {
    sc = 1.0f;
  } else if (!std::isfinite(sc)) {
    return Status::range_overflow;
  } else {
    zp = static_cast<int32_t>(std::nearbyint(std::min(std::max(0.0f - mn / sc, 0.0f), 127.0f)));
  }
  *scale = sc;
  *zero_point = zp;
  k.f32_qu8_quantize(row, q, n, sc, zp);
  for (int64_t i = 0; i < n; ++i) q[i] = q[i] > 128 ? 128 : q[i];
  return Status::ok;
}

void quant_gemm_rows(const uint8_t* q, const float* scale, const int32_t* zero_point, int64_t M,
                     int64_t K, int64_t N, int64_t groups, bool seven_bit, const int8_t* packed,
                     const int32_t* col_sum, const float* w_scale, const float* bias,
                     float* out) {
  const int64_t Kt = K * groups;
  const int64_t Np = gemm_padded_n(N), Kp = gemm_padded_k(K);
  for (int64_t gi = 0; gi < groups; ++gi) {
    GemmArgs g;
    g.a = q + gi * K;
    g.lda = Kt;
    g.b = packed + gi * Np * Kp;
    g.K = K;
    g.Kp = Kp;
    g.c_f32 = out + gi * N;
    g.ldc = N * groups;
    g.a_zero_point = zero_point;
    g.col_sum = col_sum + gi * Np;
    g.a_scale = scale;
    g.b_scale = w_scale + gi * Np;
    g.bias = bias ? bias + gi * Np : nullptr;
    gemm_u8s8(g, M, N, seven_bit ? kernels().qu7qs8_gemm : kernels().qu8qs8_gemm);
  }
}

}  // namespace pyquant
