#include "core/data/fashion_mnist.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace fedcl::data {
namespace {

constexpr int64_t kMaxInt = std::numeric_limits<int>::max();

absl::Status CheckImageDims(const IdxArray& images, absl::string_view path,
                            const IdxImageOptions& options) {
  const std::vector<int64_t>& dims = images.dims;
  if (dims.size() != 3) {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "': expected images of N x H x W, ",
                                                   "got dimensions ", IdxDimsToString(dims)));
  }
  // dims[1] and dims[2] are bounded first: with N = 0 the decoder's overflow check does not
  // bound their product.
  if (dims[0] > kMaxInt || dims[1] == 0 || dims[2] == 0 || dims[1] > kMaxInt || dims[2] > kMaxInt ||
      dims[1] * dims[2] > kMaxInt) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "': unusable image dimensions ", IdxDimsToString(dims)));
  }
  if ((options.expected_height > 0 && dims[1] != options.expected_height) ||
      (options.expected_width > 0 && dims[2] != options.expected_width)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", path, "': images are ", dims[1], "x", dims[2], ", expected ", options.expected_height,
        "x", options.expected_width, " (dimensions ", IdxDimsToString(dims), ")"));
  }
  return absl::OkStatus();
}

absl::Status CheckLabels(const IdxArray& labels, int64_t num_images, absl::string_view labels_path,
                         absl::string_view images_path, int num_classes) {
  if (labels.dims.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat("'", labels_path,
                                                   "': expected one dimension of labels, got ",
                                                   IdxDimsToString(labels.dims)));
  }
  if (labels.dims[0] != num_images) {
    return absl::InvalidArgumentError(absl::StrCat("'", images_path, "' holds ", num_images,
                                                   " images but '", labels_path, "' holds ",
                                                   labels.dims[0], " labels"));
  }
  for (size_t i = 0; i < labels.values.size(); ++i) {
    if (labels.values[i] >= num_classes) {
      return absl::InvalidArgumentError(absl::StrCat("'", labels_path, "': label ",
                                                     labels.values[i], " of sample ", i,
                                                     " is outside [0, ", num_classes, ")"));
    }
  }
  return absl::OkStatus();
}

// Converts the first `rows` images to float through a 256-entry table: one pass, no branches.
void DecodePixels(const IdxArray& images, int rows, const IdxImageOptions& options,
                  nn::Matrix* out) {
  float table[256];
  for (int v = 0; v < 256; ++v) {
    const float x = static_cast<float>(v) / 255.0f;
    table[v] = options.normalize ? (x - options.mean) / options.stddev : x;
  }
  const int cols = static_cast<int>(images.dims[1] * images.dims[2]);
  out->resize(rows, cols);
  const uint8_t* in = images.values.data();
  float* dst = out->data();
  const int64_t count = int64_t{rows} * cols;
  for (int64_t i = 0; i < count; ++i) dst[i] = table[in[i]];
}

}  // namespace

absl::Status IdxImageOptions::Validate() const {
  if (num_classes <= 0 || num_classes > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_classes must be in [1, 256] for byte labels, got ", num_classes));
  }
  if (expected_height < 0 || expected_width < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected image size ", expected_height, "x", expected_width, " is negative"));
  }
  return ValidateImageScaling(normalize, mean, stddev, max_samples);
}

absl::StatusOr<Dataset> LoadIdxImageDataset(const base::FileSystem& fs,
                                            absl::string_view images_path,
                                            absl::string_view labels_path,
                                            const IdxImageOptions& options) {
  FEDCL_RETURN_IF_ERROR(options.Validate());
  FEDCL_ASSIGN_OR_RETURN(IdxArray images, ReadIdxFile(fs, images_path, options.max_file_bytes));
  FEDCL_RETURN_IF_ERROR(CheckImageDims(images, images_path, options));
  FEDCL_ASSIGN_OR_RETURN(IdxArray labels, ReadIdxFile(fs, labels_path, options.max_file_bytes));
  FEDCL_RETURN_IF_ERROR(
      CheckLabels(labels, images.dims[0], labels_path, images_path, options.num_classes));

  int rows = static_cast<int>(images.dims[0]);
  if (options.max_samples > 0) rows = std::min(rows, options.max_samples);
  Dataset data;
  data.num_classes = options.num_classes;
  data.channels = 1;
  data.height = static_cast<int>(images.dims[1]);
  data.width = static_cast<int>(images.dims[2]);
  DecodePixels(images, rows, options, &data.images);
  data.labels.assign(labels.values.begin(), labels.values.begin() + rows);
  return data;
}

absl::Status FashionMnistOptions::Validate() const {
  if (directory.empty()) return absl::InvalidArgumentError("Fashion-MNIST directory is empty");
  if (max_samples < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_samples is negative: ", max_samples));
  }
  return absl::OkStatus();
}

absl::StatusOr<Dataset> LoadFashionMnist(const base::FileSystem& fs,
                                         const FashionMnistOptions& options, Split split) {
  FEDCL_RETURN_IF_ERROR(options.Validate());
  const absl::string_view prefix = split == Split::kTrain ? "train" : "t10k";
  IdxImageOptions idx;
  idx.num_classes = kFashionMnistNumClasses;
  idx.expected_height = kFashionMnistHeight;
  idx.expected_width = kFashionMnistWidth;
  idx.normalize = options.normalize;
  idx.mean = kFashionMnistMean;
  idx.stddev = kFashionMnistStddev;
  idx.max_samples = options.max_samples;
  return LoadIdxImageDataset(
      fs, base::JoinPath(options.directory, absl::StrCat(prefix, "-images-idx3-ubyte.gz")),
      base::JoinPath(options.directory, absl::StrCat(prefix, "-labels-idx1-ubyte.gz")), idx);
}

}  // namespace fedcl::data
