// fedcl-export: a fedcl model back as safetensors, for PyTorch: the backbone and head of a
// checkpoint with its modules, and with --server_state the global model a fedcl-server holds (its
// modules as of the last closed round, read from its state directory).
//
//   fedcl-export --checkpoint=backbone.ckpt --server_state=/var/lib/fedcl
//   --output=global.safetensors
//
// SSF and LoRA modules are merged into the backbone, adapters written as named tensors
// (tools/model_io/model_io.h). Modules that live on devices only (SEMA's experts, FedIns' pool,
// class statistics) are listed on stderr and left out. Exit code 0 on success, 1 on failure, 2
// for invalid flags.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "core/base/command_line.h"
#include "core/base/filesystem.h"
#include "core/base/status_macros.h"
#include "proto/checkpoint.h"
#include "server/sqlite_state_store.h"
#include "tools/model_io/model_io.h"

ABSL_FLAG(std::string, checkpoint, "",
          "The fedcl checkpoint of the model (required): the server's backbone_checkpoint, or one "
          "fedcl-pretrain or fedcl-import wrote.");
ABSL_FLAG(std::string, server_state, "",
          "Optional: a fedcl-server's state directory; its modules as of the last closed round "
          "(head, backbone, PET) are applied to the checkpoint's model.");
ABSL_FLAG(std::string, output, "", "The safetensors file to write (required).");

namespace fedcl::model_io {
namespace {

constexpr int kExitFailure = 1;
constexpr int kExitBadFlags = 2;

// The server's modules on top of the checkpoint's: head and backbone values replace the model's,
// PET modules replace the checkpoint's module of their name.
absl::Status ApplyServerState(base::FileSystem& fs, nn::Model& model,
                              std::vector<ExportModule>& modules) {
  server::SqliteStoreOptions store_options;
  store_options.directory = absl::GetFlag(FLAGS_server_state);
  // Opening a store creates one where there is none: a mistyped directory would export the
  // checkpoint alone, silently.
  if (!fs.Exists(base::JoinPath(store_options.directory, "state.db"))) {
    return absl::NotFoundError(absl::StrCat("--server_state: '", store_options.directory,
                                            "' holds no fedcl-server state (state.db)"));
  }
  store_options.full_sync = false;
  FEDCL_ASSIGN_OR_RETURN(auto store, server::SqliteStateStore::Open(fs, store_options));
  FEDCL_ASSIGN_OR_RETURN(fl::StoredState state, store->Load());
  for (fl::StoredModule& m : state.modules) {
    const std::string where = absl::StrCat("the server's module '", m.spec.name, "'");
    switch (m.spec.role) {
      case fl::ModuleRole::kHead:
      case fl::ModuleRole::kBackbone: {
        nn::ParameterSet& set = m.spec.role == fl::ModuleRole::kHead
                                    ? model.head().parameters()
                                    : model.backbone().parameters();
        if (absl::Status s = set.CheckSameLayout(m.values); !s.ok()) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, " does not fit the checkpoint's model: ", s.message()));
        }
        set.flat_values() = m.values.flat_values();
        break;
      }
      case fl::ModuleRole::kPet: {
        std::erase_if(modules, [&](const ExportModule& e) { return e.name == m.spec.name; });
        modules.push_back({m.spec.name, m.spec.pet, std::move(m.values)});
        break;
      }
      default:
        std::fprintf(stderr, "fedcl-export: %s lives on devices only; not exported\n",
                     where.c_str());
        break;
    }
  }
  return absl::OkStatus();
}

absl::Status Export() {
  base::FileSystem& fs = base::FileSystem::Default();
  FEDCL_ASSIGN_OR_RETURN(proto::LoadedCheckpoint loaded,
                         proto::LoadCheckpoint(fs, absl::GetFlag(FLAGS_checkpoint),
                                               proto::kDefaultMaxCheckpointBytes));
  std::vector<ExportModule> modules;
  for (const auto& pet : loaded.modules)
    modules.push_back({pet->name(), pet->config(), pet->parameters()});
  loaded.modules.clear();  // detached: ExportSafetensors attaches its own copies
  if (!absl::GetFlag(FLAGS_server_state).empty())
    FEDCL_RETURN_IF_ERROR(ApplyServerState(fs, *loaded.model, modules));
  const size_t count = modules.size();
  FEDCL_ASSIGN_OR_RETURN(const std::string bytes,
                         ExportSafetensors(std::move(loaded.model), std::move(modules)));
  FEDCL_RETURN_IF_ERROR(fs.WriteFileAtomically(absl::GetFlag(FLAGS_output), bytes));
  std::printf("exported the model with %zu modules (%zu bytes) to %s\n", count, bytes.size(),
              absl::GetFlag(FLAGS_output).c_str());
  return absl::OkStatus();
}

int Run(int argc, char** argv) {
  if (!base::ParseCommandLine(argc, argv, "fedcl-export",
                              "Writes a fedcl model as safetensors.\n"
                              "  fedcl-export --checkpoint=m.ckpt [--server_state=DIR] "
                              "--output=m.safetensors",
                              "tools/model_io/")) {
    return kExitBadFlags;
  }
  if (absl::GetFlag(FLAGS_checkpoint).empty() || absl::GetFlag(FLAGS_output).empty()) {
    std::fprintf(stderr, "fedcl-export: --checkpoint and --output are required\n");
    return kExitBadFlags;
  }
  if (absl::Status s = Export(); !s.ok()) {
    std::fprintf(stderr, "fedcl-export: %s\n", s.ToString().c_str());
    return kExitFailure;
  }
  return 0;
}

}  // namespace
}  // namespace fedcl::model_io

int main(int argc, char** argv) { return fedcl::model_io::Run(argc, argv); }
