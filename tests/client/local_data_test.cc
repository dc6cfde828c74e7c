#include "client/local_data.h"

#include <algorithm>
#include <vector>

#include "core/base/memory_filesystem.h"
#include "gtest/gtest.h"
#include "tests/client/client_test_util.h"
#include "tests/core/data/npy_test_util.h"

namespace fedcl::client {
namespace {

class LocalDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto [images, labels] = testing::WriteSyntheticIdx(fs_, "/data", 103, 5);
    options_.images_path = images;
    options_.labels_path = labels;
    options_.num_classes = 4;
  }
  base::MemoryFileSystem fs_;
  LocalDataOptions options_;
};

TEST_F(LocalDataTest, WithOnePartitionTheDeviceHasEverything) {
  absl::StatusOr<data::Dataset> local = LoadLocalData(fs_, options_, 9);
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(local->size(), 103);
  EXPECT_EQ(local->channels, 1);
  EXPECT_EQ(local->height, 8);
  EXPECT_EQ(local->num_classes, 4);
}

// Every sample is in exactly one device's partition: the partitions are disjoint and together
// they are the dataset (samples told apart by their pixels, which the fixture makes distinct).
TEST_F(LocalDataTest, PartitionsOfAllDevicesCoverTheDatasetOnce) {
  auto rows_of = [](const data::Dataset& d) {
    std::vector<std::vector<float>> rows;
    for (int i = 0; i < d.size(); ++i) {
      const auto row = d.images.row(i);
      rows.emplace_back(row.data(), row.data() + row.size());
    }
    return rows;
  };
  absl::StatusOr<data::Dataset> all = LoadLocalData(fs_, options_, 0);
  ASSERT_TRUE(all.ok()) << all.status();
  std::vector<std::vector<float>> everything = rows_of(*all);
  std::sort(everything.begin(), everything.end());
  ASSERT_EQ(std::adjacent_find(everything.begin(), everything.end()), everything.end())
      << "the fixture's samples must be distinct";
  for (PartitionKind kind :
       {PartitionKind::kIid, PartitionKind::kDirichlet, PartitionKind::kShards}) {
    options_.partition = kind;
    options_.num_partitions = 4;
    options_.partition_seed = 3;
    options_.dirichlet_alpha = 100.0;  // near-uniform, so no device is left empty
    std::vector<std::vector<float>> union_of_partitions;
    for (int i = 0; i < 4; ++i) {
      options_.partition_index = i;
      absl::StatusOr<data::Dataset> local = LoadLocalData(fs_, options_, 0);
      ASSERT_TRUE(local.ok()) << PartitionKindName(kind) << ": " << local.status();
      EXPECT_GT(local->size(), 0) << PartitionKindName(kind) << " partition " << i;
      for (auto& row : rows_of(*local)) union_of_partitions.push_back(std::move(row));
    }
    std::sort(union_of_partitions.begin(), union_of_partitions.end());
    EXPECT_EQ(union_of_partitions, everything) << PartitionKindName(kind);
  }
}

TEST_F(LocalDataTest, DefaultPartitionIsTheClientIdModuloThePartitions) {
  options_.num_partitions = 4;
  options_.partition_seed = 11;
  absl::StatusOr<data::Dataset> by_client = LoadLocalData(fs_, options_, 6);
  options_.partition_index = 2;
  absl::StatusOr<data::Dataset> by_index = LoadLocalData(fs_, options_, 0);
  ASSERT_TRUE(by_client.ok() && by_index.ok());
  EXPECT_EQ(by_client->labels, by_index->labels);
  EXPECT_EQ(by_client->images, by_index->images);
}

TEST_F(LocalDataTest, SameSeedSameSplitOtherSeedOtherSplit) {
  options_.num_partitions = 4;
  options_.partition_index = 1;
  options_.partition_seed = 1;
  absl::StatusOr<data::Dataset> a = LoadLocalData(fs_, options_, 0);
  absl::StatusOr<data::Dataset> b = LoadLocalData(fs_, options_, 0);
  options_.partition_seed = 2;
  absl::StatusOr<data::Dataset> c = LoadLocalData(fs_, options_, 0);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a->images, b->images);
  EXPECT_NE(a->images, c->images);
}

// The same images and labels as .npy files (what a NumPy or PyTorch user saves) give the same
// local dataset as the IDX files, pixel for pixel; labels may be any integer dtype.
TEST_F(LocalDataTest, NpyFilesGiveTheSameDatasetAsTheSameDataInIdx) {
  const std::string idx_images = *fs_.ReadFile(options_.images_path);
  const std::string idx_labels = *fs_.ReadFile(options_.labels_path);
  // IDX headers: 4 + 4·3 bytes for the images, 4 + 4 for the labels (WriteSyntheticIdx: 8×8).
  fs_.SetFile("/data/x.npy",
              data::testutil::EncodeNpy("|u1", "(103, 8, 8)", idx_images.substr(16)));
  std::string labels64;
  for (char label : idx_labels.substr(8)) {
    const int64_t value = static_cast<uint8_t>(label);
    labels64.append(reinterpret_cast<const char*>(&value), 8);
  }
  fs_.SetFile("/data/y.npy", data::testutil::EncodeNpy("<i8", "(103,)", labels64));
  LocalDataOptions npy = options_;
  npy.images_path = "/data/x.npy";
  npy.labels_path = "/data/y.npy";
  npy.num_partitions = 3;
  options_.num_partitions = 3;
  for (bool normalize : {false, true}) {
    npy.normalize = options_.normalize = normalize;
    absl::StatusOr<data::Dataset> from_idx = LoadLocalData(fs_, options_, 5);
    absl::StatusOr<data::Dataset> from_npy = LoadLocalData(fs_, npy, 5);
    ASSERT_TRUE(from_idx.ok()) << from_idx.status();
    ASSERT_TRUE(from_npy.ok()) << from_npy.status();
    EXPECT_EQ(from_npy->labels, from_idx->labels);
    EXPECT_EQ(from_npy->images, from_idx->images) << "normalize " << normalize;
    EXPECT_EQ(from_npy->height, 8);
  }
}

TEST_F(LocalDataTest, InvalidOptionsAreRefused) {
  LocalDataOptions bad = options_;
  bad.labels_path.clear();
  EXPECT_TRUE(absl::IsInvalidArgument(LoadLocalData(fs_, bad, 0).status()));
  bad = options_;
  bad.num_partitions = 2;
  bad.partition_index = 2;
  EXPECT_TRUE(absl::IsInvalidArgument(LoadLocalData(fs_, bad, 0).status()));
  bad = options_;
  bad.dirichlet_alpha = 0.0;
  EXPECT_TRUE(absl::IsInvalidArgument(LoadLocalData(fs_, bad, 0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(ParsePartitionKind("random").status()));
  bad = options_;
  bad.images_path = "/data/missing.idx";
  EXPECT_TRUE(absl::IsNotFound(LoadLocalData(fs_, bad, 0).status()));
}

}  // namespace
}  // namespace fedcl::client
