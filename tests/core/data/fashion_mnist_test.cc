#include "core/data/fashion_mnist.h"

#include <chrono>
#include <cmath>
#include <iostream>
#include <string>
#include <vector>

#include "core/base/memory_filesystem.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/data/idx_test_util.h"

namespace fedcl::data {
namespace {

using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testutil::EncodeIdx;
using testutil::Gzip;

constexpr char kImages[] = "/d/images.gz";
constexpr char kLabels[] = "/d/labels.gz";

// Four 2x3 images, pixel j of image i = 10 * i + j; labels 0, 1, 2, 1.
class IdxImageDatasetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<uint8_t> pixels;
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 6; ++j) pixels.push_back(static_cast<uint8_t>(10 * i + j));
    }
    fs_.SetFile(kImages, Gzip(EncodeIdx({4, 2, 3}, pixels)));
    fs_.SetFile(kLabels, Gzip(EncodeIdx({4}, std::vector<uint8_t>{0, 1, 2, 1})));
    options_.num_classes = 3;
  }

  void ExpectInvalid(absl::string_view problem) {
    auto result = LoadIdxImageDataset(fs_, kImages, kLabels, options_);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << result.status();
    EXPECT_THAT(std::string(result.status().message()), HasSubstr(problem));
  }

  base::MemoryFileSystem fs_;
  IdxImageOptions options_;
};

TEST_F(IdxImageDatasetTest, LoadsPixelsScaledToTheUnitInterval) {
  auto data = LoadIdxImageDataset(fs_, kImages, kLabels, options_);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_TRUE(data->Validate().ok());
  EXPECT_EQ(data->size(), 4);
  EXPECT_EQ(data->channels, 1);
  EXPECT_EQ(data->height, 2);
  EXPECT_EQ(data->width, 3);
  EXPECT_EQ(data->num_classes, 3);
  EXPECT_THAT(data->labels, ElementsAre(0, 1, 2, 1));
  EXPECT_FLOAT_EQ(data->images(3, 5), 35.0f / 255.0f);
  EXPECT_FLOAT_EQ(data->images(0, 0), 0.0f);
}

TEST_F(IdxImageDatasetTest, NormalisationSubtractsTheMeanAndDividesByTheStddev) {
  options_.normalize = true;
  options_.mean = 0.5f;
  options_.stddev = 0.25f;
  auto data = LoadIdxImageDataset(fs_, kImages, kLabels, options_);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_FLOAT_EQ(data->images(2, 1), (21.0f / 255.0f - 0.5f) / 0.25f);
}

TEST_F(IdxImageDatasetTest, MaxSamplesKeepsTheFirstSamples) {
  options_.max_samples = 2;
  auto data = LoadIdxImageDataset(fs_, kImages, kLabels, options_);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->size(), 2);
  EXPECT_EQ(data->images.rows(), 2);
  EXPECT_THAT(data->labels, ElementsAre(0, 1));
}

TEST_F(IdxImageDatasetTest, LabelOutOfRangeIsRejectedNamingTheFile) {
  options_.num_classes = 2;
  ExpectInvalid("'/d/labels.gz': label 2 of sample 2 is outside [0, 2)");
}

TEST_F(IdxImageDatasetTest, CountMismatchIsRejectedNamingBothFiles) {
  fs_.SetFile(kLabels, Gzip(EncodeIdx({3}, std::vector<uint8_t>{0, 1, 2})));
  ExpectInvalid("'/d/images.gz' holds 4 images but '/d/labels.gz' holds 3 labels");
}

TEST_F(IdxImageDatasetTest, UnexpectedImageSizeIsRejected) {
  options_.expected_height = 28;
  options_.expected_width = 28;
  ExpectInvalid("images are 2x3, expected 28x28");
}

TEST_F(IdxImageDatasetTest, ImagesWithoutThreeDimensionsAreRejected) {
  fs_.SetFile(kImages, EncodeIdx({4, 6}, std::string(24, 'a')));
  ExpectInvalid("expected images of N x H x W, got dimensions 4x6");
}

TEST_F(IdxImageDatasetTest, MissingFileIsNotFound) {
  auto result = LoadIdxImageDataset(fs_, "/d/none.gz", kLabels, options_);
  EXPECT_EQ(result.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(IdxImageDatasetTest, InvalidOptionsAreRejected) {
  options_.normalize = true;
  options_.stddev = 0.0f;
  ExpectInvalid("positive stddev");
  FashionMnistOptions fashion;
  fashion.directory = "";
  EXPECT_EQ(fashion.Validate().code(), absl::StatusCode::kInvalidArgument);
}

TEST(FashionMnistTest, LoadsFromAnyDirectoryOfTheFileSystem) {
  base::MemoryFileSystem fs;
  std::vector<uint8_t> pixels(2 * 28 * 28, 255);
  fs.SetFile("/fm/t10k-images-idx3-ubyte.gz", Gzip(EncodeIdx({2, 28, 28}, pixels)));
  fs.SetFile("/fm/t10k-labels-idx1-ubyte.gz", Gzip(EncodeIdx({2}, std::vector<uint8_t>{9, 0})));
  FashionMnistOptions options;
  options.directory = "/fm";
  auto test = LoadFashionMnist(fs, options, Split::kTest);
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_THAT(test->labels, ElementsAre(9, 0));
  EXPECT_FLOAT_EQ(test->images(1, 100), (1.0f - kFashionMnistMean) / kFashionMnistStddev);
  EXPECT_EQ(LoadFashionMnist(fs, options, Split::kTrain).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(kFashionMnistClassNames[9], "Ankle boot");
}

// The real files from Debian's dataset-fashion-mnist package.
class RealFashionMnistTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs_.Exists(FashionMnistOptions().directory)) {
      GTEST_SKIP() << FashionMnistOptions().directory
                   << " is absent; install Debian's dataset-fashion-mnist to run this test";
    }
  }
  base::FileSystem& fs_ = base::FileSystem::Default();
};

TEST_F(RealFashionMnistTest, TrainingSetHasSixThousandStandardisedImagesPerClass) {
  const auto start = std::chrono::steady_clock::now();
  auto train = LoadFashionMnist(fs_, FashionMnistOptions(), Split::kTrain);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(train.ok()) << train.status();
  std::cout << "loaded the training set in " << seconds << " s\n";
  EXPECT_EQ(train->size(), 60000);
  EXPECT_EQ(train->images.cols(), 784);
  EXPECT_EQ(train->height, 28);
  EXPECT_EQ(train->width, 28);
  EXPECT_EQ(train->num_classes, 10);
  EXPECT_TRUE(train->Validate().ok());
  EXPECT_THAT(ClassCounts(*train), Each(6000));
  double sum = 0.0, sum_sq = 0.0;
  for (Eigen::Index i = 0; i < train->images.size(); ++i) {
    const double x = train->images.data()[i];
    sum += x;
    sum_sq += x * x;
  }
  const double mean = sum / train->images.size();
  const double variance = sum_sq / train->images.size() - mean * mean;
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(std::sqrt(variance), 1.0, 0.01);
}

TEST_F(RealFashionMnistTest, TestSetHasOneThousandImagesPerClassInTheUnitInterval) {
  FashionMnistOptions options;
  options.normalize = false;
  auto test = LoadFashionMnist(fs_, options, Split::kTest);
  ASSERT_TRUE(test.ok()) << test.status();
  EXPECT_EQ(test->size(), 10000);
  EXPECT_EQ(test->images.cols(), 784);
  EXPECT_THAT(ClassCounts(*test), Each(1000));
  EXPECT_GE(test->images.minCoeff(), 0.0f);
  EXPECT_LE(test->images.maxCoeff(), 1.0f);
}

}  // namespace
}  // namespace fedcl::data
