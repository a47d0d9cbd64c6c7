// Radix select on |x| keys over many buffers, split across the thread pool (see ops.h).
#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "pyquant/dispatch.h"
#include "pyquant/ops.h"
#include "pyquant/threadpool.h"

namespace pyquant {
namespace {

// Each task zeroes and merges a 256 KB histogram: below this many elements one task is cheaper.
constexpr int64_t kGrain = 256 * 1024;
// Histogram bins are uint32: a task never sees 2^31 elements or more.
constexpr int64_t kMaxTask = int64_t{1} << 30;

// The work split shared by every pass, so per-task tie counts of pass 2 line up with pass 3.
struct Plan {
  std::vector<int64_t> offset;  // offset[i] = flat index of buffer i's first element; back() = n
  int64_t n = 0, tasks = 1, chunk = 0;

  explicit Plan(const std::vector<int64_t>& size) {
    offset.resize(size.size() + 1, 0);
    for (size_t i = 0; i < size.size(); ++i) offset[i + 1] = offset[i] + size[i];
    n = offset.back();
    tasks = std::max(num_tasks_for(n, kGrain), (n + kMaxTask - 1) / kMaxTask);
    if (tasks < 1) tasks = 1;
    chunk = (n + tasks - 1) / tasks;
    chunk = (chunk + 15) / 16 * 16;  // whole vectors for every task but the last
  }

  // fn(buffer, begin, end) for each piece of the flat range of task t, in index order.
  template <typename Fn>
  void for_pieces(int64_t t, Fn fn) const {
    const int64_t b = std::min(n, t * chunk), e = std::min(n, b + chunk);
    if (b >= e) return;
    size_t i = std::upper_bound(offset.begin(), offset.end(), b) - offset.begin() - 1;
    for (int64_t pos = b; pos < e; ++i) {
      const int64_t end = std::min(e, offset[i + 1]);
      if (end > pos) fn(i, pos - offset[i], end - offset[i]);
      pos = std::max(pos, end);
    }
  }

  template <typename Fn>
  void run(Fn fn) const {
    if (tasks == 1) {
      fn(int64_t{0});
      return;
    }
    ThreadPool::global().run(tasks, [&](int64_t t) { fn(t); });
  }
};

struct Selection {
  uint32_t key = 0x7fffffffu;      // keep keys above this, plus quota[t] ties in task t
  std::vector<int64_t> quota;      // per task
};

// Pass 1 and 2. k == 0 still runs pass 1 so that a NaN is reported whatever k is.
Status select(const FloatBuffers& x, const Plan& p, int64_t k, Selection* s) {
  const Kernels& kern = kernels();
  const int64_t T = p.tasks;
  s->quota.assign(T, 0);
  std::vector<uint32_t> hist(static_cast<size_t>(T) * kAbsHistHiBins, 0);
  std::atomic<bool> nan{false};
  p.run([&](int64_t t) {
    uint32_t* h = hist.data() + t * kAbsHistHiBins;
    bool task_nan = false;
    p.for_pieces(t, [&](size_t i, int64_t b, int64_t e) {
      task_nan |= kern.f32_abs_histogram_hi(x.data[i] + b, e - b, h);
    });
    if (task_nan) nan.store(true, std::memory_order_relaxed);
  });
  if (nan.load()) return Status::nan_in_input;
  if (k == 0) {
    s->key = 0x7fffffffu;  // above every non-NaN key, no ties kept
    return Status::ok;
  }
  // The top bucket holding the k-th largest key, counting down from the largest keys.
  int64_t above = 0, hi = kAbsHistHiBins - 1;
  for (;; --hi) {
    int64_t c = 0;
    for (int64_t t = 0; t < T; ++t) c += hist[t * kAbsHistHiBins + hi];
    if (above + c >= k || hi == 0) break;
    above += c;
  }
  std::vector<uint32_t> lo(static_cast<size_t>(T) * kAbsHistLoBins, 0);
  p.run([&](int64_t t) {
    uint32_t* h = lo.data() + t * kAbsHistLoBins;
    p.for_pieces(t, [&](size_t i, int64_t b, int64_t e) {
      kern.f32_abs_histogram_lo(x.data[i] + b, e - b, static_cast<uint32_t>(hi), h);
    });
  });
  int64_t low = kAbsHistLoBins - 1;
  for (;; --low) {
    int64_t c = 0;
    for (int64_t t = 0; t < T; ++t) c += lo[t * kAbsHistLoBins + low];
    if (above + c >= k || low == 0) break;
    above += c;
  }
  s->key = (static_cast<uint32_t>(hi) << 15) | static_cast<uint32_t>(low);
  // Ties at the threshold are kept in flat index order: tasks are consecutive ranges, so
  // hand out the quota task by task.
  int64_t left = k - above;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t c = lo[t * kAbsHistLoBins + low];
    s->quota[t] = std::min(left, c);
    left -= s->quota[t];
  }
  return Status::ok;
}

}  // namespace

Status abs_topk_key(const FloatBuffers& x, int64_t k, uint32_t* key) {
  const Plan p(x.size);
  Selection s;
  const Status st = select(x, p, k, &s);
  *key = s.key;
  return st;
}

Status abs_select_mask(const FloatBuffers& x, int64_t k, const std::vector<uint8_t*>& masks) {
  const Plan p(x.size);
  Selection s;
  const Status st = select(x, p, k, &s);
  if (st != Status::ok) return st;
  const Kernels& kern = kernels();
  p.run([&](int64_t t) {
    int64_t ties = s.quota[t];
    p.for_pieces(t, [&](size_t i, int64_t b, int64_t e) {
      kern.f32_abs_select_mask(x.data[i] + b, e - b, s.key, &ties, masks[i] + b);
    });
  });
  return Status::ok;
}

Status abs_select_prune(const std::vector<float*>& x, const std::vector<int64_t>& size,
                        int64_t k) {
  FloatBuffers in;
  in.data.assign(x.begin(), x.end());
  in.size = size;
  const Plan p(size);
  Selection s;
  const Status st = select(in, p, k, &s);
  if (st != Status::ok) return st;
  const Kernels& kern = kernels();
  p.run([&](int64_t t) {
    int64_t ties = s.quota[t];
    p.for_pieces(t, [&](size_t i, int64_t b, int64_t e) {
      kern.f32_abs_select_prune(x[i] + b, e - b, s.key, &ties);
    });
  });
  return Status::ok;
}

}  // namespace pyquant
