// Loading IDX image datasets, Fashion-MNIST in particular.
//
// Fashion-MNIST (Zalando, 2017) has 60,000 training and 10,000 test greyscale 28x28 images of
// ten clothing classes, 6,000 and 1,000 per class. Debian's dataset-fashion-mnist package installs
// its four gzip-compressed IDX files under /usr/share/datasets/fashion-mnist:
//
//   base::FileSystem& fs = base::FileSystem::Default();
//   FEDCL_ASSIGN_OR_RETURN(data::Dataset train,
//                          data::LoadFashionMnist(fs, data::FashionMnistOptions(),
//                                                 data::Split::kTrain));
//   // train.images: [60000, 784] floats, standardised; train.labels in [0, 10)
//
// LoadIdxImageDataset is the general form: any pair of IDX files (images N x H x W unsigned
// bytes, labels N unsigned bytes). Tests use it with small files in a MemoryFileSystem.
//
// Pixels are decoded straight to float32 in one pass: v / 255, then (x - mean) / stddev when
// normalising. Errors: those of ReadIdxFile (NotFound, ResourceExhausted, InvalidArgument, each
// naming the file), InvalidArgument when the files disagree (counts, shapes, labels out of
// range) naming both files, and InvalidArgument for invalid options. Thread-safe.
#ifndef FEDCL_CORE_DATA_FASHION_MNIST_H_
#define FEDCL_CORE_DATA_FASHION_MNIST_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/base/filesystem.h"
#include "core/data/dataset.h"
#include "core/data/idx.h"

namespace fedcl::data {

inline constexpr int kFashionMnistNumClasses = 10;
inline constexpr int kFashionMnistHeight = 28;
inline constexpr int kFashionMnistWidth = 28;

// Class names in label order (label 0 is "T-shirt/top").
inline constexpr std::array<absl::string_view, kFashionMnistNumClasses> kFashionMnistClassNames = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

// Mean and standard deviation of the training set's pixels after scaling to [0, 1] (all
// 60000·784 values; 0.28604 and 0.35302 to five places).
inline constexpr float kFashionMnistMean = 0.2860f;
inline constexpr float kFashionMnistStddev = 0.3530f;

// How LoadIdxImageDataset turns two IDX files into a Dataset.
struct IdxImageOptions {
  // Labels must lie in [0, num_classes).
  int num_classes = 10;
  // Required image size; 0 accepts whatever the file says.
  int expected_height = 0;
  int expected_width = 0;
  // Pixels become v / 255; with `normalize`, then (v / 255 - mean) / stddev.
  bool normalize = false;
  float mean = 0.0f;
  float stddev = 1.0f;
  // Keep only the first max_samples samples (0 keeps all). The files are still fully validated.
  int max_samples = 0;
  // Limit on each file, compressed and decompressed.
  uint64_t max_file_bytes = kDefaultMaxIdxBytes;

  // InvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

// Reads images (IDX unsigned bytes, N x H x W) and labels (IDX unsigned bytes, N) through `fs`;
// either file may be gzip-compressed. The result has channels = 1 and passes Dataset::Validate().
absl::StatusOr<Dataset> LoadIdxImageDataset(const base::FileSystem& fs,
                                            absl::string_view images_path,
                                            absl::string_view labels_path,
                                            const IdxImageOptions& options);

enum class Split { kTrain, kTest };

struct FashionMnistOptions {
  // Directory holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
  // t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz.
  std::string directory = "/usr/share/datasets/fashion-mnist";
  // Standardise with kFashionMnistMean / kFashionMnistStddev (the training set's statistics, used
  // for both splits); otherwise pixels are in [0, 1].
  bool normalize = true;
  // Keep only the first max_samples samples of the split (0 keeps all); for quick experiments.
  int max_samples = 0;

  // InvalidArgument for an empty directory or a negative max_samples.
  absl::Status Validate() const;
};

// Loads one split: 60000 (train) or 10000 (test) samples of 1 x 28 x 28, 10 classes.
absl::StatusOr<Dataset> LoadFashionMnist(const base::FileSystem& fs,
                                         const FashionMnistOptions& options, Split split);

}  // namespace fedcl::data

#endif  // FEDCL_CORE_DATA_FASHION_MNIST_H_
