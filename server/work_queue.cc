#include "server/work_queue.h"

#include <algorithm>
#include <new>

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

StagingBuffers::Buffer StagingBuffers::Take(size_t size) {
  {
    absl::MutexLock lock(&mu_);
    // The smallest free buffer that is big enough.
    auto best = free_.end();
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->capacity >= size && (best == free_.end() || it->capacity < best->capacity)) best = it;
    }
    if (best != free_.end()) {
      Buffer buffer = std::move(*best);
      free_.erase(best);
      return buffer;
    }
  }
  const size_t bytes = (size * sizeof(float) + kAlignment - 1) / kAlignment * kAlignment;
  float* data = static_cast<float*>(std::aligned_alloc(kAlignment, std::max(bytes, kAlignment)));
  if (data == nullptr) throw std::bad_alloc();
  return Buffer{std::unique_ptr<float[], Free>(data), bytes / sizeof(float)};
}

void StagingBuffers::Return(Buffer buffer) {
  if (buffer.data == nullptr) return;
  absl::MutexLock lock(&mu_);
  free_.push_back(std::move(buffer));
  if (static_cast<int>(free_.size()) > keep_) {
    // Drop the smallest: the large ones are the expensive ones to make again.
    auto smallest =
        std::min_element(free_.begin(), free_.end(),
                         [](const Buffer& a, const Buffer& b) { return a.capacity < b.capacity; });
    free_.erase(smallest);
  }
}

}  // namespace fedcl::server
