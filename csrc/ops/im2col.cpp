// im2col for QuantConv2d: the convolution's input windows as the rows of the GEMM's A, in one
// native pass (F.unfold then a transposing copy took 29 of conv2's 66 us in the demo CNN at
// batch 1, 32 x 8 x 8 input).
//
// Two steps: copy the input into a zero-padded NCHW buffer (from NCHW or channels-last memory;
// C * (H + 2ph) * (W + 2pw) floats per image, a fraction of the output), then build each output
// row from fixed tap offsets into that buffer, without a bounds check per element.
// quant_conv2d quantizes each row while it is in cache instead of writing the float matrix
// (kh * kw times the input: 302 MB for 8 x 64 x 128 x 128 and 3 x 3).
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "pyquant/ops.h"
#include "pyquant/threadpool.h"

namespace pyquant {
namespace {

// Buffers of the calling thread, grown and kept, as quant_linear keeps its quantized rows:
// freeing them made every large call fault its pages in again (8 x 64 x 128 x 128, 3 x 3:
// the 75 MB of rows and 33 MB of padded input, ~6% of the call in page faults). The workers
// only read and write through their pointers.
template <typename T>
T* grown(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// The zero-padded NCHW copy of x and the taps' offsets into it.
struct Padded {
  const float* data;
  int64_t C, hp, wp, rows_per_image, taps;
  std::vector<int64_t> tap;
  Conv2dShape s;

  // Output row r (image r / rows_per_image) into o [C * taps].
  void row(int64_t r, float* o) const {
    if (taps == 9) fill<9>(r, o);  // 3 x 3: the tap loop unrolled
    else fill<0>(r, o);
  }

 private:
  template <int kTaps>  // taps when known at compile time, else 0
  void fill(int64_t r, float* o) const {
    const int64_t n = kTaps > 0 ? kTaps : taps;
    const int64_t b = r / rows_per_image, rr = r % rows_per_image;
    const int64_t oy = rr / s.wo, ox = rr % s.wo;
    const float* base = data + b * C * hp * wp + oy * s.sh * wp + ox * s.sw;
    const int64_t* t = tap.data();
    for (int64_t c = 0; c < C; ++c, o += n) {
      const float* xc = base + c * hp * wp;
      for (int64_t i = 0; i < n; ++i) o[i] = xc[t[i]];
    }
  }
};

thread_local std::vector<float> tl_padded;

Padded pad(const float* x, bool nhwc, int64_t B, int64_t C, int64_t H, int64_t W,
           const Conv2dShape& s, int64_t tasks) {
  Padded p;
  p.C = C;
  p.hp = H + 2 * s.ph;
  p.wp = W + 2 * s.pw;
  p.rows_per_image = s.ho * s.wo;
  p.taps = s.kh * s.kw;
  p.s = s;
  p.tap.resize(static_cast<size_t>(p.taps));
  for (int64_t ky = 0; ky < s.kh; ++ky)
    for (int64_t kx = 0; kx < s.kw; ++kx) p.tap[ky * s.kw + kx] = ky * s.dh * p.wp + kx * s.dw;
  const int64_t hp = p.hp, wp = p.wp;
  float* padded = grown(tl_padded, static_cast<size_t>(B * C * hp * wp));
  p.data = padded;
  const int64_t image_tasks = std::min<int64_t>(tasks, B);
  ThreadPool::global().run(image_tasks, [&](int64_t t) {
    for (int64_t b = t; b < B; b += image_tasks) {
      const float* xb = x + b * C * H * W;
      float* pb = padded + b * C * hp * wp;
      for (int64_t c = 0; c < C; ++c) {
        float* pc = pb + c * hp * wp;
        const size_t pad_rows = static_cast<size_t>(s.ph * wp) * sizeof(float);
        std::memset(pc, 0, pad_rows);  // the border is rewritten: the last call's may differ
        std::memset(pc + (s.ph + H) * wp, 0, pad_rows);
        for (int64_t y = 0; y < H; ++y) {
          float* row = pc + (y + s.ph) * wp;
          std::fill(row, row + s.pw, 0.0f);
          std::fill(row + s.pw + W, row + wp, 0.0f);
          if (!nhwc)
            std::memcpy(row + s.pw, xb + (c * H + y) * W, static_cast<size_t>(W) * sizeof(float));
        }
      }
      // Channels-last: pixel by pixel, reading each pixel's C channels in order; the C rows
      // written stay in L1 across a row of pixels (reading one channel at a time, stride C,
      // took ~6 ns an element at 64 x 128 x 128).
      if (nhwc)
        for (int64_t y = 0; y < H; ++y)
          for (int64_t i = 0; i < W; ++i) {
            const float* src = xb + (y * W + i) * C;
            float* dst = pb + (y + s.ph) * wp + s.pw + i;
            for (int64_t c = 0; c < C; ++c) dst[c * hp * wp] = src[c];
          }
    }
  });
  return p;
}

int64_t row_tasks(int64_t rows, int64_t K) {
  return std::max<int64_t>(1, std::min<int64_t>(num_tasks_for(rows * K, 1 << 16), rows));
}

}  // namespace

void im2col_f32(const float* x, bool nhwc, int64_t B, int64_t C, int64_t H, int64_t W,
                const Conv2dShape& s, float* cols) {
  const int64_t rows = B * s.ho * s.wo, K = C * s.kh * s.kw;
  const int64_t tasks = row_tasks(rows, K);
  const Padded p = pad(x, nhwc, B, C, H, W, s, tasks);
  ThreadPool::global().run(tasks, [&](int64_t t) {
    const int64_t r0 = rows * t / tasks, r1 = rows * (t + 1) / tasks;
    for (int64_t r = r0; r < r1; ++r) p.row(r, cols + r * K);
  });
}

Status quant_conv2d(const float* x, bool nhwc, int64_t B, int64_t C, int64_t H, int64_t W,
                    const Conv2dShape& s, int64_t N, int64_t groups, ActQuant mode,
                    const int8_t* packed, const int32_t* col_sum, const float* w_scale,
                    const float* bias, float* out) {
  const int64_t M = B * s.ho * s.wo, Kt = C * s.kh * s.kw;
  if (M <= 0 || N <= 0) return Status::ok;
  thread_local std::vector<uint8_t> tl_q;
  thread_local std::vector<float> tl_scale;
  thread_local std::vector<int32_t> tl_zp;
  uint8_t* q = grown(tl_q, static_cast<size_t>(M * Kt));
  float* scale = grown(tl_scale, static_cast<size_t>(M));
  int32_t* zp = grown(tl_zp, static_cast<size_t>(M));
  const int64_t tasks = row_tasks(M, Kt);
  const Padded p = pad(x, nhwc, B, C, H, W, s, tasks);
  std::atomic<int> failure{static_cast<int>(Status::ok)};
  const bool seven = mode == ActQuant::dynamic_per_row7;
  ThreadPool::global().run(tasks, [&](int64_t t) {
    thread_local std::vector<float> tl_row;
    float* buf = grown(tl_row, static_cast<size_t>(Kt));
    const int64_t r0 = M * t / tasks, r1 = M * (t + 1) / tasks;
    for (int64_t r = r0; r < r1; ++r) {
      p.row(r, buf);
      const Status st = seven ? quantize_row7(buf, Kt, q + r * Kt, &scale[r], &zp[r])
                              : dynamic_quantize_row(buf, Kt, QDtype::u8, q + r * Kt, &scale[r],
                                                     &zp[r]);
      if (st != Status::ok) {
        failure.store(static_cast<int>(st));
        return;
      }
    }
  });
  const Status st = static_cast<Status>(failure.load());
  if (st == Status::ok)
    quant_gemm_rows(q, scale, zp, M, Kt / groups, N, groups, seven, packed, col_sum, w_scale,
                    bias, out);
  return st;
}

}  // namespace pyquant
