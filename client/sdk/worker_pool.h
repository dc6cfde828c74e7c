// A fixed set of threads that run the parts of one job at a time, for ClientOptions::threads:
// part 0 on the calling thread, part p on worker p − 1. Nothing is allocated per job, and the
// synchronisation is std::mutex / std::condition_variable, which ThreadSanitizer sees (Debian's
// oneTBB is not instrumented, so a TBB version reports false races).
//
//   WorkerPool pool(2);                       // three parts at most
//   auto part = [&](int p) { ... };
//   pool.Run(3, part);                        // returns when every part has returned
//
// Run is not reentrant: one job at a time (the client calls it under its model lock).
#ifndef FEDCL_CLIENT_SDK_WORKER_POOL_H_
#define FEDCL_CLIENT_SDK_WORKER_POOL_H_

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace fedcl::sdk {

class WorkerPool {
 public:
  explicit WorkerPool(int workers);
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  int workers() const { return static_cast<int>(threads_.size()); }

  // Calls part(p) for p in [0, parts), parts <= workers() + 1, and waits for all of them.
  template <typename Part>
  void Run(int parts, Part& part) {
    RunImpl(parts, &part, [](void* f, int p) { (*static_cast<Part*>(f))(p); });
  }

 private:
  void RunImpl(int parts, void* job, void (*call)(void*, int));
  void Loop(int worker);

  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  uint64_t generation_ = 0;  // one per job
  int parts_ = 0;
  int pending_ = 0;  // worker parts of the current job not yet returned
  bool stop_ = false;
  void* job_ = nullptr;
  void (*call_)(void*, int) = nullptr;
  std::vector<std::thread> threads_;
};

}  // namespace fedcl::sdk

#endif  // FEDCL_CLIENT_SDK_WORKER_POOL_H_
