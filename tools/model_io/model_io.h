// Bring your own model (issue 18, item 2): a model saved with PyTorch as safetensors becomes a
// fedcl model (fedcl-import writes it as a backbone checkpoint), and a fedcl model with its
// modules goes back as safetensors (fedcl-export).
//
// Names. fedcl's tensors are named as its ParameterSets name them ("layers.0.weight",
// "conv1.weight", "blocks.1.attn.qkv.weight", "cls_token", "head.weight", ...; docs/pretraining.md
// lists them per backbone); layouts are PyTorch's (Linear [out, in], Conv2d [Cout, Cin, k, k],
// qkv packed q | k | v), so values copy as they are. A file named otherwise (a PyTorch
// state_dict) is imported through a rename map, file name → fedcl name. The one reshape: a ViT
// patch embedding saved as a convolution, [dim, C, p, p], is taken as fedcl's [dim, C·p·p].
//
// Export writes fedcl's names, the model's configuration in the metadata (kConfigMetadataKey,
// so fedcl-import needs no description for fedcl's own files), SSF and LoRA modules merged into
// the backbone (W ← W + (α/r)·B·A, then SSF folded into the weights before it: exact up to float
// rounding), and every other module (adapters, which are a nonlinear branch) as its own tensors,
// "<module>/<tensor>", with its configuration in the metadata ("fedcl.module.<module>").
#ifndef FEDCL_TOOLS_MODEL_IO_MODEL_IO_H_
#define FEDCL_TOOLS_MODEL_IO_MODEL_IO_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/nn/model.h"
#include "core/nn/parameter_set.h"
#include "core/peft/pet_config.h"

namespace fedcl::model_io {

// The metadata key of the model's configuration (fedcl.v1.ModelConfig in text format).
inline constexpr char kConfigMetadataKey[] = "fedcl.model_config";

struct ImportOptions {
  // What to build; unset: the configuration the file's metadata carries (a fedcl export).
  std::optional<nn::ModelConfig> config;
  // File tensor name → fedcl tensor name; names not listed are taken as fedcl's.
  std::map<std::string, std::string> rename;
};

// The model `options` describe with every parameter from the safetensors `bytes`. Refused with
// InvalidArgument, naming them, and nothing built: a file the codec refuses
// (proto/safetensors.h), fedcl tensors the file lacks, file tensors the model has no place for,
// a shape that differs, a dtype other than F32, F16, BF16 or F64, a value that is not finite, an
// invalid configuration, or a rename map sending two names to one.
absl::StatusOr<std::unique_ptr<nn::Model>> ImportSafetensors(absl::string_view bytes,
                                                             const ImportOptions& options);

// A model description: fedcl.v1.ModelConfig in text format, over nn::ModelConfig's defaults
// (a field given replaces the default, lists included), e.g.
// 'backbone: "vit" vit { patch: 4 dim: 64 depth: 2 heads: 4 mlp_ratio: 4 } image_channels: 3
// image_height: 32 image_width: 32 num_classes: 10'. InvalidArgument for text that does not
// parse or a configuration that is not valid.
absl::StatusOr<nn::ModelConfig> ParseModelDescription(absl::string_view text);

// A rename map file: one "<file name> <fedcl name>" per line; blank lines and lines starting with
// '#' are skipped. InvalidArgument naming the line for anything else or a name mapped twice.
absl::StatusOr<std::map<std::string, std::string>> ParseRenameMap(absl::string_view text);

// A module to export with the model.
struct ExportModule {
  std::string name;
  peft::PetConfig config;
  nn::ParameterSet values;
};

// The safetensors file of `model` (consumed: the merges change it) with `modules` applied as the
// top of this file says. InvalidArgument naming a module that does not fit the model.
absl::StatusOr<std::string> ExportSafetensors(std::unique_ptr<nn::Model> model,
                                              std::vector<ExportModule> modules);

}  // namespace fedcl::model_io

#endif  // FEDCL_TOOLS_MODEL_IO_MODEL_IO_H_
