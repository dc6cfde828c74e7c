// This process's memory, as the simulator reports it (per run, and the peak in summary.json).
#ifndef FEDCL_SIM_RUN_PROCESS_MEMORY_H_
#define FEDCL_SIM_RUN_PROCESS_MEMORY_H_

#include <cstdint>

namespace fedcl::sim {

// The peak resident set size of this process so far (getrusage), and the current one
// (/proc/self/statm), in bytes; 0 where the system does not say.
int64_t PeakRssBytes();
int64_t CurrentRssBytes();

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_RUN_PROCESS_MEMORY_H_
