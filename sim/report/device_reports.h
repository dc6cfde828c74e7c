// The table of a continual scenario run with real processes (`fedcl-sim --device=D`, one process
// per device, sim/run/cl_device.h): each device writes a ClDeviceReport, and
// `fedcl-sim --report_devices=DIR` reads them back here.
#ifndef FEDCL_SIM_REPORT_DEVICE_REPORTS_H_
#define FEDCL_SIM_REPORT_DEVICE_REPORTS_H_

#include <string>

#include "absl/status/statusor.h"
#include "core/base/filesystem.h"

namespace fedcl::sim {

// Reads every DIR/device-*.report, averages the evaluation devices' matrices and returns the
// scenario's table (as fedcl-sim prints it for in-process runs), the mean matrix and one line per
// device. Bytes are summed over every device, time is the slowest device's. InvalidArgument
// naming the file for a report that does not parse, or naming the device for one whose method
// or matrix differs from the others'; NotFound if no report holds a matrix.
absl::StatusOr<std::string> ReportClDevices(const base::FileSystem& fs, const std::string& dir);

}  // namespace fedcl::sim

#endif  // FEDCL_SIM_REPORT_DEVICE_REPORTS_H_
