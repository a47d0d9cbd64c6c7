// A small persistent thread pool. Kernels never own threads: ops split their work into tasks
// and the pool runs them. We never link an OpenMP runtime (torch ships its own and two would
// fight), but when one is already loaded in the process the pool runs its tasks on that
// runtime's team (see threadpool.cpp; PYQUANT_THREADPOOL=own opts out).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pyquant {

class ThreadPool {
 public:
  static ThreadPool& global();

  ~ThreadPool();

  // Threads that work on a call, the caller included.
  int num_threads() const { return num_threads_.load(std::memory_order_relaxed); }
  // n >= 1. Waits for a running call to finish.
  void set_num_threads(int n);

  // Calls fn(task) for each task in [0, num_tasks) and returns when all are done. Runs them
  // on the calling thread alone if there is one task or one thread, when called from a pool
  // worker, or when another thread's call holds the pool (so concurrent callers never wait
  // on each other and never deadlock).
  void run(int64_t num_tasks, const std::function<void(int64_t)>& fn);

  // "own", the OpenMP library whose team runs the tasks ("libgomp.so.1", ...), or
  // "caller (forked child)" in a fork()ed child, where every call runs on the calling thread.
  const char* backend() const;
  // Borrow a loaded OpenMP runtime's team (the default) or always use our own workers.
  void set_use_openmp(bool use);

 private:
  ThreadPool();
  void start_workers(int n);
  void stop_workers();
  void worker_loop();
  void drain();

  std::atomic<int> num_threads_{1};
  std::atomic<bool> use_openmp_{true};
  std::atomic<bool> forked_child_{false};
  std::vector<std::thread> workers_;  // changed and read only under run_mu_
  std::mutex run_mu_;                 // one call at a time uses the workers

  std::mutex mu_;  // guards job publication and the open_/stop_ flags
  std::condition_variable work_cv_, done_cv_;
  std::atomic<uint64_t> generation_{0};
  bool open_ = false, stop_ = false;
  std::atomic<int> active_{0};  // workers inside the current job
  const std::function<void(int64_t)>* fn_ = nullptr;
  int64_t num_tasks_ = 0;
  std::atomic<int64_t> next_{0};
};

// How many tasks to split `work` units into, at least `grain` units each, at most one per thread.
int64_t num_tasks_for(int64_t work, int64_t grain);

}  // namespace pyquant
