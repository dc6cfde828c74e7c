#include "client/local_data.h"

#include <cmath>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/base/random.h"
#include "core/base/status_macros.h"
#include "core/data/fashion_mnist.h"
#include "core/data/npy.h"
#include "core/data/partition.h"

namespace fedcl::client {

absl::string_view PartitionKindName(PartitionKind kind) {
  switch (kind) {
    case PartitionKind::kIid:
      return "iid";
    case PartitionKind::kDirichlet:
      return "dirichlet";
    case PartitionKind::kShards:
      return "shards";
  }
  return "unknown";
}

absl::StatusOr<PartitionKind> ParsePartitionKind(absl::string_view name) {
  if (name == "iid") return PartitionKind::kIid;
  if (name == "dirichlet") return PartitionKind::kDirichlet;
  if (name == "shards") return PartitionKind::kShards;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown partition '", name, "' (expected iid, dirichlet or shards)"));
}

absl::Status LocalDataOptions::Validate() const {
  auto bad = [](absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat("local data: ", message));
  };
  if (images_path.empty() != labels_path.empty()) {
    return bad("images_path and labels_path go together");
  }
  if (images_path.empty() && fashion_mnist_dir.empty()) {
    return bad("give a Fashion-MNIST directory or IDX image and label files");
  }
  if (num_classes < 1) return bad("num_classes must be >= 1");
  if (max_samples < 0) return bad("max_samples must be >= 0");
  if (num_partitions < 1) return bad("num_partitions must be >= 1");
  if (!(dirichlet_alpha > 0.0) || !std::isfinite(dirichlet_alpha)) {
    return bad("dirichlet_alpha must be a finite number > 0");
  }
  if (shards_per_client < 1) return bad("shards_per_client must be >= 1");
  if (partition_index < -1 || partition_index >= num_partitions) {
    return bad(absl::StrCat("partition_index ", partition_index, " is outside [0, ", num_partitions,
                            ") (or -1 for client id mod num_partitions)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<data::Dataset> LoadLocalData(const base::FileSystem& fs,
                                            const LocalDataOptions& options, fl::ClientId client) {
  FEDCL_RETURN_IF_ERROR(options.Validate());
  data::Dataset all;
  if (options.images_path.empty()) {
    data::FashionMnistOptions fashion;
    fashion.directory = options.fashion_mnist_dir;
    fashion.normalize = options.normalize;
    fashion.max_samples = options.max_samples;
    FEDCL_ASSIGN_OR_RETURN(all, data::LoadFashionMnist(fs, fashion, data::Split::kTrain));
  } else if (absl::EndsWith(options.images_path, ".npy") ||
             absl::EndsWith(options.images_path, ".npy.gz")) {
    data::NpyImageOptions npy;
    npy.num_classes = options.num_classes;
    npy.channels_last = options.npy_channels_last;
    npy.normalize = options.normalize;
    npy.mean = data::kFashionMnistMean;
    npy.stddev = data::kFashionMnistStddev;
    npy.max_samples = options.max_samples;
    FEDCL_ASSIGN_OR_RETURN(
        all, data::LoadNpyImageDataset(fs, options.images_path, options.labels_path, npy));
  } else {
    data::IdxImageOptions idx;
    idx.num_classes = options.num_classes;
    idx.normalize = options.normalize;
    idx.mean = data::kFashionMnistMean;
    idx.stddev = data::kFashionMnistStddev;
    idx.max_samples = options.max_samples;
    FEDCL_ASSIGN_OR_RETURN(
        all, data::LoadIdxImageDataset(fs, options.images_path, options.labels_path, idx));
  }
  const int index = options.partition_index >= 0
                        ? options.partition_index
                        : static_cast<int>(client % static_cast<uint64_t>(options.num_partitions));
  if (options.num_partitions == 1) return all;
  base::Rng rng = base::Rng::ForStream(options.partition_seed, {kPartitionStreamKey});
  data::Partition parts;
  switch (options.partition) {
    case PartitionKind::kIid: {
      FEDCL_ASSIGN_OR_RETURN(parts, data::PartitionIid(all.size(), options.num_partitions, rng));
      break;
    }
    case PartitionKind::kDirichlet: {
      FEDCL_ASSIGN_OR_RETURN(
          parts, data::PartitionDirichlet(all.labels, all.num_classes, options.num_partitions,
                                          options.dirichlet_alpha, rng));
      break;
    }
    case PartitionKind::kShards: {
      FEDCL_ASSIGN_OR_RETURN(parts, data::PartitionShards(all.labels, options.num_partitions,
                                                          options.shards_per_client, rng));
      break;
    }
  }
  if (parts[index].empty()) {
    return absl::InvalidArgumentError(absl::StrCat("partition ", index, " of ",
                                                   options.num_partitions, " (",
                                                   PartitionKindName(options.partition), ", seed ",
                                                   options.partition_seed, ") holds no samples"));
  }
  return data::Subset(all, parts[index]);
}

}  // namespace fedcl::client
