#include <cstdio>

#include "core/base/status_macros.h"
#include "sim/modes/modes.h"
#include "sim/report/device_reports.h"

namespace fedcl::sim {

absl::Status ReportDevices(const base::FileSystem& fs, const std::string& dir) {
  FEDCL_ASSIGN_OR_RETURN(std::string table, ReportClDevices(fs, dir));
  std::printf("%s", table.c_str());
  return absl::OkStatus();
}

}  // namespace fedcl::sim
