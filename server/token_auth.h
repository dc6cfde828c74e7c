// Per-client bearer tokens, held only as hashes.
//
// The tokens file has one entry per line ('#' starts a comment):
//
//   client 17 sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//   worker 1000-1999 sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
//
// A client token authenticates one client id; a worker token (a simulator worker) authenticates
// every client id in its inclusive range. deploy/make_tokens.sh makes tokens and this file.
// Tokens are random secrets of at least 128 bits, so one SHA-256 is enough: there is nothing to
// brute-force that a slow password hash would protect.
//
// Authenticate hashes the presented token, looks the hash up and compares it with
// CRYPTO_memcmp, so the comparison never short-circuits on the secret's bytes. Thread-safe
// (immutable after loading).
#ifndef FEDCL_SERVER_TOKEN_AUTH_H_
#define FEDCL_SERVER_TOKEN_AUTH_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/base/filesystem.h"
#include "core/fl/round_types.h"
#include "proto/digest.h"

namespace fedcl::server {

using TokenDigest = proto::Sha256Digest;

// Who a token speaks for: one client, or a worker acting for [first, last].
struct Principal {
  bool worker = false;
  fl::ClientId first = 0;
  fl::ClientId last = 0;
  bool Covers(fl::ClientId client) const { return client >= first && client <= last; }
};

class TokenAuthenticator {
 public:
  // Parses a tokens file's text; InvalidArgument naming the line for malformed entries,
  // duplicate digests or overlapping client ids.
  static absl::StatusOr<TokenAuthenticator> Parse(absl::string_view text, absl::string_view source);
  static absl::StatusOr<TokenAuthenticator> Load(const base::FileSystem& fs,
                                                 absl::string_view path);

  // Checks `token` (the bearer value) may act for `client`: Unauthenticated for a missing or
  // unknown token, PermissionDenied for a valid token of another client.
  absl::Status Check(absl::string_view token, fl::ClientId client) const;
  // Just the token: the principal it authenticates, or Unauthenticated.
  absl::StatusOr<Principal> Authenticate(absl::string_view token) const;

  size_t size() const { return principals_.size(); }

 private:
  struct DigestHash {
    size_t operator()(const TokenDigest& d) const;
  };
  absl::flat_hash_map<TokenDigest, Principal, DigestHash> principals_;
};

}  // namespace fedcl::server

#endif  // FEDCL_SERVER_TOKEN_AUTH_H_
