#include "core/data/partition.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::data {
namespace {

using ::testing::ElementsAre;

// Checks that the clients' indices together are [0, num_samples), each exactly once.
void ExpectEveryIndexOnce(const Partition& clients, int num_samples) {
  std::vector<int> count(num_samples, 0);
  for (const std::vector<int>& client : clients) {
    for (int index : client) {
      ASSERT_GE(index, 0);
      ASSERT_LT(index, num_samples);
      ++count[index];
    }
  }
  for (int i = 0; i < num_samples; ++i) EXPECT_EQ(count[i], 1) << "index " << i;
}

// `per_class` samples of each of `num_classes` labels, interleaved (label of sample j is j % C).
std::vector<int32_t> InterleavedLabels(int num_classes, int per_class) {
  std::vector<int32_t> labels(num_classes * per_class);
  for (size_t j = 0; j < labels.size(); ++j) labels[j] = static_cast<int32_t>(j % num_classes);
  return labels;
}

std::vector<std::vector<int>> IndicesByLabel(const std::vector<int32_t>& labels, int num_classes) {
  std::vector<std::vector<int>> by_label(num_classes);
  for (size_t j = 0; j < labels.size(); ++j) by_label[labels[j]].push_back(static_cast<int>(j));
  return by_label;
}

// Mean over clients of the total variation distance between d_n and the uniform distribution.
double MeanDistanceFromUniform(const std::vector<int32_t>& labels, const Partition& clients,
                               int num_classes) {
  double total = 0.0;
  for (const std::vector<int>& client : clients) {
    auto d = EmpiricalLabelDistribution(labels, client, num_classes);
    EXPECT_TRUE(d.ok()) << d.status();
    for (double p : *d) total += 0.5 * std::abs(p - 1.0 / num_classes);
  }
  return total / clients.size();
}

TEST(PartitionIidTest, AssignsEveryIndexOnceInBalancedSortedParts) {
  base::Rng rng(1);
  auto clients = PartitionIid(103, 10, rng);
  ASSERT_TRUE(clients.ok()) << clients.status();
  ExpectEveryIndexOnce(*clients, 103);
  for (int n = 0; n < 10; ++n) {
    EXPECT_EQ((*clients)[n].size(), n < 3 ? 11u : 10u);
    EXPECT_TRUE(std::is_sorted((*clients)[n].begin(), (*clients)[n].end()));
  }
}

TEST(PartitionIidTest, SameSeedGivesSamePartition) {
  base::Rng a(4), b(4), c(5);
  EXPECT_EQ(*PartitionIid(50, 4, a), *PartitionIid(50, 4, b));
  EXPECT_NE(*PartitionIid(50, 4, a), *PartitionIid(50, 4, c));
}

TEST(PartitionIidTest, InvalidArgumentsAreRejected) {
  base::Rng rng(1);
  EXPECT_EQ(PartitionIid(10, 0, rng).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PartitionIid(-1, 2, rng).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PartitionDirichletTest, ChunksFollowTheRoundingFormulaForAHandComputedQ) {
  // Label 0: 10 samples, Q column (0.5, 0.25, 0.25) -> ends 5, round(7.5) = 8, 10.
  // Label 1: 5 samples, Q column (1, 0, 1) -> ends round(2.5) = 2 (half to even), 2, 5.
  // Label 2: 7 samples, all-zero column -> split evenly: ends round(7/3) = 2, round(14/3) = 5, 7.
  // Label 3: no samples.
  const std::vector<std::vector<double>> q = {
      {0.5, 1.0, 0.0, 0.3}, {0.25, 0.0, 0.0, 0.3}, {0.25, 1.0, 0.0, 0.4}};
  const std::vector<int32_t> labels = {1, 0, 2, 0, 1, 2, 0, 0, 2, 1, 0,
                                       2, 0, 1, 2, 0, 0, 2, 1, 0, 2, 0};
  const std::vector<std::vector<int>> ends = {{5, 8, 10}, {2, 2, 5}, {2, 5, 7}, {0, 0, 0}};

  auto clients = PartitionByLabelProportions(labels, 4, q);
  ASSERT_TRUE(clients.ok()) << clients.status();
  const std::vector<std::vector<int>> by_label = IndicesByLabel(labels, 4);
  for (int n = 0; n < 3; ++n) {
    std::vector<int> expected;
    for (int i = 0; i < 4; ++i) {
      const int start = n == 0 ? 0 : ends[i][n - 1];
      expected.insert(expected.end(), by_label[i].begin() + start,
                      by_label[i].begin() + ends[i][n]);
    }
    EXPECT_EQ((*clients)[n], expected) << "client " << n;
  }
  ExpectEveryIndexOnce(*clients, static_cast<int>(labels.size()));
}

TEST(PartitionDirichletTest, EachLabelIsCutIntoContiguousChunksInDatasetOrder) {
  const std::vector<int32_t> labels = InterleavedLabels(10, 300);
  base::Rng rng(17);
  auto clients = PartitionDirichlet(labels, 10, 20, 0.5, rng);
  ASSERT_TRUE(clients.ok()) << clients.status();
  ExpectEveryIndexOnce(*clients, 3000);
  // Reading the clients in order, each label's indices come out exactly in dataset order.
  std::vector<std::vector<int>> seen(10);
  for (const std::vector<int>& client : *clients) {
    for (int index : client) seen[labels[index]].push_back(index);
  }
  EXPECT_EQ(seen, IndicesByLabel(labels, 10));
}

TEST(PartitionDirichletTest, DrawsOneDirichletRowPerClientInClientOrder) {
  const std::vector<int32_t> labels = InterleavedLabels(5, 40);
  base::Rng rng(23), replay(23);
  auto clients = PartitionDirichlet(labels, 5, 8, 0.3, rng);
  std::vector<std::vector<double>> q;
  for (int n = 0; n < 8; ++n) q.push_back(replay.Dirichlet(0.3, 5));
  auto expected = PartitionByLabelProportions(labels, 5, q);
  ASSERT_TRUE(clients.ok() && expected.ok());
  EXPECT_EQ(*clients, *expected);
  EXPECT_EQ(rng.NextU64(), replay.NextU64());  // Nothing else was drawn.
}

TEST(PartitionDirichletTest, LargeAlphaGivesNearUniformLabelDistributions) {
  const std::vector<int32_t> labels = InterleavedLabels(10, 1000);
  base::Rng rng(2);
  auto clients = PartitionDirichlet(labels, 10, 10, 1000.0, rng);
  ASSERT_TRUE(clients.ok()) << clients.status();
  for (const std::vector<int>& client : *clients) {
    auto d = EmpiricalLabelDistribution(labels, client, 10);
    ASSERT_TRUE(d.ok());
    for (double p : *d) EXPECT_NEAR(p, 0.1, 0.02);
  }
  EXPECT_LT(MeanDistanceFromUniform(labels, *clients, 10), 0.05);
}

TEST(PartitionDirichletTest, SmallAlphaGivesSkewedLabelDistributions) {
  const std::vector<int32_t> labels = InterleavedLabels(10, 1000);
  base::Rng rng(2);
  auto clients = PartitionDirichlet(labels, 10, 50, 0.05, rng);
  ASSERT_TRUE(clients.ok()) << clients.status();
  ExpectEveryIndexOnce(*clients, 10000);
  Partition non_empty;
  for (const std::vector<int>& client : *clients) {
    if (!client.empty()) non_empty.push_back(client);
  }
  EXPECT_GT(MeanDistanceFromUniform(labels, non_empty, 10), 0.6);
}

TEST(PartitionDirichletTest, SameSeedGivesSamePartition) {
  const std::vector<int32_t> labels = InterleavedLabels(10, 50);
  base::Rng a(9), b(9), c(10);
  auto first = PartitionDirichlet(labels, 10, 7, 0.1, a);
  auto second = PartitionDirichlet(labels, 10, 7, 0.1, b);
  auto other = PartitionDirichlet(labels, 10, 7, 0.1, c);
  ASSERT_TRUE(first.ok() && second.ok() && other.ok());
  EXPECT_EQ(*first, *second);
  EXPECT_NE(*first, *other);
}

TEST(PartitionDirichletTest, InvalidArgumentsAreRejectedNamingTheValue) {
  const std::vector<int32_t> labels = {0, 1, 2};
  base::Rng rng(1);
  auto no_clients = PartitionDirichlet(labels, 3, 0, 0.1, rng);
  EXPECT_EQ(no_clients.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(no_clients.status().message()), testing::HasSubstr("num_clients"));
  EXPECT_EQ(PartitionDirichlet(labels, 3, 2, 0.0, rng).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PartitionDirichlet(labels, 3, 2, std::nan(""), rng).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto bad_label = PartitionDirichlet(labels, 2, 2, 0.1, rng);
  EXPECT_EQ(bad_label.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bad_label.status().message()), testing::HasSubstr("label 2"));
  EXPECT_EQ(PartitionByLabelProportions(labels, 3, {{1, 1, 1}, {1, 1}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PartitionByLabelProportions(labels, 3, {{1, -1, 1}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PartitionByLabelProportions(labels, 3, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PartitionShardsTest, ClientsGetWholeSingleLabelShards) {
  const std::vector<int32_t> labels = InterleavedLabels(10, 10);
  base::Rng rng(3);
  auto clients = PartitionShards(labels, 5, 2, rng);
  ASSERT_TRUE(clients.ok()) << clients.status();
  ExpectEveryIndexOnce(*clients, 100);
  for (const std::vector<int>& client : *clients) {
    ASSERT_EQ(client.size(), 20u);
    auto d = EmpiricalLabelDistribution(labels, client, 10);
    ASSERT_TRUE(d.ok());
    EXPECT_LE(std::count_if(d->begin(), d->end(), [](double p) { return p > 0; }), 2);
  }
}

TEST(PartitionShardsTest, UnevenCountsStillAssignEveryIndexOnce) {
  const std::vector<int32_t> labels = InterleavedLabels(3, 35);  // 105 samples, 12 shards.
  base::Rng rng(8);
  auto clients = PartitionShards(labels, 4, 3, rng);
  ASSERT_TRUE(clients.ok()) << clients.status();
  ExpectEveryIndexOnce(*clients, 105);
  for (const std::vector<int>& client : *clients) {
    EXPECT_GE(client.size(), 24u);
    EXPECT_LE(client.size(), 27u);
  }
}

TEST(PartitionShardsTest, TooFewSamplesOrNoShardsAreRejected) {
  const std::vector<int32_t> labels = InterleavedLabels(2, 5);
  base::Rng rng(1);
  EXPECT_EQ(PartitionShards(labels, 6, 2, rng).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PartitionShards(labels, 2, 0, rng).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PartitionShards(labels, 0, 2, rng).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(EmpiricalLabelDistributionTest, IsTheFractionOfEachLabel) {
  const std::vector<int32_t> labels = {0, 2, 2, 1, 2};
  auto d = EmpiricalLabelDistribution(labels, std::vector<int>{1, 2, 3, 0}, 4);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_THAT(*d, ElementsAre(0.25, 0.25, 0.5, 0.0));
  auto empty = EmpiricalLabelDistribution(labels, std::vector<int>{}, 3);
  ASSERT_TRUE(empty.ok());
  EXPECT_THAT(*empty, ElementsAre(0.0, 0.0, 0.0));
  EXPECT_EQ(EmpiricalLabelDistribution(labels, std::vector<int>{5}, 3).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(EmpiricalLabelDistribution(labels, std::vector<int>{1}, 2).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedcl::data
