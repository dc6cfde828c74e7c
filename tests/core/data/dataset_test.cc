#include "core/data/dataset.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::data {
namespace {

using ::testing::ElementsAre;

// Six 1x1x2 samples; sample i has pixels (i, 10 + i) and label i % 3.
Dataset Tiny() {
  Dataset data;
  data.channels = 1;
  data.height = 1;
  data.width = 2;
  data.num_classes = 3;
  data.images.resize(6, 2);
  for (int i = 0; i < 6; ++i) {
    data.images(i, 0) = static_cast<float>(i);
    data.images(i, 1) = static_cast<float>(10 + i);
    data.labels.push_back(i % 3);
  }
  return data;
}

TEST(DatasetTest, ConsistentDatasetValidates) {
  EXPECT_TRUE(Tiny().Validate().ok());
  EXPECT_EQ(Tiny().size(), 6);
  EXPECT_EQ(Tiny().sample_dim(), 2);
}

TEST(DatasetTest, InconsistentDatasetsFailValidation) {
  Dataset bad_label = Tiny();
  bad_label.labels[4] = 3;
  EXPECT_EQ(bad_label.Validate().code(), absl::StatusCode::kInvalidArgument);
  Dataset bad_rows = Tiny();
  bad_rows.labels.pop_back();
  EXPECT_EQ(bad_rows.Validate().code(), absl::StatusCode::kInvalidArgument);
  Dataset bad_shape = Tiny();
  bad_shape.width = 3;
  EXPECT_EQ(bad_shape.Validate().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DatasetTest, SubsetCopiesTheChosenSamplesInOrder) {
  auto subset = Subset(Tiny(), {5, 0, 5});
  ASSERT_TRUE(subset.ok()) << subset.status();
  EXPECT_THAT(subset->labels, ElementsAre(2, 0, 2));
  EXPECT_EQ(subset->images(0, 1), 15.0f);
  EXPECT_EQ(subset->images(1, 0), 0.0f);
  EXPECT_EQ(subset->num_classes, 3);
  EXPECT_TRUE(subset->Validate().ok());
}

TEST(DatasetTest, SubsetWithAnIndexOutOfRangeIsRejected) {
  EXPECT_EQ(Subset(Tiny(), {0, 6}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Subset(Tiny(), {-1}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DatasetTest, SelectClassesWithRelabelMapsClassesToTheirPosition) {
  auto task = SelectClasses(Tiny(), {2, 0}, /*relabel=*/true);
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->num_classes, 2);
  // Dataset order is kept: samples 0 (class 0), 2 (class 2), 3 (class 0), 5 (class 2).
  EXPECT_THAT(task->labels, ElementsAre(1, 0, 1, 0));
  EXPECT_EQ(task->images(1, 0), 2.0f);
  EXPECT_TRUE(task->Validate().ok());
}

TEST(DatasetTest, SelectClassesWithoutRelabelKeepsLabels) {
  auto task = SelectClasses(Tiny(), {1}, /*relabel=*/false);
  ASSERT_TRUE(task.ok()) << task.status();
  EXPECT_EQ(task->num_classes, 3);
  EXPECT_THAT(task->labels, ElementsAre(1, 1));
}

TEST(DatasetTest, SelectClassesRejectsEmptyRepeatedOrUnknownClasses) {
  EXPECT_EQ(SelectClasses(Tiny(), {}, true).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SelectClasses(Tiny(), {1, 1}, true).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SelectClasses(Tiny(), {3}, true).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DatasetTest, ClassCountsCountEachLabel) {
  Dataset data = Tiny();
  data.labels[0] = 1;
  EXPECT_THAT(ClassCounts(data), ElementsAre(1, 3, 2));
}

TEST(DatasetTest, GatherBatchReusesItsBuffersWhenTheBatchSizeIsUnchanged) {
  const Dataset data = Tiny();
  nn::Matrix images;
  std::vector<int32_t> labels;
  ASSERT_TRUE(GatherBatch(data, std::vector<int>{4, 1}, &images, &labels).ok());
  EXPECT_EQ(images.rows(), 2);
  EXPECT_EQ(images(0, 1), 14.0f);
  EXPECT_THAT(labels, ElementsAre(1, 1));
  const float* image_buffer = images.data();
  const int32_t* label_buffer = labels.data();
  ASSERT_TRUE(GatherBatch(data, std::vector<int>{2, 3}, &images, &labels).ok());
  EXPECT_EQ(images.data(), image_buffer);
  EXPECT_EQ(labels.data(), label_buffer);
  EXPECT_EQ(images(1, 0), 3.0f);
  EXPECT_THAT(labels, ElementsAre(2, 0));
}

TEST(DatasetTest, GatherBatchRejectsAnIndexOutOfRange) {
  nn::Matrix images;
  std::vector<int32_t> labels;
  EXPECT_EQ(GatherBatch(Tiny(), std::vector<int>{0, 9}, &images, &labels).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fedcl::data
