// im2col for QuantConv2d: the convolution's input windows as the rows of the GEMM's A, in one
// native pass (F.unfold then a transposing copy took 29 of conv2's 66 us in the demo CNN at
// batch 1, 32 x 8 x 8 input).
//
// Two steps per image: copy it into a zero-padded NCHW buffer (from NCHW or channels-last
// memory; C * (H + 2ph) * (W + 2pw) floats, a fraction of the output), then write each output
// row from fixed tap offsets into that buffer, without a bounds check per element.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "pyquant/ops.h"
#include "pyquant/threadpool.h"

namespace pyquant {
namespace {

// Rows [r0, r1) of one image's cols from its padded copy xp [C][hp][wp].
template <int kTaps>  // kh * kw when known at compile time (3 x 3), else 0
void rows_from_padded(const float* xp, int64_t C, int64_t hp, int64_t wp, const Conv2dShape& s,
                      const int64_t* tap, int64_t taps, int64_t r0, int64_t r1, float* cols) {
  const int64_t n = kTaps > 0 ? kTaps : taps;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t oy = r / s.wo, ox = r % s.wo;
    const float* base = xp + oy * s.sh * wp + ox * s.sw;
    float* o = cols + r * C * n;
    for (int64_t c = 0; c < C; ++c, o += n) {
      const float* xc = base + c * hp * wp;
      for (int64_t t = 0; t < n; ++t) o[t] = xc[tap[t]];
    }
  }
}

}  // namespace

void im2col_f32(const float* x, bool nhwc, int64_t B, int64_t C, int64_t H, int64_t W,
                const Conv2dShape& s, float* cols) {
  const int64_t hp = H + 2 * s.ph, wp = W + 2 * s.pw, taps = s.kh * s.kw;
  std::vector<int64_t> tap(static_cast<size_t>(taps));
  for (int64_t ky = 0; ky < s.kh; ++ky)
    for (int64_t kx = 0; kx < s.kw; ++kx) tap[ky * s.kw + kx] = ky * s.dh * wp + kx * s.dw;
  const int64_t rows = s.ho * s.wo, K = C * taps;
  const int64_t tasks = std::max<int64_t>(
      1, std::min<int64_t>(num_tasks_for(B * rows * K, 1 << 16), B * rows));
  // The caller's buffer, grown and reused (a fresh one of more than 128 KB would page-fault on
  // every call); the workers only read and write through the pointer. Above kKeepFloats (an
  // input of more than 16 MB) it is freed after the call rather than held for good.
  constexpr size_t kKeepFloats = size_t{4} << 20;
  thread_local std::vector<float> scratch;
  const size_t need = static_cast<size_t>(B * C * hp * wp);
  if (scratch.size() < need) scratch.resize(need);
  float* padded = scratch.data();
  const int64_t image_tasks = std::min<int64_t>(tasks, B);
  ThreadPool::global().run(image_tasks, [&](int64_t t) {
    for (int64_t b = t; b < B; b += image_tasks) {
      const float* xb = x + b * C * H * W;
      for (int64_t c = 0; c < C; ++c) {
        float* pc = padded + (b * C + c) * hp * wp;
        const size_t pad_rows = static_cast<size_t>(s.ph * wp) * sizeof(float);
        std::memset(pc, 0, pad_rows);  // the border is rewritten: the last call's may differ
        std::memset(pc + (s.ph + H) * wp, 0, pad_rows);
        for (int64_t y = 0; y < H; ++y) {
          float* row = pc + (y + s.ph) * wp;
          std::fill(row, row + s.pw, 0.0f);
          std::fill(row + s.pw + W, row + wp, 0.0f);
          float* dst = row + s.pw;
          if (nhwc) {
            const float* src = xb + y * W * C + c;
            for (int64_t i = 0; i < W; ++i) dst[i] = src[i * C];
          } else {
            std::memcpy(dst, xb + (c * H + y) * W, static_cast<size_t>(W) * sizeof(float));
          }
        }
      }
    }
  });
  ThreadPool::global().run(tasks, [&](int64_t t) {
    const int64_t r0 = B * rows * t / tasks, r1 = B * rows * (t + 1) / tasks;
    for (int64_t b = r0 / rows; b * rows < r1; ++b) {
      const int64_t lo = std::max(r0, b * rows) - b * rows;
      const int64_t hi = std::min(r1, (b + 1) * rows) - b * rows;
      const float* pb = padded + b * C * hp * wp;
      float* cb = cols + b * rows * K;
      if (taps == 9)
        rows_from_padded<9>(pb, C, hp, wp, s, tap.data(), taps, lo, hi, cb);
      else
        rows_from_padded<0>(pb, C, hp, wp, s, tap.data(), taps, lo, hi, cb);
    }
  });
  if (scratch.size() > kKeepFloats) std::vector<float>().swap(scratch);
}

}  // namespace pyquant
