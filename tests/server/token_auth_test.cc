#include "server/token_auth.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace fedcl::server {
namespace {

std::string Entry(absl::string_view kind, absl::string_view ids, absl::string_view token) {
  return absl::StrCat(kind, " ", ids, " sha256:", proto::Sha256Hex(token), "\n");
}

TEST(Sha256Test, MatchesTheStandardTestVector) {
  EXPECT_EQ(proto::Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(TokenAuthenticatorTest, ClientAndWorkerTokensActForTheirIds) {
  auto auth = TokenAuthenticator::Parse(
      "# comment\n" + Entry("client", "7", "secret-7") + Entry("worker", "100-199", "w"), "t");
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_TRUE(auth->Check("secret-7", 7).ok());
  EXPECT_EQ(auth->Check("secret-7", 8).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(auth->Check("w", 100).ok());
  EXPECT_TRUE(auth->Check("w", 199).ok());
  EXPECT_EQ(auth->Check("w", 200).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(auth->Check("guess", 7).code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->Check("", 7).code(), absl::StatusCode::kUnauthenticated);
}

TEST(TokenAuthenticatorTest, MalformedFilesAreRejectedNamingTheLine) {
  struct Case {
    std::string text;
    std::string needle;
  };
  const Case cases[] = {
      {"client 1\n", "line 1"},
      {Entry("client", "1", "a") + "client x sha256:" + std::string(64, 'a') + "\n", "line 2"},
      {"client 1 md5:abc\n", "sha256"},
      {"client 1 sha256:" + std::string(63, 'a') + "\n", "sha256"},
      {"robot 1 sha256:" + std::string(64, 'a') + "\n", "unknown entry kind"},
      {Entry("client", "5", "a") + Entry("worker", "1-9", "b"), "overlap"},
      {Entry("client", "1", "same") + Entry("client", "2", "same"), "duplicate token"},
      {"worker 9-1 sha256:" + std::string(64, 'a') + "\n", "range"},
  };
  for (const Case& c : cases) {
    auto auth = TokenAuthenticator::Parse(c.text, "tokens.txt");
    ASSERT_FALSE(auth.ok()) << c.text;
    EXPECT_NE(auth.status().message().find(c.needle), std::string::npos) << auth.status();
  }
}

}  // namespace
}  // namespace fedcl::server
