#include "sim/run/round_runner.h"

#include "core/base/clock.h"
#include "core/base/filesystem.h"
#include "core/device/in_process_port.h"
#include "core/fl/client_model.h"
#include "gtest/gtest.h"
#include "sim/run/engine.h"
#include "sim/world/client_data.h"
#include "tests/sim/run/run_test_util.h"

namespace fedcl::sim {
namespace {

// A worker restarted mid-round finds some of its participants' updates already accepted: they
// count once, nothing is trained twice, and the round ends exactly as an uninterrupted one.
TEST(RoundRunnerTest, UpdatesSentBeforeARestartCountOnce) {
  Scenario s = Parse(R"pb(
    name: "restart"
    model { backbone: "mlp" mlp_hidden: 8 }
    data { partition: "iid" max_train_samples: 800 max_test_samples: 100 }
    population { num_clients: 4 }
    participation { probabilities: "uniform" p_mean: 1.0 }
    rounds: 1
  )pb");
  SimulationInputs inputs = LoadTestInputs(s);
  ClientData data = *ClientData::Create(s, inputs.train, 1);
  const std::vector<float> p = data.Probabilities(s, 1);
  int64_t sent_bytes[2] = {0, 0};
  auto run = [&](bool restart) -> fl::ModuleSnapshot {
    auto model = *MakeModel(s, inputs, 1);
    base::ManualClock clock(absl::UnixEpoch());
    auto coordinator =
        *fl::Coordinator::Create(CoordinatorOptionsFor(s.methods[0], p), clock, nullptr,
                                 *fl::CreateInitialModules(*model, s.modules, 1));
    for (int n = 0; n < 4; ++n) EXPECT_TRUE(coordinator->Enroll(n).ok());
    device::ServerInfo server;
    server.protocol = std::string(device::kProtocol);
    device::InProcessPort port(*coordinator, server);
    if (restart) {
      // Before "dying", the worker had sent clients 1 and 3.
      RoundRunner before(s, inputs, data, 1, 1, server);
      const std::vector<uint32_t> sent = {1, 3};
      EXPECT_EQ(before.Run(port, sent, 0, 0.0)->counted, 2);
    }
    RoundRunner runner(s, inputs, data, 1, 1, server);
    const std::vector<uint32_t> all = {0, 1, 2, 3};
    absl::StatusOr<RoundOutcome> outcome = runner.Run(port, all, 0, 0.0);
    EXPECT_TRUE(outcome.ok()) << outcome.status();
    EXPECT_EQ(outcome->counted, 4);
    EXPECT_EQ(outcome->bytes_up, outcome->bytes_down);  // only those that trained sent anything
    sent_bytes[restart ? 1 : 0] = outcome->bytes_up;
    EXPECT_TRUE(coordinator->CloseRound().ok());
    EXPECT_EQ(coordinator->TakeRoundReports().back().participants, 4);
    return coordinator->Modules()[0];
  };
  const fl::ModuleSnapshot uninterrupted = run(false), restarted = run(true);
  EXPECT_EQ(uninterrupted.values->flat_values(), restarted.values->flat_values());
  EXPECT_EQ(2 * sent_bytes[1], sent_bytes[0]);  // after the restart, two of four trained
}

}  // namespace
}  // namespace fedcl::sim
