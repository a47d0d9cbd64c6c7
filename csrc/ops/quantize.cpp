#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <vector>

#include "pyquant/dispatch.h"
#include "pyquant/ops.h"
#include "pyquant/threadpool.h"

namespace pyquant {
namespace {

// Below this many elements per task a thread costs more than it saves.
constexpr int64_t kGrain = 64 * 1024;
// Task boundaries on whole cache lines of the int8 side.
constexpr int64_t kAlign = 64;

// One stretch of x that shares either one scale or a vector of per-element scales.
struct Segment {
  int64_t end;
  bool vec;
  int64_t scale_index;  // scalar: index of the scale; vec: index of the first element's scale
};

Segment segment_at(const QLayout& l, int64_t pos, int64_t end) {
  using Mode = QLayout::Mode;
  const int64_t C = l.channels, I = l.inner;
  switch (l.mode) {
    case Mode::per_tensor:
      return {end, false, 0};
    case Mode::per_axis:
      if (I > 1) {
        const int64_t row = pos / I;
        return {std::min(end, (row + 1) * I), false, row % C};
      } else {
        const int64_t row = pos / C;
        return {std::min(end, (row + 1) * C), true, pos - row * C};
      }
    case Mode::blocked: {
      const int64_t B = l.block_size, blocks = (C + B - 1) / B;
      if (I > 1) {
        const int64_t row = pos / I, o = row / C, c = row % C;
        return {std::min(end, (row + 1) * I), true, (o * blocks + c / B) * I + (pos - row * I)};
      } else {
        const int64_t row = pos / C, c = pos - row * C, blk = c / B;
        return {std::min(end, row * C + std::min(C, (blk + 1) * B)), false, row * blocks + blk};
      }
    }
  }
  return {end, false, 0};
}

template <typename Body>
void parallel_ranges(int64_t n, Body body) {
  const int64_t tasks = num_tasks_for(n, kGrain);
  if (tasks == 1) {
    body(int64_t{0}, n);
    return;
  }
  int64_t chunk = (n + tasks - 1) / tasks;
  chunk = (chunk + kAlign - 1) / kAlign * kAlign;
  ThreadPool::global().run(tasks, [&](int64_t t) {
    const int64_t begin = std::min(n, t * chunk), end = std::min(n, begin + chunk);
    if (begin < end) body(begin, end);
  });
}

}  // namespace

const char* status_message(Status s) {
  switch (s) {
    case Status::ok: return "ok";
    case Status::nan_in_input: return "contains NaN";
    case Status::inf_in_input: return "contains Inf";
    case Status::nonfinite_in_input: return "contains NaN or Inf";
    case Status::range_overflow: return "has a range (max - min) that overflows float32";
  }
  return "unknown error";
}

Status quantize(const float* x, void* y, QDtype dtype, const QLayout& l) {
  const Kernels& k = kernels();
  const QuantizeFn scalar_fn = dtype == QDtype::s8 ? k.f32_qs8_quantize : k.f32_qu8_quantize;
  const QuantizeVecFn vec_fn = dtype == QDtype::s8 ? k.f32_qs8_quantize_vec : k.f32_qu8_quantize_vec;
  std::atomic<bool> nan{false};
  parallel_ranges(l.numel(), [&](int64_t begin, int64_t end) {
    bool task_nan = false;
    auto* out = static_cast<int8_t*>(y);  // byte offsets: s8 and u8 are both one byte
    for (int64_t pos = begin; pos < end;) {
      const Segment s = segment_at(l, pos, end);
      if (s.vec) {
        task_nan |= vec_fn(x + pos, out + pos, s.end - pos, l.scale + s.scale_index,
                           l.zero_point ? l.zero_point + s.scale_index : nullptr);
      } else {
        task_nan |= scalar_fn(x + pos, out + pos, s.end - pos, l.scale[s.scale_index],
                              l.zero_point ? l.zero_point[s.scale_index] : 0);
      }
      pos = s.end;
    }
    if (task_nan) nan.store(true, std::memory_order_relaxed);
  });
  return nan.load() ? Status::nan_in_input : Status::ok;
}

void dequantize(const void* q, QDtype dtype, float* y, const QLayout& l) {
  const Kernels& k = kernels();
  const DequantizeFn scalar_fn = dtype == QDtype::s8 ? k.qs8_f32_dequantize : k.qu8_f32_dequantize;
  const DequantizeVecFn vec_fn =
      dtype == QDtype::s8 ? k.qs8_f32_dequantize_vec : k.qu8_f32_dequantize_vec;
  parallel_ranges(l.numel(), [&](int64_t begin, int64_t end) {
    const auto* in = static_cast<const int8_t*>(q);
    for (int64_t pos = begin; pos < end;) {
      const Segment s = segment_at(l, pos, end);
      if (s.vec) {
        vec_fn(in + pos, y + pos, s.end - pos, l.scale + s.scale_index,
               l.zero_point ? l.zero_point + s.scale_index : nullptr);
      } else {
        scalar_fn(in + pos, y + pos, s.end - pos, l.scale[s.scale_index],
                  l.zero_point ? l.zero_point[s.scale_index] : 0);
      }
      pos = s.end;
    }
  });
}

Status dynamic_qparams(float min, float max, QDtype dtype, float* scale, int32_t* zero_point) {
  if (std::isinf(min) || std::isinf(max)) return Status::inf_in_input;
  if (dtype == QDtype::u8) {
    // ONNX DynamicQuantizeLinear, in float32 like its reference.
    min = std::min(min, 0.0f);
    max = std::max(max, 0.0f);
    const float s = (max - min) / 255.0f;
    if (!std::isfinite(s)) return Status::range_overflow;
    if (s == 0.0f) {  // all zeros, or a range so small the scale underflows: 1 is as exact
      *scale = 1.0f;
      *zero_point = 0;
      return Status::ok;
    }
    float zp = 0.0f - min / s;
    zp = std::min(std::max(zp, 0.0f), 255.0f);
    *scale = s;
    *zero_point = static_cast<int32_t>(std::nearbyint(zp));
  } else {
    const float s = std::max(-min, max) / 127.0f;
    *scale = s == 0.0f ? 1.0f : s;  // as for u8: zero or underflowed range
    *zero_point = 0;
  }
  return Status::ok;
}

Status dynamic_quantize(const float* x, void* y, QDtype dtype, int64_t rows, int64_t cols,
                        float* scale, int32_t* zero_point) {
  const Kernels& k = kernels();
  auto* out = static_cast<int8_t*>(y);
  if (rows == 1) {
    // One range for the whole tensor: a read-only min/max pass, then the quantize pass.
    const int64_t n = cols;
    const int64_t tasks = num_tasks_for(n, kGrain);
    std::vector<float> mins(tasks, std::numeric_limits<float>::infinity());
    std::vector<float> maxs(tasks, -std::numeric_limits<float>::infinity());
    std::vector<char> nans(tasks, 0);
    const int64_t chunk = (n + tasks - 1) / tasks;
    ThreadPool::global().run(tasks, [&](int64_t t) {
      const int64_t begin = std::min(n, t * chunk), end = std::min(n, begin + chunk);
      if (begin < end) nans[t] = k.f32_minmax(x + begin, end - begin, &mins[t], &maxs[t]);
    });
    float mn = std::numeric_limits<float>::infinity(), mx = -mn;
    for (int64_t t = 0; t < tasks; ++t) {
      if (nans[t]) return Status::nan_in_input;
      mn = std::min(mn, mins[t]);
      mx = std::max(mx, maxs[t]);
    }
    if (n == 0) mn = mx = 0.0f;
    const Status st = dynamic_qparams(mn, mx, dtype, scale, zero_point);
    if (st != Status::ok) return st;
    QLayout l;
    l.channels = n;
    l.scale = scale;
    l.zero_point = zero_point;
    return quantize(x, y, dtype, l);
  }
  // Per row: find the range and quantize while the row is still in cache (one pass over memory).
  std::atomic<int> failure{static_cast<int>(Status::ok)};
  const int64_t rows_per_task = std::max<int64_t>(1, kGrain / std::max<int64_t>(cols, 1));
  const int64_t tasks = num_tasks_for(rows, rows_per_task);
  const int64_t chunk = (rows + tasks - 1) / tasks;
  ThreadPool::global().run(tasks, [&](int64_t t) {
    const int64_t r0 = std::min(rows, t * chunk), r1 = std::min(rows, r0 + chunk);
    for (int64_t r = r0; r < r1; ++r) {
      const Status st = dynamic_quantize_row(x + r * cols, cols, dtype, out + r * cols, &scale[r],
                                             &zero_point[r]);
      if (st != Status::ok) {
        failure.store(static_cast<int>(st));
        return;
      }
    }
  });
  return static_cast<Status>(failure.load());
}

Status dynamic_quantize_row(const float* row, int64_t cols, QDtype dtype, void* y, float* scale,
                            int32_t* zero_point) {
  const Kernels& k = kernels();
  float mn = 0.0f, mx = 0.0f;
  if (cols > 0 && k.f32_minmax(row, cols, &mn, &mx)) return Status::nan_in_input;
  const Status st = dynamic_qparams(mn, mx, dtype, scale, zero_point);
  if (st != Status::ok) return st;
  (dtype == QDtype::s8 ? k.f32_qs8_quantize : k.f32_qu8_quantize)(row, y, cols, *scale,
                                                                  *zero_point);
  return Status::ok;
}

}  // namespace pyquant
