// The data a device trains on: its share of Fashion-MNIST (or of any pair of IDX files), chosen
// by partition index and partition seed so that every device of a federation, and the simulator,
// cut the same dataset the same way.
//
//   client::LocalDataOptions data;
//   data.partition = client::PartitionKind::kDirichlet;
//   data.dirichlet_alpha = 0.1;
//   data.num_partitions = 100;
//   data.partition_seed = 1;                         // partition_index -1: client id mod 100
//   FEDCL_ASSIGN_OR_RETURN(data::Dataset local, client::LoadLocalData(fs, data, /*client=*/7));
//
// The partition's randomness is base::Rng::ForStream(partition_seed, {kPartitionStreamKey}),
// handed to data::PartitionIid / PartitionDirichlet / PartitionShards over the whole split; the
// device keeps partition `partition_index` of it. Thread-safe.
#ifndef FEDCL_CLIENT_LOCAL_DATA_H_
#define FEDCL_CLIENT_LOCAL_DATA_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/base/filesystem.h"
#include "core/data/dataset.h"
#include "core/fl/round_types.h"

namespace fedcl::client {

// The stream key of the partition's Rng ("part").
inline constexpr uint64_t kPartitionStreamKey = 0x70617274;

enum class PartitionKind {
  kIid,        // uniform at random, equal sizes
  kDirichlet,  // label skew, Dirichlet(alpha) proportions per client (FedAU's split)
  kShards,     // sorted by label, shards_per_client shards each (McMahan et al.)
};

// "iid", "dirichlet", "shards".
absl::string_view PartitionKindName(PartitionKind kind);
// InvalidArgument for any other name.
absl::StatusOr<PartitionKind> ParsePartitionKind(absl::string_view name);

struct LocalDataOptions {
  // Directory with Fashion-MNIST's gzip IDX files; its training split is used. Ignored when
  // images_path is set.
  std::string fashion_mnist_dir = "/usr/share/datasets/fashion-mnist";
  // A pair of files used instead of Fashion-MNIST when set, both or neither, optionally gzip:
  // IDX (images N×H×W and labels N, unsigned bytes), or NumPy .npy when the images' name ends in
  // .npy or .npy.gz (images uint8 or float32, [N, H, W], [N, H, W, C] or with
  // npy_channels_last false [N, C, H, W]; labels of any integer dtype; core/data/npy.h).
  std::string images_path;
  std::string labels_path;
  bool npy_channels_last = true;
  // Labels of the files must lie in [0, num_classes) (> 0).
  int num_classes = 10;
  // Standardise pixels with Fashion-MNIST's mean and standard deviation (what fedcl-pretrain
  // trains with); otherwise they are v / 255.
  bool normalize = true;
  // Use only the first max_samples samples of the dataset before partitioning (0 = all, >= 0).
  int max_samples = 0;
  // How the dataset is cut among num_partitions devices (>= 1).
  PartitionKind partition = PartitionKind::kIid;
  int num_partitions = 1;
  // Dirichlet concentration (> 0); smaller is more skewed.
  double dirichlet_alpha = 0.5;
  // Shards per device for kShards (>= 1).
  int shards_per_client = 2;
  // The partition this device keeps, in [0, num_partitions); -1 = client id mod num_partitions.
  int partition_index = -1;
  // Seeds the partition; every device of a federation must use the same one.
  uint64_t partition_seed = 0;

  // InvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

// The device's samples, a copy of its partition. Errors: InvalidArgument for invalid options or an
// empty partition (a Dirichlet split can leave a device with nothing: choose another seed, alpha
// or index); file and decoding errors of data::LoadFashionMnist / LoadIdxImageDataset pass through.
absl::StatusOr<data::Dataset> LoadLocalData(const base::FileSystem& fs,
                                            const LocalDataOptions& options, fl::ClientId client);

}  // namespace fedcl::client

#endif  // FEDCL_CLIENT_LOCAL_DATA_H_
