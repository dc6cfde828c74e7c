// fedcl-import's and fedcl-export's model conversion (model_io.h).
#include "tools/model_io/model_io.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/peft/pet_module.h"
#include "google/protobuf/text_format.h"
#include "proto/checkpoint.h"
#include "proto/fedcl/v1/checkpoint.pb.h"
#include "proto/safetensors.h"
#include "proto/text_format.h"

namespace fedcl::model_io {
namespace {

absl::Status Bad(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("import: ", what));
}

// At most five names, and how many more.
std::string Some(const std::vector<std::string>& names) {
  std::vector<std::string> shown(names.begin(), names.begin() + std::min<size_t>(names.size(), 5));
  std::string out = absl::StrJoin(shown, ", ");
  if (names.size() > 5) absl::StrAppend(&out, " and ", names.size() - 5, " more");
  return out;
}

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

absl::StatusOr<nn::ModelConfig> ConfigFromMetadata(const proto::SafetensorsFile& file) {
  auto it = file.metadata.find(kConfigMetadataKey);
  if (it == file.metadata.end()) {
    return Bad(absl::StrCat("the file does not say what model it holds (no '", kConfigMetadataKey,
                            "' metadata): describe it (fedcl-import --model)"));
  }
  v1::ModelConfig message;
  FEDCL_RETURN_IF_ERROR(proto::ParseTextFormat(it->second, &message));
  return proto::FromProto(message);
}

}  // namespace

namespace {

// Clears in `base` every list that `given` sets, at any depth, so that MergeFrom replaces lists
// instead of appending to them.
void ClearListsGiven(const google::protobuf::Message& given, google::protobuf::Message* base) {
  const google::protobuf::Reflection* reflection = given.GetReflection();
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  reflection->ListFields(given, &fields);
  for (const google::protobuf::FieldDescriptor* f : fields) {
    if (f->is_repeated()) {
      base->GetReflection()->ClearField(base, f);
    } else if (f->cpp_type() == google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
      ClearListsGiven(reflection->GetMessage(given, f),
                      base->GetReflection()->MutableMessage(base, f));
    }
  }
}

}  // namespace

absl::StatusOr<nn::ModelConfig> ParseModelDescription(absl::string_view text) {
  v1::ModelConfig given;
  if (absl::Status s = proto::ParseTextFormat(text, &given); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the model description does not parse: ", s.message()));
  }
  v1::ModelConfig merged;
  proto::ToProto(nn::ModelConfig(), &merged);
  ClearListsGiven(given, &merged);
  merged.MergeFrom(given);
  FEDCL_ASSIGN_OR_RETURN(nn::ModelConfig config, proto::FromProto(merged));
  FEDCL_RETURN_IF_ERROR(config.Validate());
  return config;
}

absl::StatusOr<std::map<std::string, std::string>> ParseRenameMap(absl::string_view text) {
  std::map<std::string, std::string> rename;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> names = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (names.size() != 2) {
      return absl::InvalidArgumentError(absl::StrCat("rename map line ", line_number,
                                                     ": expected '<file name> <fedcl name>', got '",
                                                     line.substr(0, 200), "'"));
    }
    if (!rename.emplace(std::string(names[0]), std::string(names[1])).second) {
      return absl::InvalidArgumentError(absl::StrCat("rename map line ", line_number, ": '",
                                                     names[0].substr(0, 200), "' is mapped twice"));
    }
  }
  return rename;
}

absl::StatusOr<std::unique_ptr<nn::Model>> ImportSafetensors(absl::string_view bytes,
                                                             const ImportOptions& options) {
  FEDCL_ASSIGN_OR_RETURN(const proto::SafetensorsFile file, proto::ParseSafetensors(bytes));
  nn::ModelConfig config;
  if (options.config.has_value()) {
    config = *options.config;
  } else {
    FEDCL_ASSIGN_OR_RETURN(config, ConfigFromMetadata(file));
  }
  FEDCL_RETURN_IF_ERROR(config.Validate());
  // The file's tensors by fedcl name.
  std::map<std::string, const proto::SafetensorsTensor*> by_name;
  for (const proto::SafetensorsTensor& t : file.tensors) {
    auto renamed = options.rename.find(t.name);
    const std::string& name = renamed == options.rename.end() ? t.name : renamed->second;
    if (!by_name.emplace(name, &t).second)
      return Bad(absl::StrCat("two of the file's tensors are named '", name, "' after renaming"));
  }
  FEDCL_ASSIGN_OR_RETURN(std::unique_ptr<nn::Model> model, nn::Model::Create(config, /*seed=*/1));
  std::set<std::string> used;
  std::vector<std::string> missing, misshaped;
  for (nn::ParameterSet* set : {&model->backbone().parameters(), &model->head().parameters()}) {
    for (int i = 0; i < set->num_tensors(); ++i) {
      const nn::TensorInfo& info = set->tensors()[i];
      auto it = by_name.find(info.name);
      if (it == by_name.end()) {
        missing.push_back(info.name);
        continue;
      }
      const proto::SafetensorsTensor& t = *it->second;
      used.insert(info.name);
      // A ViT patch embedding saved as a convolution [dim, C, p, p] is the same values as
      // fedcl's Linear [dim, C·p·p].
      const bool conv_patch = info.name == "patch_embed.proj.weight" && t.shape.size() == 4 &&
                              info.shape.size() == 2 && t.shape[0] == info.shape[0] &&
                              t.num_values() == info.size;
      if (t.shape != info.shape && !conv_patch) {
        misshaped.push_back(absl::StrCat(t.name, " ", ShapeText(t.shape), " (", info.name, " is ",
                                         ShapeText(info.shape), ")"));
        continue;
      }
      FEDCL_ASSIGN_OR_RETURN(std::vector<float> values, proto::SafetensorsFloats(t));
      for (float v : values) {
        if (!std::isfinite(v))
          return Bad(absl::StrCat("tensor '", t.name, "' has a value that is not finite"));
      }
      std::copy(values.begin(), values.end(), set->values(i));
    }
  }
  std::vector<std::string> extra;
  for (const auto& [name, t] : by_name)
    if (!used.contains(name)) extra.push_back(t->name);
  if (!missing.empty()) {
    return Bad(absl::StrCat("the file lacks ", missing.size(),
                            " of the model's tensors: ", Some(missing)));
  }
  if (!extra.empty()) {
    return Bad(absl::StrCat("the model has no place for ", extra.size(), " of the file's tensors: ",
                            Some(extra), " (rename them, or describe the model that has them)"));
  }
  if (!misshaped.empty()) {
    return Bad(absl::StrCat(misshaped.size(),
                            " tensors have another shape than the model's: ", Some(misshaped)));
  }
  return model;
}

absl::StatusOr<std::string> ExportSafetensors(std::unique_ptr<nn::Model> model,
                                              std::vector<ExportModule> modules) {
  std::vector<std::unique_ptr<peft::PetModule>> attached;
  for (ExportModule& m : modules) {
    absl::StatusOr<std::unique_ptr<peft::PetModule>> pet =
        peft::PetModule::FromParameters(m.name, m.config, m.values);
    absl::Status status = pet.status();
    if (status.ok()) status = (*pet)->Attach(*model);
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("export: module '", m.name, "' does not fit the model: ", status.message()));
    }
    attached.push_back(*std::move(pet));
  }
  // LoRA first: an SSF site's Linear must not carry a LoRA branch when SSF folds into it.
  for (peft::PetKind kind : {peft::PetKind::kLora, peft::PetKind::kSsf}) {
    for (auto& pet : attached) {
      if (pet != nullptr && pet->config().kind == kind) {
        FEDCL_RETURN_IF_ERROR(pet->MergeInto(*model));
        pet.reset();
      }
    }
  }
  std::map<std::string, std::string> metadata;
  v1::ModelConfig config;
  proto::ToProto(model->config(), &config);
  std::string config_text;
  google::protobuf::TextFormat::Printer printer;
  printer.SetSingleLineMode(true);
  printer.PrintToString(config, &config_text);
  metadata[kConfigMetadataKey] = config_text;
  metadata["format"] = "pt";  // what PyTorch's loaders expect
  std::vector<proto::SafetensorsOutput> tensors;
  for (const nn::ParameterSet* set :
       {&model->backbone().parameters(), &model->head().parameters()}) {
    for (int i = 0; i < set->num_tensors(); ++i) {
      const nn::TensorInfo& info = set->tensors()[i];
      tensors.push_back({info.name, info.shape, absl::MakeConstSpan(set->values(i), info.size)});
    }
  }
  for (const auto& pet : attached) {
    if (pet == nullptr) continue;  // merged
    v1::PetConfig pet_config;
    proto::ToProto(pet->config(), &pet_config);
    std::string text;
    printer.PrintToString(pet_config, &text);
    metadata[absl::StrCat("fedcl.module.", pet->name())] = text;
    const nn::ParameterSet& values = pet->parameters();
    for (int i = 0; i < values.num_tensors(); ++i) {
      const nn::TensorInfo& info = values.tensors()[i];
      tensors.push_back({absl::StrCat(pet->name(), "/", info.name), info.shape,
                         absl::MakeConstSpan(values.values(i), info.size)});
    }
  }
  return proto::EncodeSafetensors(tensors, metadata);
}

}  // namespace fedcl::model_io
