#include "server/token_auth.h"

#include <openssl/crypto.h>

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/base/status_macros.h"

namespace fedcl::server {
namespace {

constexpr absl::string_view kDigestPrefix = "sha256:";

absl::StatusOr<TokenDigest> ParseDigest(absl::string_view text) {
  if (!absl::ConsumePrefix(&text, kDigestPrefix) || text.size() != 64) {
    return absl::InvalidArgumentError("expected sha256:<64 hex digits>");
  }
  TokenDigest digest;
  for (size_t i = 0; i < 32; ++i) {
    int value = 0;
    for (int k = 0; k < 2; ++k) {
      const char c = absl::ascii_tolower(text[2 * i + k]);
      if (!absl::ascii_isxdigit(c)) return absl::InvalidArgumentError("bad hex digit in digest");
      value = value * 16 + (absl::ascii_isdigit(c) ? c - '0' : c - 'a' + 10);
    }
    digest[i] = static_cast<uint8_t>(value);
  }
  return digest;
}

absl::StatusOr<Principal> ParsePrincipal(absl::string_view kind, absl::string_view ids) {
  Principal principal;
  if (kind == "client") {
    if (!absl::SimpleAtoi(ids, &principal.first))
      return absl::InvalidArgumentError("bad client id");
    principal.last = principal.first;
    return principal;
  }
  if (kind == "worker") {
    std::vector<absl::string_view> range = absl::StrSplit(ids, '-');
    if (range.size() != 2 || !absl::SimpleAtoi(range[0], &principal.first) ||
        !absl::SimpleAtoi(range[1], &principal.last) || principal.first > principal.last) {
      return absl::InvalidArgumentError("bad worker range (expected FIRST-LAST)");
    }
    principal.worker = true;
    return principal;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown entry kind '", kind, "'"));
}

}  // namespace

size_t TokenAuthenticator::DigestHash::operator()(const TokenDigest& d) const {
  size_t h;
  std::memcpy(&h, d.data(), sizeof(h));  // a SHA-256 prefix is already uniformly distributed
  return h;
}

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::Parse(absl::string_view text,
                                                             absl::string_view source) {
  TokenAuthenticator auth;
  std::vector<Principal> seen;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line.substr(0, line.find('#')));
    if (line.empty()) continue;
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    auto fail = [&](absl::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokens file '", source, "' line ", line_number, ": ", why));
    };
    if (fields.size() != 3) return fail("expected '<client|worker> <ids> sha256:<hex>'");
    absl::StatusOr<Principal> principal = ParsePrincipal(fields[0], fields[1]);
    if (!principal.ok()) return fail(principal.status().message());
    absl::StatusOr<TokenDigest> digest = ParseDigest(fields[2]);
    if (!digest.ok()) return fail(digest.status().message());
    for (const Principal& other : seen) {
      if (principal->first <= other.last && other.first <= principal->last) {
        return fail("client ids overlap an earlier entry");
      }
    }
    if (!auth.principals_.emplace(*digest, *principal).second) return fail("duplicate token");
    seen.push_back(*principal);
  }
  return auth;
}

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::Load(const base::FileSystem& fs,
                                                            absl::string_view path) {
  FEDCL_ASSIGN_OR_RETURN(std::string text, fs.ReadFile(path, 64 << 20));
  return Parse(text, path);
}

absl::StatusOr<Principal> TokenAuthenticator::Authenticate(absl::string_view token) const {
  if (token.empty()) return absl::UnauthenticatedError("missing bearer token");
  const TokenDigest digest = proto::Sha256(token);
  auto it = principals_.find(digest);
  // The lookup only narrows the candidates; equality is decided in constant time.
  if (it == principals_.end() || CRYPTO_memcmp(it->first.data(), digest.data(), 32) != 0) {
    return absl::UnauthenticatedError("unknown token");
  }
  return it->second;
}

absl::Status TokenAuthenticator::Check(absl::string_view token, fl::ClientId client) const {
  FEDCL_ASSIGN_OR_RETURN(Principal principal, Authenticate(token));
  if (!principal.Covers(client)) {
    return absl::PermissionDeniedError(absl::StrCat("this token does not act for client ", client));
  }
  return absl::OkStatus();
}

}  // namespace fedcl::server
