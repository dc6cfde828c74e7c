// A device "model" for integration tests of the upload path: one module set the session keeps in
// sync with the server's module of the same name, and learning that adds values the test chose
// to chosen coordinates. With each step touching a coordinate no other step touches, what the
// server folded can be read back coordinate by coordinate (tests/integration/chaos_check.h).
#ifndef FEDCL_TESTS_INTEGRATION_STEP_TRAINER_H_
#define FEDCL_TESTS_INTEGRATION_STEP_TRAINER_H_

#include <cstdint>
#include <utility>
#include <vector>

#include "core/cl/session_trainer.h"
#include "core/nn/parameter_set.h"

namespace fedcl::testing {

class StepTrainer final : public cl::SessionTrainer {
 public:
  // `module` gives the layout and initial values; its name is the server's module name.
  explicit StepTrainer(nn::ParameterSet module) : module_(std::move(module)) {}

  std::vector<nn::ParameterSet*> SharedModules() override { return {&module_}; }

  // One learning step: coordinate `index` moves by `value`. The caller holds the session's
  // mutex and then tells the session (DeviceSession::AfterLearnLocked).
  void Learn(int64_t index, float value) { module_.flat_values()[index] += value; }
  int64_t num_values() const { return module_.num_values(); }

 private:
  nn::ParameterSet module_;
};

}  // namespace fedcl::testing

#endif  // FEDCL_TESTS_INTEGRATION_STEP_TRAINER_H_
