// Radix select on |x| keys over many buffers, split across the thread pool (see ops.h).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
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

// The sampled path needs this many elements to pay off.
constexpr int64_t kSampleMin = int64_t{1} << 20;
constexpr int64_t kSampleBlocks = 256, kSampleBlock = 256;

// Largest key of rank r (1-based, from the top) among the keys in bufs[t][0, count[t]), by a
// radix select on the two key halves; ties[t] = how many keys in bufs[t] equal it.
uint32_t kth_largest_in(const std::vector<const uint32_t*>& bufs, const std::vector<int64_t>& count,
                        int64_t r, int64_t* above_out, std::vector<int64_t>* ties) {
  std::vector<int64_t> h(kAbsHistHiBins, 0);
  for (size_t t = 0; t < bufs.size(); ++t)
    for (int64_t i = 0; i < count[t]; ++i) ++h[bufs[t][i] >> 15];
  int64_t above = 0, hi = kAbsHistHiBins - 1;
  for (; hi > 0 && above + h[hi] < r; --hi) above += h[hi];
  std::vector<int64_t> l(kAbsHistLoBins, 0);
  for (size_t t = 0; t < bufs.size(); ++t)
    for (int64_t i = 0; i < count[t]; ++i)
      if ((bufs[t][i] >> 15) == static_cast<uint32_t>(hi)) ++l[bufs[t][i] & 0x7fffu];
  int64_t lo = kAbsHistLoBins - 1;
  for (; lo > 0 && above + l[lo] < r; --lo) above += l[lo];
  const uint32_t key = (static_cast<uint32_t>(hi) << 15) | static_cast<uint32_t>(lo);
  ties->assign(bufs.size(), 0);
  for (size_t t = 0; t < bufs.size(); ++t)
    for (int64_t i = 0; i < count[t]; ++i) (*ties)[t] += bufs[t][i] == key;
  *above_out = above;
  return key;
}

// One streaming pass instead of two, when a sample predicts the threshold well: a sample of
// blocks spread over x brackets the k-th largest key in [lo, hi] (a few standard deviations of
// the sample rank either side); the pass counts the keys above hi and collects the keys in
// [lo, hi] into per-task buffers of bounded size (n / 25 keys in all, 4% of x's bytes); the
// threshold is then selected among those few. Returns false, with nothing decided, when the
// bracket misses or a buffer overflows (skewed data, heavy ties): the caller falls back to the
// exact two-pass radix select. *nan is set if the pass saw a NaN (then nothing else matters).
bool select_sampled(const FloatBuffers& x, const Plan& p, int64_t k, uint32_t* key,
                    std::vector<int64_t>* task_ties, int64_t* above_key, bool* nan) {
  const int64_t n = p.n;
  std::vector<uint32_t> sample;
  sample.reserve(kSampleBlocks * kSampleBlock);
  size_t buf = 0;
  for (int64_t b = 0; b < kSampleBlocks; ++b) {
    const int64_t start = b * (n - kSampleBlock) / (kSampleBlocks - 1);
    for (int64_t g = start; g < start + kSampleBlock; ++g) {
      while (p.offset[buf + 1] <= g) ++buf;
      uint32_t bits;
      std::memcpy(&bits, x.data[buf] + (g - p.offset[buf]), sizeof bits);
      sample.push_back(bits & 0x7fffffffu);
    }
  }
  const int64_t s = static_cast<int64_t>(sample.size());
  const double q = static_cast<double>(k) / static_cast<double>(n);
  const double r = q * static_cast<double>(s);  // expected rank from the top in the sample
  const int64_t w = static_cast<int64_t>(std::ceil(5.0 * std::sqrt(s * q * (1.0 - q)))) + 16;
  // Sample ranks from the top r - w (-> hi) and r + w (-> lo), as ascending indices.
  const int64_t r_hi = static_cast<int64_t>(std::floor(r)) - w;
  const int64_t r_lo = static_cast<int64_t>(std::ceil(r)) + w;
  uint32_t lo = 0, hi = 0x7fffffffu;
  if (r_lo <= s) {
    auto it = sample.begin() + (s - r_lo);
    std::nth_element(sample.begin(), it, sample.end());
    lo = *it;
  }
  if (r_hi >= 1) {
    auto it = sample.begin() + (s - r_hi);
    std::nth_element(sample.begin(), it, sample.end());
    hi = *it;
  }
  if (lo > hi) return false;
  const int64_t T = p.tasks;
  const int64_t cap = std::max<int64_t>(4096, n / 25 / T);
  // Left uninitialized: only the pages candidates are written to get faulted in, so the
  // memory actually used follows the candidates found, not the cap.
  std::unique_ptr<uint32_t[]> cand(new uint32_t[static_cast<size_t>(cap * T)]);
  std::vector<int64_t> count(T, 0), above(T, 0);
  std::atomic<bool> any_nan{false};
  const Kernels& kern = kernels();
  p.run([&](int64_t t) {
    uint32_t* out = cand.get() + t * cap;
    int64_t c = 0, a = 0;
    bool task_nan = false;
    p.for_pieces(t, [&](size_t i, int64_t b, int64_t e) {
      const int64_t room = c < cap ? cap - c : 0;
      c += kern.f32_abs_bracket(x.data[i] + b, e - b, lo, hi, out + (cap - room), room, &a,
                                &task_nan);
    });
    count[t] = c;
    above[t] = a;
    if (task_nan) any_nan.store(true, std::memory_order_relaxed);
  });
  if (any_nan.load()) {
    *nan = true;
    return false;
  }
  int64_t total_above = 0, total_cand = 0;
  for (int64_t t = 0; t < T; ++t) {
    if (count[t] > cap) return false;
    total_above += above[t];
    total_cand += count[t];
  }
  if (total_above >= k || total_above + total_cand < k) return false;
  std::vector<const uint32_t*> bufs;
  for (int64_t t = 0; t < T; ++t) bufs.push_back(cand.get() + t * cap);
  int64_t above_in = 0;
  *key = kth_largest_in(bufs, count, k - total_above, &above_in, task_ties);
  *above_key = total_above + above_in;
  return true;
}

// Pass 1 and 2. k == 0 still runs pass 1 so that a NaN is reported whatever k is.
Status select(const FloatBuffers& x, const Plan& p, int64_t k, Selection* s) {
  const Kernels& kern = kernels();
  const int64_t T = p.tasks;
  s->quota.assign(T, 0);
  if (k > 0 && p.n >= kSampleMin) {
    std::vector<int64_t> ties;
    int64_t above = 0;
    bool nan = false;
    if (select_sampled(x, p, k, &s->key, &ties, &above, &nan)) {
      int64_t left = k - above;
      for (int64_t t = 0; t < T; ++t) {
        s->quota[t] = std::min(left, ties[t]);
        left -= s->quota[t];
      }
      return Status::ok;
    }
    if (nan) return Status::nonfinite_in_input;
  }
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
  if (nan.load()) return Status::nonfinite_in_input;
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
                        int64_t k, std::vector<int64_t>* kept) {
  FloatBuffers in;
  in.data.assign(x.begin(), x.end());
  in.size = size;
  const Plan p(size);
  Selection s;
  const Status st = select(in, p, k, &s);
  if (st != Status::ok) return st;
  const Kernels& kern = kernels();
  std::vector<std::atomic<int64_t>> counts(x.size());
  for (auto& c : counts) c.store(0);
  p.run([&](int64_t t) {
    int64_t ties = s.quota[t];
    p.for_pieces(t, [&](size_t i, int64_t b, int64_t e) {
      counts[i].fetch_add(kern.f32_abs_select_prune(x[i] + b, e - b, s.key, &ties),
                          std::memory_order_relaxed);
    });
  });
  if (kept) {
    kept->resize(x.size());
    for (size_t i = 0; i < x.size(); ++i) (*kept)[i] = counts[i].load();
  }
  return Status::ok;
}

}  // namespace pyquant
