// Vocabulary shared by the coordinator, its state store and the hosts: client ids, the training
// recipe sent to devices, module descriptions and update submissions.
#ifndef FEDCL_CORE_FL_ROUND_TYPES_H_
#define FEDCL_CORE_FL_ROUND_TYPES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/fl/compression.h"
#include "core/nn/tensor.h"
#include "core/nn/training.h"
#include "core/peft/module_spec.h"

namespace fedcl::fl {

// A device's identity. Simulator workers act for ranges of them.
using ClientId = uint64_t;

// The module vocabulary (core/peft/module_spec.h) and the training recipe (core/nn/training.h)
// live below fl and cl, which both use them.
using nn::Recipe;
using peft::ModuleRole;
using peft::ModuleRoleName;
using peft::ModuleSpec;
using peft::ParseModuleRole;

// One tensor of a module's layout, as a client declares it.
struct TensorSpec {
  std::string name;
  nn::Shape shape;
};

// A module and the version a client holds or a server publishes. Version v means "as updated by
// the close of round v" (0 = initial).
struct ModuleVersion {
  std::string name;
  int64_t version = 0;
};

// One module's delta in a submission. `values` are not owned: they point into the host's
// receive buffer, must stay valid for the duration of Coordinator::Submit, and may be scaled in
// place when the coordinator clips the update.
struct ModuleDelta {
  std::string name;
  int64_t base_version = 0;
  std::vector<TensorSpec> layout;  // tensor names and shapes, in the order of `values`
  absl::Span<float> values;
};

struct UpdateSubmission {
  ClientId client = 0;
  int64_t round = 0;
  int64_t num_samples = 0;
  int64_t local_steps = 0;
  double loss = 0.0;
  std::vector<ModuleDelta> modules;
};

// One module's delta as a device sends it.
struct ModuleUpdate {
  std::string name;
  int64_t base_version = 0;
  std::vector<TensorSpec> layout;
  std::vector<float> values;
  // Set when the device compressed the delta (core/fl/compression.h): what travels, while
  // `values` hold its decoding, which is what the server folds either way.
  std::optional<CompressedValues> compressed;

  // Bytes of the delta as uploaded: compressed, or 4 per value.
  int64_t upload_bytes() const {
    return compressed.has_value() ? compressed->bytes()
                                  : static_cast<int64_t>(values.size() * sizeof(float));
  }
};

struct LocalUpdate {
  std::vector<ModuleUpdate> modules;
  int64_t num_samples = 0;  // samples seen (steps × batch)
  int64_t local_steps = 0;
  double loss = 0.0;  // mean training loss over the steps
};

// Points ModuleDeltas at a LocalUpdate's values (for Coordinator::Submit in-process).
UpdateSubmission ToSubmission(LocalUpdate& update, ClientId client, int64_t round);

struct SubmitResult {
  int64_t round = 0;
  bool duplicate = false;  // already accepted earlier: acknowledged again, counted once
  // The aggregation weight the update was folded with; 0 for a duplicate whose round has
  // closed (the weight is not kept past the close).
  double weight = 0.0;
  bool clipped = false;  // the norm exceeded the bound and the update was scaled down
};

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_ROUND_TYPES_H_
