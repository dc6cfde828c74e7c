// fedcl-export --server_state (tools/model_io/export_main.cc), run as a user runs it: a server's
// state directory, written by the server's own store, holds a round's head and an SSF module; the
// export applies both (the head's values, SSF merged into the backbone) and computes the model
// with the module attached, and leaves out modules that live on devices. A directory with no
// server state is refused rather than exported as the bare checkpoint.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/base/filesystem.h"
#include "core/base/random.h"
#include "core/peft/pet_module.h"
#include "gtest/gtest.h"
#include "proto/checkpoint.h"
#include "proto/safetensors.h"
#include "server/sqlite_state_store.h"
#include "tools/model_io/model_io.h"

namespace fedcl::model_io {
namespace {

void Randomize(nn::ParameterSet& set, base::Rng& rng) {
  for (int64_t i = 0; i < set.num_values(); ++i)
    set.flat_values()[i] = static_cast<float>(rng.Normal(0.0, 0.3));
}

int RunCommand(const std::string& command) {
  const int status = std::system((command + " > /dev/null 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(ExportServerStateTest, TheServersModulesAreAppliedAndSsfMerged) {
  const std::string dir = ::testing::TempDir() + "/export_server_state";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  base::FileSystem& fs = base::FileSystem::Default();
  nn::ModelConfig config;
  config.backbone = nn::BackboneKind::kMlp;
  config.mlp.hidden = {12, 8};
  config.image_channels = 2, config.image_height = 3, config.image_width = 3;
  config.num_classes = 4;
  auto model = nn::Model::Create(config, 3);
  ASSERT_TRUE(model.ok()) << model.status();
  base::Rng rng(4);
  Randomize((*model)->backbone().parameters(), rng);
  Randomize((*model)->head().parameters(), rng);
  ASSERT_TRUE(proto::SaveCheckpoint(fs, dir + "/backbone.ckpt", **model, {}, {}).ok());

  // What the server closed a round with: a new head, an SSF module, a SEMA expert.
  fl::RoundClose close;
  close.closed_round = 0;
  nn::ParameterSet head = (*model)->head().parameters();
  Randomize(head, rng);
  close.modules.push_back(
      {.spec = {.name = "head", .role = fl::ModuleRole::kHead}, .version = 1, .values = head});
  const peft::PetConfig ssf_config{.kind = peft::PetKind::kSsf};
  auto ssf = peft::PetModule::Create("ssf", ssf_config, (*model)->backbone(), rng);
  ASSERT_TRUE(ssf.ok()) << ssf.status();
  Randomize((*ssf)->parameters(), rng);
  close.modules.push_back({.spec = {.name = "ssf", .role = fl::ModuleRole::kPet, .pet = ssf_config},
                           .version = 1,
                           .values = (*ssf)->parameters()});
  close.modules.push_back(
      {.spec = {.name = "expert-1", .role = fl::ModuleRole::kExpert, .block = 2},
       .version = 1,
       .values = head});
  {
    auto store = server::SqliteStateStore::Open(fs, {.directory = dir + "/state"});
    ASSERT_TRUE(store.ok()) << store.status();
    ASSERT_TRUE((*store)->RoundClosed(close).ok());
  }

  // The expected function: the checkpoint's backbone with the SSF module attached, the new head.
  (*model)->head().parameters().flat_values() = head.flat_values();
  ASSERT_TRUE((*ssf)->Attach(**model).ok());
  nn::Matrix x(6, config.input_size());
  for (int64_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.Normal());
  const nn::Matrix expected = (*model)->Forward(x, false);

  const std::string exporter = FEDCL_EXPORT_BINARY;
  ASSERT_EQ(RunCommand(absl::StrCat(exporter, " --checkpoint=", dir,
                                    "/backbone.ckpt --server_state=", dir, "/state --output=", dir,
                                    "/global.safetensors")),
            0);
  absl::StatusOr<std::string> bytes = fs.ReadFile(dir + "/global.safetensors");
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  absl::StatusOr<std::unique_ptr<nn::Model>> exported = ImportSafetensors(*bytes, {});
  ASSERT_TRUE(exported.ok()) << exported.status() << " (the expert must be left out)";
  const nn::Matrix got = (*exported)->Forward(x, false);
  EXPECT_LT((got - expected).cwiseAbs().maxCoeff(),
            1e-4f * (1.0f + expected.cwiseAbs().maxCoeff()));

  // No server state there: refused, nothing written.
  EXPECT_EQ(RunCommand(absl::StrCat(exporter, " --checkpoint=", dir,
                                    "/backbone.ckpt --server_state=", dir,
                                    "/no-such-state --output=", dir, "/bare.safetensors")),
            1);
  EXPECT_FALSE(fs.Exists(dir + "/bare.safetensors"));
  EXPECT_FALSE(fs.Exists(dir + "/no-such-state/state.db"));
}

}  // namespace
}  // namespace fedcl::model_io
