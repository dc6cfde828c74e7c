// What the run/ tests share: a scenario parsed from text and its inputs (Fashion-MNIST from the
// scenario's data section), each failing the test, not aborting it, on an error.
#ifndef FEDCL_TESTS_SIM_RUN_RUN_TEST_UTIL_H_
#define FEDCL_TESTS_SIM_RUN_RUN_TEST_UTIL_H_

#include <string>

#include "core/base/filesystem.h"
#include "gtest/gtest.h"
#include "sim/world/inputs.h"
#include "sim/world/scenario.h"

namespace fedcl::sim {

inline Scenario Parse(const std::string& text) {
  absl::StatusOr<Scenario> s = ParseScenario(text, "test.textproto");
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? *std::move(s) : Scenario{};
}

inline SimulationInputs LoadTestInputs(const Scenario& s) {
  absl::StatusOr<SimulationInputs> inputs = LoadInputs(base::FileSystem::Default(), s);
  EXPECT_TRUE(inputs.ok()) << inputs.status();
  return inputs.ok() ? *std::move(inputs) : SimulationInputs{};
}

}  // namespace fedcl::sim

#endif  // FEDCL_TESTS_SIM_RUN_RUN_TEST_UTIL_H_
