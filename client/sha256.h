// SHA-256 for the client's integrity checks: the backbone it loads must be the one the server
// announces (ServerInfo.backbone_digest, the hex SHA-256 of the serialized ModelCheckpoint).
#ifndef FEDCL_CLIENT_SHA256_H_
#define FEDCL_CLIENT_SHA256_H_

#include <string>

#include "absl/strings/string_view.h"

namespace fedcl::client {

// Lower-case hex SHA-256 of `bytes` (64 characters), computed with OpenSSL. Thread-safe.
std::string Sha256Hex(absl::string_view bytes);

}  // namespace fedcl::client

#endif  // FEDCL_CLIENT_SHA256_H_
