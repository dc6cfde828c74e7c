#include "server/server_config.h"

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"
#include "proto/federation_convert.h"
#include "proto/fl_config.h"
#include "proto/text_format.h"

namespace fedcl::server {
namespace {

void ApplyDefaults(v1::ServerConfig& c) {
  proto::ApplyAggregatorDefaults(*c.mutable_aggregator());
  proto::ApplyRecipeDefaults(*c.mutable_recipe());
  if (c.round().duration_ms() == 0) c.mutable_round()->set_duration_ms(30000);
  if (!c.round().has_min_participants()) c.mutable_round()->set_min_participants(1);
  v1::UpdateLimits* l = c.mutable_limits();
  if (l->norm_policy().empty()) l->set_norm_policy("reject");
  if (l->max_message_bytes() == 0) l->set_max_message_bytes(4 << 20);
  if (l->chunk_bytes() == 0) l->set_chunk_bytes(1 << 20);
  if (l->max_concurrent_uploads() == 0) l->set_max_concurrent_uploads(4);
  if (l->max_uploads_per_client() == 0) l->set_max_uploads_per_client(1);
  if (l->upload_idle_timeout_ms() == 0) l->set_upload_idle_timeout_ms(60000);
  if (l->upload_timeout_ms() == 0) l->set_upload_timeout_ms(600000);
  if (c.journal().sync().empty()) c.mutable_journal()->set_sync("full");
  if (c.evaluation().split().empty()) c.mutable_evaluation()->set_split("test");
  if (c.evaluation().every_rounds() == 0) c.mutable_evaluation()->set_every_rounds(1);
  if (c.fold_threads() == 0) c.set_fold_threads(2);
  v1::PoolConfig* pool = c.mutable_pool();
  if (pool->capacity() == 0) pool->set_capacity(16);
  if (!pool->has_round_window()) pool->set_round_window(5);
  if (pool->divergence_threshold() == 0) pool->set_divergence_threshold(0.5);
  if (pool->expert_bottleneck() == 0) pool->set_expert_bottleneck(8);
}

absl::Status Invalid(absl::string_view source, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("server config '", source, "': ", message));
}

absl::Status Validate(const v1::ServerConfig& c, absl::string_view source) {
  if (c.state_dir().empty())
    return Invalid(source, "state_dir is required (in the config or --state_dir)");
  if (c.backbone_checkpoint().empty())
    return Invalid(source, "backbone_checkpoint is required (in the config or --backbone)");
  if (c.num_classes() < 0) return Invalid(source, "num_classes must be >= 0");
  if (c.fedins().pool_size() < 0 || c.fedins().pool_size() > 256)
    return Invalid(source, "fedins.pool_size must be in [0, 256]");
  if (c.module_size() == 0 && c.fedins().pool_size() == 0)
    return Invalid(source, "at least one module (or a fedins pool) is required");
  for (const v1::ModuleConfig& m : c.module()) {
    absl::StatusOr<fl::ModuleSpec> spec = ModuleSpecFrom(m);
    if (!spec.ok()) return Invalid(source, spec.status().message());
  }
  absl::StatusOr<fl::CoordinatorOptions> options = CoordinatorOptionsFrom(c);
  if (!options.ok()) return Invalid(source, options.status().message());
  // The model width is not known yet: check the bottleneck against the largest width allowed.
  if (absl::Status pool = proto::PoolOptionsFromProto(c.pool(), 65536).Validate(); !pool.ok()) {
    return Invalid(source, pool.message());
  }
  if (c.pool().base_experts() && c.pool().expandable_blocks().empty()) {
    return Invalid(source, "pool.base_experts needs pool.expandable_blocks");
  }
  const v1::UpdateLimits& l = c.limits();
  if (l.norm_policy() != "reject" && l.norm_policy() != "clip") {
    return Invalid(source, absl::StrCat("limits.norm_policy '", l.norm_policy(),
                                        "' (expected reject or clip)"));
  }
  if (l.max_message_bytes() < 4096 || l.max_message_bytes() > (int64_t{1} << 30)) {
    return Invalid(source, "limits.max_message_bytes must be in [4096, 1 GiB]");
  }
  if (l.chunk_bytes() < 1024 || l.chunk_bytes() > l.max_message_bytes() / 2) {
    return Invalid(source, "limits.chunk_bytes must be in [1024, max_message_bytes / 2]");
  }
  if (c.round().shards() < 0 || c.round().shards() > 100000) {
    return Invalid(source, "round.shards must be in [0, 100000]");
  }
  if (c.round().shards() > 0 && c.round().max_participants() > 0) {
    return Invalid(source,
                   "round.shards closes rounds when every shard reported; it cannot be "
                   "combined with round.max_participants");
  }
  if (l.max_concurrent_uploads() < 1 || l.max_concurrent_uploads() > 1024) {
    return Invalid(source, "limits.max_concurrent_uploads must be in [1, 1024]");
  }
  if (l.upload_idle_timeout_ms() < 0 || l.upload_timeout_ms() > 86400000) {
    return Invalid(source,
                   "limits.upload_idle_timeout_ms and upload_timeout_ms must be in [1, 86400000]");
  }
  if (absl::Status uploads = ServiceOptionsFrom(c).uploads.Validate(); !uploads.ok()) {
    return Invalid(source, uploads.message());
  }
  if (c.tls().cert_file().empty() != c.tls().key_file().empty()) {
    return Invalid(source, "tls needs both cert_file and key_file, or neither");
  }
  if (c.journal().sync() != "full" && c.journal().sync() != "normal") {
    return Invalid(source, "journal.sync must be full or normal");
  }
  const v1::EvaluationConfig& e = c.evaluation();
  if (e.split() != "test" && e.split() != "train")
    return Invalid(source, "evaluation.split must be test or train");
  if (e.max_samples() < 0 || e.every_rounds() < 1) {
    return Invalid(source, "evaluation.max_samples must be >= 0 and every_rounds >= 1");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<fl::ModuleSpec> ModuleSpecFrom(const v1::ModuleConfig& config) {
  return proto::ModuleSpecFromProto(config);
}

absl::StatusOr<fl::CoordinatorOptions> CoordinatorOptionsFrom(const v1::ServerConfig& c) {
  fl::CoordinatorOptions o;
  FEDCL_ASSIGN_OR_RETURN(o.aggregator, proto::RuleConfigFromProto(c.aggregator()));
  FEDCL_ASSIGN_OR_RETURN(o.recipe, proto::FromProto(c.recipe()));
  FEDCL_ASSIGN_OR_RETURN(o.round, proto::RoundPolicyConfigFromProto(c.round()));
  o.max_update_norm = c.limits().max_norm();
  o.norm_policy =
      c.limits().norm_policy() == "clip" ? fl::NormPolicy::kClip : fl::NormPolicy::kReject;
  for (const auto& [client, p] : c.participation_probability())
    o.participation_probability[client] = p;
  o.fold_threads = c.fold_threads();
  if (!c.upload_compression().empty()) {
    absl::StatusOr<fl::CompressionSpec> upload = fl::ParseCompressionSpec(c.upload_compression());
    if (!upload.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("upload_compression: ", upload.status().message()));
    }
    o.upload_compression = *upload;
  }
  FEDCL_RETURN_IF_ERROR(o.Validate());
  return o;
}

absl::StatusOr<fl::ModulePoolOptions> PoolOptionsFrom(const v1::ServerConfig& config,
                                                      const nn::ModelConfig& model) {
  if (config.pool().expandable_blocks().empty()) return fl::ModulePoolOptions{};
  if (model.backbone != nn::BackboneKind::kVit) {
    return absl::FailedPreconditionError(
        absl::StrCat("pool.expandable_blocks needs a ViT backbone; the checkpoint's is ",
                     nn::BackboneKindName(model.backbone)));
  }
  for (int block : config.pool().expandable_blocks()) {
    if (block < 0 || block >= model.vit.depth) {
      return absl::FailedPreconditionError(absl::StrCat("pool.expandable_blocks: block ", block,
                                                        " is not in the ViT's [0, ",
                                                        model.vit.depth, ")"));
    }
  }
  fl::ModulePoolOptions options = proto::PoolOptionsFromProto(config.pool(), model.vit.dim);
  if (absl::Status valid = options.Validate(); !valid.ok()) {
    return absl::FailedPreconditionError(valid.message());
  }
  return options;
}

ServiceOptions ServiceOptionsFrom(const v1::ServerConfig& c) {
  ServiceOptions o;
  o.max_message_bytes = c.limits().max_message_bytes();
  o.chunk_bytes = c.limits().chunk_bytes();
  o.uploads.capacity = c.limits().max_concurrent_uploads();
  o.uploads.per_client = c.limits().max_uploads_per_client();
  o.uploads.idle_timeout = absl::Milliseconds(c.limits().upload_idle_timeout_ms());
  o.uploads.total_timeout = absl::Milliseconds(c.limits().upload_timeout_ms());
  o.inline_submits = c.journal().disabled();
  return o;
}

absl::StatusOr<v1::ServerConfig> ParseServerConfig(absl::string_view text, absl::string_view source,
                                                   const ServerConfigOverrides& overrides) {
  v1::ServerConfig config;
  if (absl::Status parsed = proto::ParseTextFormat(text, &config); !parsed.ok()) {
    return Invalid(source, parsed.message());
  }
  if (!overrides.state_dir.empty()) config.set_state_dir(overrides.state_dir);
  if (!overrides.backbone_checkpoint.empty())
    config.set_backbone_checkpoint(overrides.backbone_checkpoint);
  if (!overrides.tokens_file.empty()) config.set_tokens_file(overrides.tokens_file);
  if (!overrides.tls_cert_file.empty())
    config.mutable_tls()->set_cert_file(overrides.tls_cert_file);
  if (!overrides.tls_key_file.empty()) config.mutable_tls()->set_key_file(overrides.tls_key_file);
  ApplyDefaults(config);
  FEDCL_RETURN_IF_ERROR(Validate(config, source));
  return config;
}

absl::StatusOr<v1::ServerConfig> LoadServerConfig(const base::FileSystem& fs,
                                                  absl::string_view path,
                                                  const ServerConfigOverrides& overrides) {
  FEDCL_ASSIGN_OR_RETURN(std::string text, fs.ReadFile(path, 16 << 20));
  return ParseServerConfig(text, path, overrides);
}

}  // namespace fedcl::server
