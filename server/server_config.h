// Loading and validating fedcl-server's configuration (fedcl.v1.ServerConfig, text format).
//
// LoadServerConfig parses the file strictly (unknown fields are errors), fills defaults for
// fields left unset and validates every value, so a bad configuration stops the server at
// start-up with a message naming the field rather than failing later.
#ifndef FEDCL_SERVER_SERVER_CONFIG_H_
#define FEDCL_SERVER_SERVER_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/base/filesystem.h"
#include "core/fl/coordinator.h"
#include "core/nn/model_config.h"
#include "proto/fedcl/v1/server_config.pb.h"
#include "server/federation_service.h"

namespace fedcl::server {

// Paths given on the command line, which replace the config's before it is validated: one
// config file serves every deployment (container, Kubernetes, the local launcher), each putting
// its files where it likes. Empty fields change nothing.
struct ServerConfigOverrides {
  std::string state_dir;
  std::string backbone_checkpoint;
  std::string tokens_file;
  std::string tls_cert_file;
  std::string tls_key_file;
};

// Parses text-format `text` (from `source`, for messages), applies the overrides and defaults,
// and validates.
absl::StatusOr<v1::ServerConfig> ParseServerConfig(absl::string_view text, absl::string_view source,
                                                   const ServerConfigOverrides& overrides = {});
absl::StatusOr<v1::ServerConfig> LoadServerConfig(const base::FileSystem& fs,
                                                  absl::string_view path,
                                                  const ServerConfigOverrides& overrides = {});

// The coordinator and service options the config describes (it must have been validated). The
// pool is left disabled: its options depend on the model (PoolOptionsFrom).
absl::StatusOr<fl::CoordinatorOptions> CoordinatorOptionsFrom(const v1::ServerConfig& config);
// The pool section for `model`: disabled without expandable blocks; otherwise the model must be a
// ViT with every expandable block below its depth, and the statistics dimension is its width.
// FailedPrecondition naming the mismatch otherwise.
absl::StatusOr<fl::ModulePoolOptions> PoolOptionsFrom(const v1::ServerConfig& config,
                                                      const nn::ModelConfig& model);
ServiceOptions ServiceOptionsFrom(const v1::ServerConfig& config);
absl::StatusOr<fl::ModuleSpec> ModuleSpecFrom(const v1::ModuleConfig& config);

}  // namespace fedcl::server

#endif  // FEDCL_SERVER_SERVER_CONFIG_H_
