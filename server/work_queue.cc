#include "server/work_queue.h"

namespace fedcl::server {

WorkQueue::WorkQueue(int threads) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Run(); });
}

WorkQueue::~WorkQueue() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
}

void WorkQueue::Post(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
}

void WorkQueue::Run() {
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](WorkQueue* q)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(q->mu_) { return q->stopping_ || !q->tasks_.empty(); },
          this));
      if (tasks_.empty()) return;  // stopping, and nothing left to run
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

void UploadGate::Acquire(std::function<void()> on_admitted) {
  {
    absl::MutexLock lock(&mu_);
    if (in_use_ >= capacity_) {
      waiting_.push_back(std::move(on_admitted));
      return;
    }
    ++in_use_;
  }
  on_admitted();
}

void UploadGate::Release() {
  std::function<void()> next;
  {
    absl::MutexLock lock(&mu_);
    if (waiting_.empty()) {
      --in_use_;
      return;
    }
    next = std::move(waiting_.front());  // the slot passes straight to the next waiter
    waiting_.pop_front();
  }
  next();
}

int UploadGate::in_use() const {
  absl::MutexLock lock(&mu_);
  return in_use_;
}

}  // namespace fedcl::server
