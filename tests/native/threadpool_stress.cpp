// Stress test of the thread pool and a threaded op, built with -fsanitize=thread by
// tests/test_threadpool_tsan.py: several caller threads run jobs at once while another
// thread resizes the pool. TSan reports any data race; the sums check that no task is lost
// or run twice. Prints "N passed, M failed".
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

#include "pyquant/ops.h"
#include "pyquant/threadpool.h"

int main() {
  using pyquant::ThreadPool;
  ThreadPool& pool = ThreadPool::global();
  pool.set_num_threads(3);
  std::atomic<int> failed{0}, passed{0};

  auto caller = [&](int id) {
    std::vector<float> x(300000);
    std::vector<int8_t> y(x.size()), expected(x.size());
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 7919 + id) % 1000) - 500.0f;
    for (size_t i = 0; i < x.size(); ++i) {
      const float v = x[i] / 4.0f;  // exact for these values; ties at .5 and .25 round to even
      float r = __builtin_rintf(v);
      r = r > 127.0f ? 127.0f : (r < -128.0f ? -128.0f : r);
      expected[i] = static_cast<int8_t>(r);
    }
    for (int round = 0; round < 40; ++round) {
      std::vector<std::atomic<int>> hits(1000);
      pool.run(1000, [&](int64_t t) { hits[t].fetch_add(1, std::memory_order_relaxed); });
      bool ok = true;
      for (auto& h : hits) ok &= h.load() == 1;
      float scale = 4.0f;
      int32_t zp = 0;
      pyquant::QLayout l;
      l.channels = static_cast<int64_t>(x.size());
      l.scale = &scale;
      l.zero_point = &zp;
      ok &= pyquant::quantize(x.data(), y.data(), pyquant::QDtype::s8, l) == pyquant::Status::ok;
      ok &= y == expected;
      (ok ? passed : failed).fetch_add(1);
    }
  };
  std::vector<std::thread> callers;
  for (int i = 0; i < 4; ++i) callers.emplace_back(caller, i);
  std::thread resizer([&] {
    for (int i = 0; i < 20; ++i) pool.set_num_threads(1 + i % 3);
  });
  for (auto& t : callers) t.join();
  resizer.join();
  std::printf("%d passed, %d failed\n", passed.load(), failed.load());
  return failed.load() ? 1 : 0;
}
