#include "core/data/batching.h"

#include <algorithm>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::data {
namespace {

using ::testing::ElementsAre;

// The batches of one epoch, concatenated.
std::vector<int> OneEpoch(BatchSampler& sampler, std::vector<int>* sizes = nullptr) {
  std::vector<int> all, batch;
  while (sampler.Next(&batch)) {
    all.insert(all.end(), batch.begin(), batch.end());
    if (sizes != nullptr) sizes->push_back(static_cast<int>(batch.size()));
  }
  return all;
}

std::vector<int> Sorted(std::vector<int> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<int> Range(int n) {
  std::vector<int> v(n);
  for (int i = 0; i < n; ++i) v[i] = i;
  return v;
}

TEST(BatchSamplerTest, EveryEpochVisitsEachIndexOnceInANewOrder) {
  BatchSampler sampler(103, 10, /*seed=*/5, /*shuffle=*/true, /*drop_last=*/false);
  std::vector<int> sizes;
  const std::vector<int> first = OneEpoch(sampler, &sizes);
  EXPECT_EQ(sampler.epoch(), 1);
  const std::vector<int> second = OneEpoch(sampler);
  EXPECT_EQ(Sorted(first), Range(103));
  EXPECT_EQ(Sorted(second), Range(103));
  EXPECT_NE(first, second);
  EXPECT_NE(first, Range(103));
  EXPECT_EQ(sizes.size(), 11u);
  EXPECT_EQ(sizes.back(), 3);
  EXPECT_EQ(sampler.batches_per_epoch(), 11);
}

TEST(BatchSamplerTest, SeedFixesTheOrderOfEveryEpoch) {
  BatchSampler a(50, 8, 11, true, false), b(50, 8, 11, true, false), c(50, 8, 12, true, false);
  for (int epoch = 0; epoch < 3; ++epoch) {
    const std::vector<int> order = OneEpoch(a);
    EXPECT_EQ(order, OneEpoch(b));
    EXPECT_NE(order, OneEpoch(c));
  }
}

TEST(BatchSamplerTest, StartEpochReproducesThatEpoch) {
  BatchSampler sampler(40, 7, 3, true, false);
  OneEpoch(sampler);
  OneEpoch(sampler);
  const std::vector<int> third = OneEpoch(sampler);
  BatchSampler resumed(40, 7, 3, true, false);
  resumed.StartEpoch(2);
  EXPECT_EQ(OneEpoch(resumed), third);
}

TEST(BatchSamplerTest, WithoutShuffleBatchesFollowIndexOrder) {
  BatchSampler sampler(5, 2, 0, /*shuffle=*/false, /*drop_last=*/false);
  std::vector<int> batch;
  ASSERT_TRUE(sampler.Next(&batch));
  EXPECT_THAT(batch, ElementsAre(0, 1));
  ASSERT_TRUE(sampler.Next(&batch));
  ASSERT_TRUE(sampler.Next(&batch));
  EXPECT_THAT(batch, ElementsAre(4));
  EXPECT_FALSE(sampler.Next(&batch));
  EXPECT_TRUE(batch.empty());
}

TEST(BatchSamplerTest, DropLastSkipsTheShortFinalBatch) {
  BatchSampler sampler(23, 5, 1, true, /*drop_last=*/true);
  std::vector<int> sizes;
  const std::vector<int> visited = OneEpoch(sampler, &sizes);
  EXPECT_THAT(sizes, ElementsAre(5, 5, 5, 5));
  EXPECT_EQ(sampler.batches_per_epoch(), 4);
  EXPECT_EQ(visited.size(), 20u);
}

TEST(BatchSamplerTest, WrappingStreamCrossesEpochsWithoutEmptyBatches) {
  BatchSampler sampler(10, 4, 9, true, false);
  std::vector<int> batch, seen;
  for (int step = 0; step < 6; ++step) {  // Two epochs of 4 + 4 + 2.
    sampler.NextWrapping(&batch);
    ASSERT_FALSE(batch.empty());
    seen.insert(seen.end(), batch.begin(), batch.end());
  }
  EXPECT_EQ(sampler.epoch(), 1);
  EXPECT_EQ(Sorted(std::vector<int>(seen.begin(), seen.begin() + 10)), Range(10));
  EXPECT_EQ(Sorted(std::vector<int>(seen.begin() + 10, seen.end())), Range(10));
}

TEST(BatchSamplerTest, ZeroSamplesGiveNoBatches) {
  BatchSampler sampler(0, 4, 0, true, false);
  std::vector<int> batch{1};
  EXPECT_FALSE(sampler.Next(&batch));
  sampler.NextWrapping(&batch);
  EXPECT_TRUE(batch.empty());
}

TEST(BatchSamplerTest, CreateRejectsInvalidArguments) {
  EXPECT_EQ(BatchSampler::Create(10, 0, 0, true, false).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BatchSampler::Create(-1, 4, 0, true, false).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BatchSampler::Create(3, 4, 0, true, /*drop_last=*/true).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(BatchSampler::Create(3, 4, 0, true, false).ok());
}

}  // namespace
}  // namespace fedcl::data
