// OOD detectors by name. A host names a detector (and its options); the registry says what the
// detector reads from a forward pass and makes it, so no host switches on a detector kind:
//
//   FEDCL_ASSIGN_OR_RETURN(const ood::DetectorInfo* info, ood::FindDetector("knn"));
//   FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<ood::OodDetector> detector,
//                          info->create({.seed = 7, .options = "k: 20 max_samples: 5000"}));
//   ood::OodBatch batch;                        // fill what info->needs asks for
//   if (info->needs.features) batch.features = &features;
//   FEDCL_RETURN_IF_ERROR(detector->Fit(batch, labels));  // read if info->fit_needs_labels
//
// Adding a detector is one file, core/ood/detectors/<name>.cc: CMake finds it (a glob), and the
// file's stem is the name it registers under (a C identifier). The file defines the detector and
// registers it with one statement at namespace fedcl::ood scope (not in an anonymous namespace):
//
//   FEDCL_REGISTER_OOD_DETECTOR(knn, {.description = "k-th nearest normalised feature distance",
//                                     .needs = {.features = true},
//                                     .create = &KnnDetector::Create});
//
// The build lists every file of detectors/ and the registry calls each one's registration
// explicitly (no static initialisers), so a detector is never dropped by a static archive — the
// SDK's libfedcl_client.a included — and a file that forgets its registration fails to link.
//
// The factory takes a DetectorContext: a seed for whatever it draws, and its options as a small
// text proto of scalar fields (base::OptionText, "k: 20, max_samples: 5000"), which the detector
// parses itself, refusing an unknown key or a bad value with InvalidArgument naming the key.
//
// Thread-safe: the registry is immutable once built (on first use).
#ifndef FEDCL_CORE_OOD_DETECTOR_REGISTRY_H_
#define FEDCL_CORE_OOD_DETECTOR_REGISTRY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/ood/detectors.h"

namespace fedcl::ood {

// What a factory gets.
struct DetectorContext {
  uint64_t seed = 1;          // for random projections, initial weights, subsampling
  absl::string_view options;  // the detector's own knobs; empty = its defaults
};

using DetectorFactory = absl::StatusOr<std::unique_ptr<OodDetector>> (*)(const DetectorContext&);

struct DetectorInfo {
  std::string name;               // the file's stem, set by FEDCL_REGISTER_OOD_DETECTOR
  std::string description;        // one line, for listings and help
  FeatureNeeds needs;             // what Fit, Calibrate and Score read from the batch
  bool fit_needs_labels = false;  // Fit reads class labels in [0, C)
  // Parses the options and makes an unfitted detector: InvalidArgument (naming the key) for an
  // unknown key or a bad value. Cheap: nothing is drawn or allocated before Fit.
  DetectorFactory create = nullptr;
};

// Every registered detector, sorted by name.
const std::vector<DetectorInfo>& Detectors();
std::vector<std::string> DetectorNames();

// The entry named `name`, or InvalidArgument listing the registered names (sorted).
absl::StatusOr<const DetectorInfo*> FindDetector(absl::string_view name);

// FindDetector, then its factory.
absl::StatusOr<std::unique_ptr<OodDetector>> MakeDetector(absl::string_view name,
                                                          const DetectorContext& context = {});

}  // namespace fedcl::ood

// Registers the detector of core/ood/detectors/<stem>.cc under the name "<stem>": the variable
// arguments are a braced DetectorInfo initialiser without the name. Use once per file, at
// namespace fedcl::ood scope.
#define FEDCL_REGISTER_OOD_DETECTOR(stem, ...) \
  DetectorInfo FedclOodDetectorInfo_##stem() { \
    DetectorInfo info __VA_ARGS__;             \
    info.name = #stem;                         \
    return info;                               \
  }

#endif  // FEDCL_CORE_OOD_DETECTOR_REGISTRY_H_
