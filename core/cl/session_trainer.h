// What a device session (core/device/device_session.h) needs of the model it keeps in sync with
// the server: the parameter sets shared with the server, a way to take on a module the server
// lists that the device does not run yet, and — for methods that grow — a narrow set of hooks
// used by the session alone. cl::Learner implements it; tests may implement it with a bare model.
//
// The session never trains: the host calls the learner's Learn, then tells the session
// (DeviceSession::AfterLearn), which measures learning as the change of the shared sets.
#ifndef FEDCL_CORE_CL_SESSION_TRAINER_H_
#define FEDCL_CORE_CL_SESSION_TRAINER_H_

#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "core/nn/parameter_set.h"
#include "core/peft/module_spec.h"

namespace fedcl::cl {

// What a device proposes to the server when one of its blocks grows: the new adapter as
// initialised (fl::ExpertLayout), its index in the block's mixture, and the per-dimension mean and
// variance of the token-mean features of the block input over the detection window that triggered
// it. Proposing at detection, not after training, lets the devices that saw the same shift train
// the group's one module together. The descriptor is trained afterwards: once ExpertDescriptor has
// it, the session attaches it to the pooled module, and devices that run the module detect with
// it (AddPooledExpert, AttachPooledDescriptor).
struct ModuleProposal {
  int block = 0;
  int index = 0;
  nn::ParameterSet expert;
  std::vector<float> mean, variance;
};

// A self-expanding method's hooks (SEMA), used only by the device session. Adapters are named by
// (block, index in the block's mixture).
class ExpansionHooks {
 public:
  virtual ~ExpansionHooks() = default;
  // Proposals of adapters grown since the last call.
  virtual std::vector<ModuleProposal> TakeProposals() = 0;
  // Adapter `index` of `block`, or null.
  virtual nn::ParameterSet* Expert(int block, int index) = 0;
  // The (block, index) of the adapter whose values are `set`, or {-1, -1}.
  virtual std::pair<int, int> SlotOf(const nn::ParameterSet* set) = 0;
  // Adds an adapter another device grew (frozen) and returns its index; with its founder's
  // descriptor, detection counts it. ResourceExhausted at the growth budget; InvalidArgument for
  // one that does not fit; either adds nothing.
  virtual absl::StatusOr<int> AddPooledExpert(int block, const nn::ParameterSet& values,
                                              const nn::ParameterSet* descriptor) = 0;
  // The descriptor of adapter (block, index) once trained and frozen; nullopt before, or for an
  // adapter without one.
  virtual std::optional<nn::ParameterSet> ExpertDescriptor(int block, int index) const = 0;
  // Whether adapter (block, index) has a descriptor at all (trained, in training, or pooled).
  virtual bool ExpertHasDescriptor(int block, int index) const = 0;
  // Gives pooled adapter (block, index), added without one, its founder's descriptor.
  // InvalidArgument / ResourceExhausted change nothing.
  virtual absl::Status AttachPooledDescriptor(int block, int index,
                                              const nn::ParameterSet& descriptor) = 0;
  // Adapters per expandable block, and growths refused so far (at the cap or the budget).
  virtual std::vector<int> AdaptersPerBlock() const = 0;
  virtual int64_t growth_refusals() const = 0;
};

class SessionTrainer {
 public:
  virtual ~SessionTrainer() = default;

  // The sets this device shares with the server, named as the trainer names them ("head",
  // "adapter", "block2/e0", ...). The session syncs each under that name unless it has learned
  // another from the server (a pooled adapter's "block2/m3").
  virtual std::vector<nn::ParameterSet*> SharedModules() = 0;

  // A module the server lists that is not among SharedModules: the trainer takes it on and
  // returns its set (now among SharedModules, holding `values`; with `values` empty, holding
  // its initial values in the spec's layout, which a restoring session overwrites), or null if
  // this device does not run such a module. InvalidArgument if it cannot fit the model. The
  // default takes nothing on.
  virtual absl::StatusOr<nn::ParameterSet*> AdoptModule(const peft::ModuleSpec& spec,
                                                        const nn::ParameterSet& values) {
    return nullptr;
  }

  // Whether AdoptModule would take on a module like `spec` (asked before downloading it).
  virtual bool CanAdopt(const peft::ModuleSpec& spec) const { return false; }

  // The growth hooks, or null for a method that never grows.
  virtual ExpansionHooks* expansion() { return nullptr; }
};

}  // namespace fedcl::cl

#endif  // FEDCL_CORE_CL_SESSION_TRAINER_H_
