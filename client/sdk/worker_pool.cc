#include "client/sdk/worker_pool.h"

namespace fedcl::sdk {

WorkerPool::WorkerPool(int workers) {
  threads_.reserve(workers);
  for (int w = 0; w < workers; ++w) threads_.emplace_back([this, w] { Loop(w); });
}

WorkerPool::~WorkerPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void WorkerPool::RunImpl(int parts, void* job, void (*call)(void*, int)) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    job_ = job;
    call_ = call;
    parts_ = parts;
    pending_ = parts - 1;
    ++generation_;
  }
  if (parts > 1) work_cv_.notify_all();
  call(job, 0);
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [this] { return pending_ == 0; });
}

void WorkerPool::Loop(int worker) {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    const int part = worker + 1;
    if (part >= parts_) continue;  // this job has fewer parts than workers
    void* job = job_;
    void (*call)(void*, int) = call_;
    lock.unlock();
    call(job, part);
    lock.lock();
    if (--pending_ == 0) done_cv_.notify_one();
  }
}

}  // namespace fedcl::sdk
