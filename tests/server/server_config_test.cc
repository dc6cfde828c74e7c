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
  EXPECT_EQ(options->aggregator.name, "adaptive");
  const ServiceOptions service = ServiceOptionsFrom(*config);
  EXPECT_EQ(service.uploads.capacity, 4);
  EXPECT_EQ(service.uploads.per_client, 1);
  EXPECT_EQ(service.uploads.idle_timeout, absl::Seconds(60));
  EXPECT_EQ(service.uploads.total_timeout, absl::Minutes(10));
}

TEST(ServerConfigTest, UploadLimitsReachTheServiceOptions) {
  auto config =
      ParseServerConfig(std::string(kMinimal) +
                            "limits { max_concurrent_uploads: 6 max_uploads_per_client: 2 "
                            "upload_idle_timeout_ms: 250 upload_timeout_ms: 4000 }",
                        "c");
  ASSERT_TRUE(config.ok()) << config.status();
  const ServiceOptions service = ServiceOptionsFrom(*config);
  EXPECT_EQ(service.uploads.capacity, 6);
  EXPECT_EQ(service.uploads.per_client, 2);
  EXPECT_EQ(service.uploads.idle_timeout, absl::Milliseconds(250));
  EXPECT_EQ(service.uploads.total_timeout, absl::Seconds(4));
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
      {R"pb(limits { max_uploads_per_client: 5 })pb", "max_uploads_per_client"},
      {R"pb(limits { max_uploads_per_client: -1 })pb", "max_uploads_per_client"},
      {R"pb(limits { upload_idle_timeout_ms: -1 })pb", "upload_idle_timeout_ms"},
      {R"pb(limits { upload_idle_timeout_ms: 700000 })pb", "upload_timeout_ms must be >="},
      {R"pb(limits { upload_timeout_ms: 90000000 })pb", "upload_timeout_ms"},
      {R"pb(tls { cert_file: "a.pem" })pb", "tls"},
      {R"pb(module {
              name : "x"
              role : "pet"
              pet { kind : "prefix" }
            })pb",
       "prefix"},
      {R"pb(module { name : "y" role : "tail" })pb", "tail"},
      {R"pb(round { min_participants: 5 max_participants: 2 })pb", "min_participants"},
      {R"pb(module { name : "e" role : "expert" })pb", "ProposeModule"},
      {R"pb(pool { expandable_blocks: [ 2, 2 ] })pb", "block 2 is listed twice"},
      {R"pb(pool { expandable_blocks: -1 })pb", "expandable_blocks must be >= 0"},
      {R"pb(pool { expandable_blocks: 2 capacity: -3 })pb", "capacity"},
      {R"pb(pool { expandable_blocks: 2 round_window: -1 })pb", "round_window"},
      {R"pb(pool { expandable_blocks: 2 divergence_threshold: -0.5 })pb", "divergence_threshold"},
      {R"pb(pool { expandable_blocks: 2 expert_bottleneck: -8 })pb", "expert_bottleneck"},
      {R"pb(module { name : "k" role : "instance_pool" })pb", "fedins section"},
      {R"pb(fedins { pool_size: 300 })pb", "fedins.pool_size"},
      {R"pb(fedins { pool_size: -1 })pb", "fedins.pool_size"},
  };
  for (const Case& c : cases) {
    auto config = ParseServerConfig(std::string(kMinimal) + c.extra, "server.textproto");
    ASSERT_FALSE(config.ok()) << c.extra;
    EXPECT_NE(config.status().message().find(c.needle), std::string::npos) << config.status();
    EXPECT_NE(config.status().message().find("server.textproto"), std::string::npos);
  }
  EXPECT_FALSE(ParseServerConfig("module { name: \"h\" role: \"head\" }", "c").ok());  // no paths
}

// The pool section depends on the model: a ViT, blocks below its depth, statistics of its width.
TEST(ServerConfigTest, PoolOptionsFollowTheModel) {
  auto config =
      ParseServerConfig(std::string(kMinimal) + "pool { expandable_blocks: [2, 3] }", "c");
  ASSERT_TRUE(config.ok()) << config.status();
  nn::ModelConfig vit;  // the small ViT: dim 64, depth 4
  auto pool = PoolOptionsFrom(*config, vit);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_EQ(pool->expandable_blocks, (std::vector<int>{2, 3}));
  EXPECT_EQ(pool->statistics_dim, 64);
  EXPECT_EQ(pool->capacity, 16);
  EXPECT_EQ(pool->round_window, 5);
  EXPECT_EQ(pool->divergence_threshold, 0.5);
  EXPECT_EQ(pool->expert_bottleneck, 8);
  vit.vit.depth = 3;
  EXPECT_NE(PoolOptionsFrom(*config, vit).status().message().find("block 3"), std::string::npos);
  nn::ModelConfig mlp;
  mlp.backbone = nn::BackboneKind::kMlp;
  EXPECT_NE(PoolOptionsFrom(*config, mlp).status().message().find("ViT"), std::string::npos);
  auto off = ParseServerConfig(kMinimal, "c");
  EXPECT_FALSE(PoolOptionsFrom(*off, mlp)->enabled());
}

}  // namespace
}  // namespace fedcl::server
