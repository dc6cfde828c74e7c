#include "core/ood/detector_registry.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"

namespace fedcl::ood {

// One registration function per file of detectors/ (builtin_detectors.inc is written by CMake
// from that folder's listing), each defined by FEDCL_REGISTER_OOD_DETECTOR in its file.
#define FEDCL_OOD_BUILTIN(stem) DetectorInfo FedclOodDetectorInfo_##stem();
#include "core/ood/builtin_detectors.inc"
#undef FEDCL_OOD_BUILTIN

namespace {

const std::vector<DetectorInfo>& Table() {
  static const std::vector<DetectorInfo>* const table = [] {
    auto* detectors = new std::vector<DetectorInfo>{
#define FEDCL_OOD_BUILTIN(stem) FedclOodDetectorInfo_##stem(),
#include "core/ood/builtin_detectors.inc"
#undef FEDCL_OOD_BUILTIN
    };
    std::sort(detectors->begin(), detectors->end(),
              [](const DetectorInfo& a, const DetectorInfo& b) { return a.name < b.name; });
    for (size_t i = 0; i < detectors->size(); ++i) {
      FEDCL_CHECK((*detectors)[i].create != nullptr)
          << "detector " << (*detectors)[i].name << " registers no factory";
      FEDCL_CHECK(i == 0 || (*detectors)[i - 1].name != (*detectors)[i].name)
          << "detector " << (*detectors)[i].name << " is registered twice";
    }
    return detectors;
  }();
  return *table;
}

}  // namespace

const std::vector<DetectorInfo>& Detectors() { return Table(); }

std::vector<std::string> DetectorNames() {
  std::vector<std::string> names;
  for (const DetectorInfo& info : Table()) names.push_back(info.name);
  return names;
}

absl::StatusOr<const DetectorInfo*> FindDetector(absl::string_view name) {
  for (const DetectorInfo& info : Table()) {
    if (info.name == name) return &info;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown OOD detector '", name, "' (registered: ",
                                                 absl::StrJoin(DetectorNames(), ", "), ")"));
}

absl::StatusOr<std::unique_ptr<OodDetector>> MakeDetector(absl::string_view name,
                                                          const DetectorContext& context) {
  FEDCL_ASSIGN_OR_RETURN(const DetectorInfo* info, FindDetector(name));
  return info->create(context);
}

}  // namespace fedcl::ood
