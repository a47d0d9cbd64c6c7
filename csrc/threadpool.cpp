#include "pyquant/threadpool.h"

#include <dlfcn.h>
#include <immintrin.h>
#include <pthread.h>

#include <cstdlib>
#include <cstring>

namespace pyquant {
namespace {

thread_local bool in_pool_worker = false;
// Workers spin this many pause loops (~tens of microseconds) before sleeping, so the
// back-to-back calls of a model's layers do not pay a futex wake-up each.
constexpr int kSpinIterations = 20000;

// torch runs its own ops on an OpenMP team whose workers spin for a while after each op. Our
// own workers would then fight them for the same cores (measured: a 2-thread encoder 2.3x
// slower). When the process already has an OpenMP runtime loaded (torch's libgomp), we run
// our tasks on that team instead: its spinning workers pick our tasks up at once. We only
// look the runtime up (RTLD_NOLOAD), never load or link one, so without torch nothing changes.
// GOMP_parallel is the GNU ABI entry for `#pragma omp parallel`; LLVM and Intel runtimes
// export it too.
using GompParallelFn = void (*)(void (*)(void*), void*, unsigned, unsigned);

struct OmpRuntime {
  GompParallelFn parallel = nullptr;
  const char* library = nullptr;
};

OmpRuntime find_loaded_omp_runtime() {
  OmpRuntime rt;
  for (const char* name : {"libgomp.so.1", "libomp.so", "libiomp5.so"}) {
    void* handle = dlopen(name, RTLD_LAZY | RTLD_NOLOAD);
    if (handle == nullptr) continue;
    rt.parallel = reinterpret_cast<GompParallelFn>(dlsym(handle, "GOMP_parallel"));
    if (rt.parallel != nullptr) {
      rt.library = name;
      return rt;  // keep the handle: the runtime stays loaded for the process's life anyway
    }
    dlclose(handle);
  }
  return rt;
}

const OmpRuntime& omp_runtime() {
  static const OmpRuntime rt = find_loaded_omp_runtime();
  return rt;
}

struct OmpJob {
  const std::function<void(int64_t)>* fn;
  int64_t num_tasks;
  std::atomic<int64_t> next{0};
};

void omp_job_body(void* arg) {
  auto* job = static_cast<OmpJob*>(arg);
  const bool was_worker = in_pool_worker;
  in_pool_worker = true;  // a nested run() from a task stays on its thread
  for (int64_t t = job->next.fetch_add(1); t < job->num_tasks; t = job->next.fetch_add(1))
    (*job->fn)(t);
  in_pool_worker = was_worker;
}

}  // namespace

const char* ThreadPool::backend() const {
  if (forked_child_.load()) return "caller (forked child)";
  const OmpRuntime& rt = omp_runtime();
  return use_openmp_.load() && rt.parallel != nullptr ? rt.library : "own";
}

void ThreadPool::set_use_openmp(bool use) {
  if (forked_child_.load()) return;
  std::lock_guard<std::mutex> guard(run_mu_);  // never switch under a running call
  use_openmp_.store(use);
}

ThreadPool::ThreadPool() {
  const char* choice = std::getenv("PYQUANT_THREADPOOL");
  use_openmp_.store(choice == nullptr || std::strcmp(choice, "own") != 0);
  // A fork()ed child has none of the parent's threads, and a mutex a worker held at the fork
  // stays locked there; GNU OpenMP hangs in such a child too (so do torch's own ops). A child
  // therefore runs every call on the calling thread and never touches the pool's state.
  pthread_atfork(nullptr, nullptr, [] { ThreadPool::global().forked_child_.store(true); });
}

ThreadPool& ThreadPool::global() {
  // Leaked on purpose: joining threads from a static destructor at interpreter exit can hang.
  static ThreadPool* pool = new ThreadPool();
  return *pool;
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::set_num_threads(int n) {
  if (n < 1) n = 1;
  if (forked_child_.load()) {
    num_threads_.store(n);  // recorded and reported; calls run on the caller (see above)
    return;
  }
  std::lock_guard<std::mutex> guard(run_mu_);
  if (n == num_threads_) return;
  stop_workers();
  start_workers(n - 1);
  num_threads_.store(n);
}

void ThreadPool::start_workers(int n) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = false;
  }
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { worker_loop(); });
}

void ThreadPool::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
}

void ThreadPool::drain() {
  for (int64_t t = next_.fetch_add(1); t < num_tasks_; t = next_.fetch_add(1)) (*fn_)(t);
}

void ThreadPool::worker_loop() {
  in_pool_worker = true;
  uint64_t seen = generation_.load();
  for (;;) {
    for (int i = 0; i < kSpinIterations && generation_.load(std::memory_order_acquire) == seen; ++i)
      _mm_pause();
    std::unique_lock<std::mutex> lock(mu_);
    work_cv_.wait(lock, [&] { return stop_ || generation_.load() != seen; });
    if (stop_) return;
    seen = generation_.load();
    if (!open_) continue;  // woke too late: that job is finished
    active_.fetch_add(1);
    lock.unlock();
    drain();
    lock.lock();
    if (active_.fetch_sub(1) == 1) done_cv_.notify_all();
  }
}

void ThreadPool::run(int64_t num_tasks, const std::function<void(int64_t)>& fn) {
  if (num_tasks <= 0) return;
  if (num_tasks == 1 || in_pool_worker || forked_child_.load() || !run_mu_.try_lock()) {
    for (int64_t t = 0; t < num_tasks; ++t) fn(t);
    return;
  }
  std::lock_guard<std::mutex> guard(run_mu_, std::adopt_lock);
  const OmpRuntime& rt = omp_runtime();
  if (use_openmp_.load() && rt.parallel != nullptr && num_threads() > 1) {
    OmpJob job{&fn, num_tasks};
    const int64_t team = num_tasks < num_threads() ? num_tasks : num_threads();
    rt.parallel(omp_job_body, &job, static_cast<unsigned>(team), 0);
    return;
  }
  if (workers_.empty()) {  // a pool of one: workers_ may only be read under run_mu_
    for (int64_t t = 0; t < num_tasks; ++t) fn(t);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    num_tasks_ = num_tasks;
    next_.store(0);
    open_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  work_cv_.notify_all();
  drain();
  std::unique_lock<std::mutex> lock(mu_);
  open_ = false;  // no worker joins from here on; wait for those inside
  done_cv_.wait(lock, [&] { return active_.load() == 0; });
}

int64_t num_tasks_for(int64_t work, int64_t grain) {
  const int64_t threads = ThreadPool::global().num_threads();
  int64_t tasks = grain > 0 ? work / grain : threads;
  if (tasks > threads) tasks = threads;
  return tasks < 1 ? 1 : tasks;
}

}  // namespace pyquant
