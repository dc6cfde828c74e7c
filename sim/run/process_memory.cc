#include "sim/run/process_memory.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>

namespace fedcl::sim {

int64_t CurrentRssBytes() {
  // /proc/self/statm: total and resident pages.
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  long long total = 0, resident = 0;
  const int read = std::fscanf(f, "%lld %lld", &total, &resident);
  std::fclose(f);
  return read == 2 ? resident * sysconf(_SC_PAGESIZE) : 0;
}

int64_t PeakRssBytes() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) * 1024;
}

}  // namespace fedcl::sim
