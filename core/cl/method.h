// Continual-learning methods behind one interface, with a name registry. A cl::Learner is a shell
// (the model, tasks, the OOD detector, prediction, the session-facing interface) around one
// Method, which decides what the device trains, how it predicts, what it shares with the server
// and what it keeps to itself.
//
//   FEDCL_ASSIGN_OR_RETURN(auto learner, cl::Learner::Create(std::move(model),
//       {.method = "sema", .method_options = "expansion_tau: 1.5 new_module_steps: 120"}));
//
// A new method is one file (or folder) under core/cl/methods/ — a class deriving from Method, its
// options parsed with base::OptionText from MethodConfig::options, and a `Register<Name>Method`
// function — plus one line in core/cl/methods/builtin_methods.cc. Hosts need nothing else: the
// modules it shares come from SharedModules/SharedModuleSpecs, its private state travels as a
// MethodState the hosts persist without reading it, and its knobs as the options text.
#ifndef FEDCL_CORE_CL_METHOD_H_
#define FEDCL_CORE_CL_METHOD_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "core/cl/session_trainer.h"
#include "core/nn/parameter_set.h"
#include "core/nn/tensor.h"
#include "core/nn/training.h"
#include "core/ood/detectors.h"
#include "core/peft/module_spec.h"

namespace fedcl::cl {

class LearnerCore;

struct LearnStats {
  float loss = 0.0f;
  bool detected = false;  // this batch was used for detection
  int grown_block = -1;   // the block that grew on this batch, or -1
  absl::Status refused;   // a growth the budget refused (ResourceExhausted), else OK
};

// Hooks of one inference forward, for detectors: logits (the method's own: LAE's are the log of
// its ensemble), head features, the CLS token after each block and the token mean of the last
// block's input (what RD reads). ViT only for the last two.
struct Inspection {
  nn::Matrix logits, features, token_mean_last;
  std::vector<nn::Matrix> cls_after_block;
  // A view of the hooks a detector reads (ood::DetectorInfo::needs); the others stay null.
  ood::OodBatch Batch(const ood::FeatureNeeds& needs) const;
};

// A method's private state as named arrays, which hosts persist and copy without knowing what
// they hold (LAE's offline module, SimpleCIL's class sums, SEMA's mixtures and descriptors).
struct MethodState {
  std::map<std::string, std::vector<float>> floats;
  std::map<std::string, std::vector<int64_t>> ints;
  std::map<std::string, std::string> strings;
  bool empty() const { return floats.empty() && ints.empty() && strings.empty(); }
  friend bool operator==(const MethodState&, const MethodState&) = default;
};

// What a method is built from.
struct MethodConfig {
  std::string name;
  // The method's own knobs: a scalar text proto (base::OptionText), e.g. "adapter_bottleneck: 4".
  std::string options;
};

class Method {
 public:
  virtual ~Method() = default;
  virtual absl::string_view name() const = 0;

  // Creates and attaches its modules on core.model() (called once, right after construction).
  virtual absl::Status Init(LearnerCore& core) = 0;

  // The sets it shares with the server (SessionTrainer::SharedModules), and how a server pools
  // each of them (parallel to SharedModules at creation): the server and the simulator create
  // the initial modules from these.
  virtual std::vector<nn::ParameterSet*> SharedModules(LearnerCore& core) = 0;
  virtual std::vector<peft::ModuleSpec> SharedModuleSpecs(LearnerCore& core) = 0;

  // One step on a labelled batch the shell has checked (sizes, labels within the task).
  virtual absl::StatusOr<LearnStats> Learn(LearnerCore& core, nn::ConstMatrixRef images,
                                           absl::Span<const int32_t> labels) = 0;

  // The logits of one inference chunk (rows [start, start + images.rows()) of `hooks`), writing
  // the chunk's hooks with core.CopyHooks. The default: one forward.
  virtual absl::StatusOr<nn::Matrix> ChunkLogits(LearnerCore& core, nn::ConstMatrixRef images,
                                                 Inspection* hooks, int64_t start);
  // True if ChunkLogits is one plain forward (Learner::PredictInto's allocation-free path).
  virtual bool single_forward() const { return true; }
  // True if the logits are log-probabilities already (LAE's ensemble): a prediction's
  // confidence is then exp of the top logit, not a softmax.
  virtual bool logits_are_log_probabilities() const { return false; }

  // A task started (Learner::BeginTask), after the shell updated its task bookkeeping.
  virtual absl::Status OnBeginTask(LearnerCore& core) { return absl::OkStatus(); }

  // The private state (see MethodState). RestoreState checks all of it before changing anything:
  // InvalidArgument naming what does not fit.
  virtual MethodState ExportState(const LearnerCore& core) const { return {}; }
  virtual absl::Status RestoreState(LearnerCore& core, const MethodState& state);
  // True if predictions read the private state (a copy of the learner that predicts needs it).
  virtual bool prediction_reads_state() const { return false; }

  // A knob that may change while the method runs (LAE: "inference" = ensemble | online |
  // offline). InvalidArgument for a key or value the method does not take.
  virtual absl::Status SetOption(absl::string_view key, absl::string_view value);

  // Growth hooks (SessionTrainer::expansion), null for a method that never grows.
  virtual ExpansionHooks* expansion() { return nullptr; }
  // Modules the server lists that the method takes on (the recipe method); see SessionTrainer.
  virtual bool CanAdopt(const peft::ModuleSpec& spec) const { return false; }
  virtual absl::StatusOr<nn::ParameterSet*> AdoptModule(LearnerCore& core,
                                                        const peft::ModuleSpec& spec,
                                                        const nn::ParameterSet& values) {
    return nullptr;
  }
  // A round of a recipe device starts: a fresh optimizer with the server's recipe.
  virtual absl::Status BeginRound(LearnerCore& core, const nn::Recipe& recipe) {
    return absl::OkStatus();
  }

  // Float values of what the method keeps besides the backbone and the head (adapters, pools,
  // descriptors, copies), for Learner::ModuleBytes.
  virtual int64_t ModuleValues() const { return 0; }
};

// The registry.
using MethodFactory =
    std::function<absl::StatusOr<std::unique_ptr<Method>>(const MethodConfig& config)>;
class MethodRegistry {
 public:
  // Registers `factory` under `name` (twice is a bug, checked).
  void Register(absl::string_view name, absl::string_view summary, MethodFactory factory);
  const MethodFactory* Find(absl::string_view name) const;
  std::vector<std::string> Names() const;  // sorted
  std::string Summary(absl::string_view name) const;

 private:
  std::map<std::string, std::pair<std::string, MethodFactory>, std::less<>> methods_;
};
const MethodRegistry& Methods();
void RegisterBuiltinMethods(MethodRegistry& registry);

// Builds a method; InvalidArgument for an unknown name (listing the registered ones) or options
// the method refuses.
absl::StatusOr<std::unique_ptr<Method>> CreateMethod(const MethodConfig& config);

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_METHOD_H_
