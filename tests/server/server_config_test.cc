#include "server/server_config.h"

#include "gtest/gtest.h"

namespace fedcl::server {
namespace {

constexpr const char* kMinimal = R"pb(
  state_dir: "/tmp/s"
  backbone_checkpoint: "/tmp/b.ckpt"
  module {
    name: "ssf"
    role: "pet"
    pet { kind: "ssf" }
  }
  module { name: "head" role: "head" }
)pb";

TEST(ServerConfigTest, MinimalConfigGetsDefaults) {
  auto config = ParseServerConfig(kMinimal, "c");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->aggregator().kind(), "adaptive");
  EXPECT_EQ(config->recipe().local_steps(), 5);
  EXPECT_EQ(config->round().duration_ms(), 30000);
  EXPECT_EQ(config->round().min_participants(), 1);
  auto options = CoordinatorOptionsFrom(*config);
  ASSERT_TRUE(options.ok());
  EXPECT_EQ(options->aggregator.kind, fl::AggregatorKind::kAdaptive);
}

TEST(ServerConfigTest, BadConfigsAreRefusedNamingTheField) {
  struct Case {
    std::string extra;
    std::string needle;
  };
  const Case cases[] = {
      {"bogus_field: 1", "bogus_field"},
      {R"pb(aggregator { kind: "fedprox" })pb", "fedprox"},
      {R"pb(recipe { local_steps: -1 })pb", "local_steps"},
      {R"pb(limits { norm_policy: "shrink" })pb", "norm_policy"},
      {R"pb(limits { chunk_bytes: 5000000 })pb", "chunk_bytes"},
      {R"pb(tls { cert_file: "a.pem" })pb", "tls"},
      {R"pb(module {
              name : "x"
              role : "pet"
              pet { kind : "prefix" }
            })pb",
       "prefix"},
      {R"pb(module { name : "y" role : "tail" })pb", "tail"},
      {R"pb(round { min_participants: 5 max_participants: 2 })pb", "min_participants"},
  };
  for (const Case& c : cases) {
    auto config = ParseServerConfig(std::string(kMinimal) + c.extra, "server.textproto");
    ASSERT_FALSE(config.ok()) << c.extra;
    EXPECT_NE(config.status().message().find(c.needle), std::string::npos) << config.status();
    EXPECT_NE(config.status().message().find("server.textproto"), std::string::npos);
  }
  EXPECT_FALSE(ParseServerConfig("module { name: \"h\" role: \"head\" }", "c").ok());  // no paths
}

}  // namespace
}  // namespace fedcl::server
