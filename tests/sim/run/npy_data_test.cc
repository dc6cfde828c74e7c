// The simulator on a user's own data: .npy train and test sets of 8x8 RGB images (channels last,
// as NumPy saves them) instead of Fashion-MNIST. The model takes its input size from the images
// and the federation learns the task.
#include <string>

#include "absl/strings/str_cat.h"
#include "core/base/memory_filesystem.h"
#include "core/base/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sim/run/engine.h"
#include "tests/core/data/npy_test_util.h"
#include "tests/sim/run/run_test_util.h"

namespace fedcl::sim {
namespace {

// `count` images of class i % 4: the class's quadrant lit in the class's colour channel (the
// fourth class in all three), with noise everywhere.
void WriteSet(base::MemoryFileSystem& fs, const std::string& prefix, int count, uint64_t seed) {
  base::Rng rng(seed);
  std::string pixels, labels;
  for (int i = 0; i < count; ++i) {
    const int label = i % 4;
    labels.push_back(static_cast<char>(label));
    for (int y = 0; y < 8; ++y) {
      for (int x = 0; x < 8; ++x) {
        const bool lit = (y / 4) * 2 + (x / 4) == label;
        for (int c = 0; c < 3; ++c) {
          const bool colour = label == 3 || c == label;
          pixels.push_back(static_cast<char>((lit && colour ? 170 : 30) + rng.UniformInt(60)));
        }
      }
    }
  }
  fs.SetFile(prefix + "_images.npy",
             data::testutil::EncodeNpy("|u1", absl::StrCat("(", count, ", 8, 8, 3)"), pixels));
  fs.SetFile(prefix + "_labels.npy",
             data::testutil::EncodeNpy("|u1", absl::StrCat("(", count, ",)"), labels));
}

constexpr char kScenario[] = R"pb(
  name: "npy"
  model { backbone: "mlp" mlp_hidden: 16 }
  data {
    partition: "iid"
    train_images: "/d/train_images.npy"
    train_labels: "/d/train_labels.npy"
    test_images: "/d/test_images.npy"
    test_labels: "/d/test_labels.npy"
    num_classes: 4
  }
  population { num_clients: 10 }
  participation { probabilities: "uniform" p_mean: 0.5 pattern: "bernoulli" }
  method { label: "fedau" }
  rounds: 30
  eval_every: 10
)pb";

TEST(NpyDataTest, TheSimulatorLearnsAUsersOwnRgbImages) {
  base::MemoryFileSystem fs;
  WriteSet(fs, "/d/train", 400, 1);
  WriteSet(fs, "/d/test", 100, 2);
  Scenario s = Parse(kScenario);
  absl::StatusOr<SimulationInputs> inputs = LoadInputs(fs, s);
  ASSERT_TRUE(inputs.ok()) << inputs.status();
  EXPECT_EQ(inputs->train.channels, 3);
  EXPECT_EQ(inputs->train.height, 8);
  EXPECT_EQ(inputs->train.num_classes, 4);
  EXPECT_EQ(inputs->test.size(), 100);
  absl::StatusOr<std::unique_ptr<nn::Model>> model = MakeModel(s, *inputs, 1);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ((*model)->config().image_channels, 3);

  absl::StatusOr<RunResult> run = Engine(s, *inputs).Run(s.methods[0], s.patterns[0], 1, nullptr);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->evals.size(), 3u);
  EXPECT_GT(run->evals.back().accuracy, 0.6) << "chance is 0.25";
}

TEST(NpyDataTest, AnIncompleteSetOfFilesIsRefusedNamingThem) {
  std::string text = kScenario;
  text.replace(text.find("test_labels: \"/d/test_labels.npy\""),
               std::string("test_labels: \"/d/test_labels.npy\"").size(), "");
  absl::StatusOr<Scenario> s = ParseScenario(text, "bad.textproto");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), ::testing::HasSubstr("go together"));
}

}  // namespace
}  // namespace fedcl::sim
