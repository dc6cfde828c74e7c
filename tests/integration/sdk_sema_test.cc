// The growing pool with real processes: a fedcl-server whose pool serves base experts at the
// ViT's last two blocks, and three C example devices (client/examples/device_loop.c, linked with
// libfedcl_client.so) running SEMA over TLS with tokens. Devices 0 and 1 stream Fashion-MNIST
// whose contrast inverts after 170 batches (after their first adapters trained); device 2's
// never does. The two that see the shift grow an adapter each and propose it; the server groups
// the two proposals into one module, which both then train. Device 2 grows nothing.
//
// Nothing here depends on how fast the machine is: rounds close by time, so a loaded machine
// runs more rounds per batch, but the pool groups proposals over a window of rounds no run can
// pass (100,000 one-second rounds), and each device delivers what it learned, proposals first,
// before it exits (--deliver_at_end). Before, a device slowed down on a busy machine could stop
// with its grown adapter never proposed, or propose it outside the window (pool of 2, 0 merges).
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/filesystem.h"
#include "gtest/gtest.h"
#include "tests/integration/server_fixture.h"

namespace fedcl::testing {
namespace {

constexpr const char* kFashionMnist = "/usr/share/datasets/fashion-mnist";
constexpr int kDevices = 3;
constexpr int kShiftAfter = 170;  // batches; SEMA's first adapters train for 150
constexpr int kBatches = 230;

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(SdkSemaTest, DevicesThatSeeOneShiftShareOnePoolModule) {
  if (!base::FileSystem::Default().Exists(kFashionMnist)) GTEST_SKIP() << "no Fashion-MNIST";
  ServerFixture f;
  // A ViT pretrained briefly on samples no device streams (about 6 s): an untrained backbone's
  // block inputs are noise that its descriptors cannot model, and clean data then grows it too.
  const std::string backbone = f.dir() + "/vit.ckpt";
  auto pretrain = ChildProcess::Start(
      {BinaryPath("fedcl-pretrain"), "--model=vit", "--epochs=2", "--train_begin=40000",
       "--train_end=50000", absl::StrCat("--data_dir=", kFashionMnist), "--output=" + backbone},
      f.dir() + "/pretrain.log");
  ASSERT_TRUE(pretrain.ok()) << pretrain.status();
  absl::StatusOr<int> pretrained = (*pretrain)->Wait(absl::Seconds(120));
  ASSERT_TRUE(pretrained.ok() && *pretrained == 0) << ReadText(f.dir() + "/pretrain.log");
  f.WriteRawConfig(absl::StrCat(
      f.TlsConfigHead(backbone), "module { name: \"head\" role: \"head\" }\n",
      "pool { expandable_blocks: 2 expandable_blocks: 3 base_experts: true round_window: 100000 "
      "}\n",
      "recipe { local_steps: 10 batch_size: 32 learning_rate: 0.05 }\n",
      "round { duration_ms: 1000 min_participants: 1 }\n", "journal { sync: \"normal\" }\n"));
  f.StartServer();

  std::vector<std::unique_ptr<ChildProcess>> devices;
  for (int d = 0; d < kDevices; ++d) {
    std::vector<std::string> argv = f.DeviceLoopArgs(d, kFashionMnist);
    argv.insert(argv.end(),
                {absl::StrCat("--offset=", d * 8000), "--samples=8000", "--batch=32",
                 "--sync_every=10", "--method=sema", absl::StrCat("--max_batches=", kBatches),
                 "--max_seconds=100", "--deliver_at_end=1"});
    if (d < 2) argv.push_back(absl::StrCat("--invert_after=", kShiftAfter));
    auto device = ChildProcess::Start(argv, absl::StrCat(f.dir(), "/device-", d, ".log"));
    ASSERT_TRUE(device.ok()) << device.status();
    devices.push_back(*std::move(device));
  }
  std::vector<std::string> logs(kDevices);
  for (int d = 0; d < kDevices; ++d) {
    const std::string log_path = absl::StrCat(f.dir(), "/device-", d, ".log");
    absl::StatusOr<std::string> line = devices[d]->WaitForLine("submissions=", absl::Seconds(110));
    ASSERT_TRUE(line.ok()) << "device " << d << ": " << line.status() << "\n"
                           << ReadText(log_path) << "\nserver log:\n"
                           << ReadText(f.dir() + "/server.log");
    absl::StatusOr<int> code = devices[d]->Wait(absl::Seconds(10));
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 0) << ReadText(log_path);
    logs[d] = ReadText(log_path);
  }
  // Growth happened where the data shifted, and only there.
  for (int d = 0; d < 2; ++d) EXPECT_TRUE(absl::StrContains(logs[d], "grew adapter")) << logs[d];
  EXPECT_FALSE(absl::StrContains(logs[2], "grew adapter")) << logs[2];
  const bool founded0 = absl::StrContains(logs[0], "founded the pool's");
  const bool founded1 = absl::StrContains(logs[1], "founded the pool's");
  EXPECT_NE(founded0, founded1) << logs[0] << "\n" << logs[1];  // one founds, the other joins
  EXPECT_TRUE(absl::StrContains(logs[0] + logs[1], "joined")) << logs[0] << "\n" << logs[1];

  fedcl::v1::GetStatusResponse status;
  ASSERT_TRUE(f.Status(&status).ok());
  ASSERT_EQ(status.pool_size(), 1) << status.DebugString();
  EXPECT_EQ(status.pool_merges(), 1);
  EXPECT_EQ(status.pool(0).holders(), 2);
  // The base experts are served like the head.
  int base_experts = 0;
  for (const auto& m : status.modules()) base_experts += absl::EndsWith(m.name(), "/e0");
  EXPECT_EQ(base_experts, 2) << status.DebugString();
}

}  // namespace
}  // namespace fedcl::testing
