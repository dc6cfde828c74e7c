// fedcl-import: a model saved as safetensors (PyTorch's safetensors.torch.save_file, or
// fedcl-export) becomes a fedcl checkpoint, the backbone devices and the server start from.
//
//   fedcl-import --safetensors=model.safetensors --rename_map=names.txt \
//     --model='backbone: "mlp" mlp { hidden: [256, 128] } num_classes: 10' --output=model.ckpt
//
// Tensors the model lacks, tensors it has no place for and shapes that differ are refused by
// name, and nothing is written (tools/model_io/model_io.h). --logits_for / --logits_out write the
// imported model's logits on images from a .npy, to check the import against the original.
// Exit code 0 on success, 1 if the import failed, 2 for invalid flags.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/command_line.h"
#include "core/base/filesystem.h"
#include "core/base/status_macros.h"
#include "core/data/npy.h"
#include "proto/checkpoint.h"
#include "tools/model_io/model_io.h"

ABSL_FLAG(std::string, safetensors, "", "The safetensors file to import (required).");
ABSL_FLAG(std::string, model, "",
          "The model it holds: fedcl.v1.ModelConfig in text format over the defaults, e.g. "
          "'backbone: \"cnn\" image_channels: 3 image_height: 32 image_width: 32 num_classes: "
          "10'. Empty: the configuration in the file's metadata (a file fedcl-export wrote).");
ABSL_FLAG(std::string, rename_map, "",
          "A file of '<file name> <fedcl name>' lines renaming the file's tensors to fedcl's "
          "(empty: the file uses fedcl's names).");
ABSL_FLAG(std::string, output, "", "The checkpoint to write (required).");
ABSL_FLAG(std::string, logits_for, "",
          "Optional: a float32 .npy of images, [n, C*H*W] or [n, C, H, W], fed to the imported "
          "model as they are.");
ABSL_FLAG(std::string, logits_out, "", "Where the logits of --logits_for go: a float32 .npy.");

namespace fedcl::model_io {
namespace {

constexpr int kExitFailure = 1;
constexpr int kExitBadFlags = 2;
constexpr uint64_t kMaxFileBytes = uint64_t{4} << 30;

// A float32 .npy of `m` (row-major, [rows, cols]).
std::string EncodeNpy(const nn::Matrix& m) {
  std::string header = absl::StrCat("{'descr': '<f4', 'fortran_order': False, 'shape': (", m.rows(),
                                    ", ", m.cols(), "), }");
  // Magic (6) + version (2) + length (2) + header + '\n', padded to a multiple of 64.
  header.append((64 - (10 + header.size() + 1) % 64) % 64, ' ');
  header.push_back('\n');
  std::string out = "\x93NUMPY";
  out.push_back(1);
  out.push_back(0);
  out.push_back(static_cast<char>(header.size() & 0xff));
  out.push_back(static_cast<char>(header.size() >> 8));
  out += header;
  out.append(reinterpret_cast<const char*>(m.data()),
             m.size() * sizeof(float));  // little-endian hosts
  return out;
}

absl::Status WriteLogits(nn::Model& model, base::FileSystem& fs) {
  FEDCL_ASSIGN_OR_RETURN(data::NpyArray images,
                         data::ReadNpyFile(fs, absl::GetFlag(FLAGS_logits_for), kMaxFileBytes));
  const int64_t per_image = model.config().input_size();
  if (images.dtype != data::NpyDtype::kFloat32 || images.shape.empty() || images.shape[0] <= 0 ||
      images.num_elements() != images.shape[0] * per_image) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--logits_for: expected float32 images of ", per_image, " values each, got ",
        data::NpyDtypeName(images.dtype), " [", absl::StrJoin(images.shape, ", "), "]"));
  }
  const Eigen::Map<const nn::Matrix> input(reinterpret_cast<const float*>(images.bytes.data()),
                                           images.shape[0], per_image);
  const nn::Matrix logits = model.Forward(input, /*training=*/false);
  return fs.WriteFileAtomically(absl::GetFlag(FLAGS_logits_out), EncodeNpy(logits));
}

absl::Status Import(int argc, char** argv) {
  base::FileSystem& fs = base::FileSystem::Default();
  ImportOptions options;
  if (!absl::GetFlag(FLAGS_model).empty()) {
    FEDCL_ASSIGN_OR_RETURN(options.config, ParseModelDescription(absl::GetFlag(FLAGS_model)));
  }
  if (!absl::GetFlag(FLAGS_rename_map).empty()) {
    FEDCL_ASSIGN_OR_RETURN(const std::string text, fs.ReadFile(absl::GetFlag(FLAGS_rename_map)));
    FEDCL_ASSIGN_OR_RETURN(options.rename, ParseRenameMap(text));
  }
  FEDCL_ASSIGN_OR_RETURN(const std::string bytes,
                         fs.ReadFile(absl::GetFlag(FLAGS_safetensors), kMaxFileBytes));
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<nn::Model> model, ImportSafetensors(bytes, options));
  proto::CheckpointMetadata metadata;
  metadata.created_by =
      absl::StrCat("fedcl-import ", FEDCL_VERSION, " ", absl::StrJoin(argv + 1, argv + argc, " "));
  FEDCL_RETURN_IF_ERROR(
      proto::SaveCheckpoint(fs, absl::GetFlag(FLAGS_output), *model, {}, metadata));
  if (!absl::GetFlag(FLAGS_logits_for).empty()) FEDCL_RETURN_IF_ERROR(WriteLogits(*model, fs));
  std::printf("imported %d backbone and %d head tensors (%lld values) into %s\n",
              model->backbone().parameters().num_tensors(),
              model->head().parameters().num_tensors(),
              static_cast<long long>(model->backbone().parameters().num_values() +
                                     model->head().parameters().num_values()),
              absl::GetFlag(FLAGS_output).c_str());
  return absl::OkStatus();
}

int Run(int argc, char** argv) {
  if (!base::ParseCommandLine(argc, argv, "fedcl-import",
                              "Turns a safetensors model into a fedcl checkpoint.\n"
                              "  fedcl-import --safetensors=m.safetensors --model='...' "
                              "--output=m.ckpt",
                              "tools/model_io/")) {
    return kExitBadFlags;
  }
  if (absl::GetFlag(FLAGS_safetensors).empty() || absl::GetFlag(FLAGS_output).empty() ||
      absl::GetFlag(FLAGS_logits_for).empty() != absl::GetFlag(FLAGS_logits_out).empty()) {
    std::fprintf(stderr,
                 "fedcl-import: --safetensors and --output are required, and --logits_for and "
                 "--logits_out go together\n");
    return kExitBadFlags;
  }
  if (absl::Status s = Import(argc, argv); !s.ok()) {
    std::fprintf(stderr, "fedcl-import: %s\n", s.ToString().c_str());
    return kExitFailure;
  }
  return 0;
}

}  // namespace
}  // namespace fedcl::model_io

int main(int argc, char** argv) { return fedcl::model_io::Run(argc, argv); }
