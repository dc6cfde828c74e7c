// A fixed set of threads running queued tasks in order of arrival. gRPC callback handlers hand
// slow work (journal commits, folds) here instead of blocking gRPC's own threads.
#ifndef FEDCL_SERVER_WORK_QUEUE_H_
#define FEDCL_SERVER_WORK_QUEUE_H_

#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace fedcl::server {

class WorkQueue {
 public:
  explicit WorkQueue(int threads);
  // Runs every queued task, then joins the threads.
  ~WorkQueue();
  void Post(std::function<void()> task);

 private:
  void Run();
  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// Reusable staging buffers for uploads. Allocating (and zeroing) a fresh multi-megabyte buffer
// for every update costs page faults and a pass over memory; at most `keep` buffers are kept
// for reuse (the upload slots bound how many are in use at once). Contents are uninitialised.
class StagingBuffers {
 public:
  // Buffers start on a 4 KiB boundary, so the journal can write them with O_DIRECT.
  static constexpr size_t kAlignment = 4096;
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  struct Buffer {
    std::unique_ptr<float[], Free> data;
    size_t capacity = 0;
  };
  explicit StagingBuffers(int keep) : keep_(keep) {}
  // A buffer of at least `size` floats; std::bad_alloc if there is no memory for it.
  Buffer Take(size_t size);
  void Return(Buffer buffer);

 private:
  absl::Mutex mu_;
  int keep_;
  std::vector<Buffer> free_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fedcl::server

#endif  // FEDCL_SERVER_WORK_QUEUE_H_
