// SHA-256 of bytes, as the protocol uses it: ServerInfo.backbone_digest is the hex SHA-256 of
// the backbone payload, and tokens files hold the SHA-256 of each bearer token. Shared by
// fedcl-server and fedcl-client (OpenSSL's implementation). Thread-safe.
#ifndef FEDCL_PROTO_DIGEST_H_
#define FEDCL_PROTO_DIGEST_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace fedcl::proto {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest Sha256(absl::string_view bytes);
// Lower-case hex, 64 characters.
std::string Sha256Hex(absl::string_view bytes);

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_DIGEST_H_
