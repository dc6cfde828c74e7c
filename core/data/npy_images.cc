// LoadNpyImageDataset (npy.h): a user's images and labels as .npy arrays into a Dataset, whose
// rows are in channel, row, column order whatever the file's layout.
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/data/npy.h"

namespace fedcl::data {
namespace {

constexpr int64_t kMaxInt = std::numeric_limits<int32_t>::max();

struct ImageGeometry {
  int64_t count = 0;
  int channels = 1, height = 0, width = 0;
};

absl::StatusOr<ImageGeometry> GeometryOf(const NpyArray& images, absl::string_view path,
                                         bool channels_last) {
  const std::vector<int64_t>& s = images.shape;
  if (images.dtype != NpyDtype::kUint8 && images.dtype != NpyDtype::kFloat32) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", path, "': images must be uint8 or float32, got ", NpyDtypeName(images.dtype)));
  }
  ImageGeometry g;
  if (s.size() == 3) {
    g = {s[0], 1, static_cast<int>(std::min(s[1], kMaxInt)),
         static_cast<int>(std::min(s[2], kMaxInt))};
  } else if (s.size() == 4 && channels_last) {
    g = {s[0], static_cast<int>(std::min(s[3], kMaxInt)), static_cast<int>(std::min(s[1], kMaxInt)),
         static_cast<int>(std::min(s[2], kMaxInt))};
  } else if (s.size() == 4) {
    g = {s[0], static_cast<int>(std::min(s[1], kMaxInt)), static_cast<int>(std::min(s[2], kMaxInt)),
         static_cast<int>(std::min(s[3], kMaxInt))};
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", path, "': images must be [N, H, W] or 4-D ([N, H, W, C] or [N, C, H, W]), got shape (",
        absl::StrJoin(s, ", "), ")"));
  }
  // The same bounds a model config puts on images (nn::ModelConfig::Validate).
  if (g.count > kMaxInt || g.channels < 1 || g.channels > 64 || g.height < 1 || g.height > 4096 ||
      g.width < 1 || g.width > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", path, "': unusable image array: ", g.count, " images of ", g.channels, " channels, ",
        g.height, "x", g.width, " (at most 64 channels and 4096x4096)"));
  }
  return g;
}

absl::Status CheckLabels(const NpyArray& labels, int64_t count, absl::string_view labels_path,
                         absl::string_view images_path, int num_classes) {
  if (labels.dtype == NpyDtype::kFloat32 || labels.shape.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", labels_path, "': labels must be a 1-D integer array, got ",
                     NpyDtypeName(labels.dtype), " of rank ", labels.shape.size()));
  }
  if (labels.shape[0] != count) {
    return absl::InvalidArgumentError(absl::StrCat("'", images_path, "' holds ", count,
                                                   " images but '", labels_path, "' holds ",
                                                   labels.shape[0], " labels"));
  }
  for (int64_t i = 0; i < count; ++i) {
    const int64_t label = labels.IntegerAt(i);
    if (label < 0 || label >= num_classes) {
      return absl::InvalidArgumentError(absl::StrCat("'", labels_path, "': label ", label,
                                                     " of sample ", i, " is outside [0, ",
                                                     num_classes, ")"));
    }
  }
  return absl::OkStatus();
}

// Pixel `i` of the file as a float: uint8 scaled to [0, 1], float32 as stored (little-endian,
// as every host fedcl builds for is).
float PixelAt(const NpyArray& images, int64_t i) {
  if (images.dtype == NpyDtype::kUint8) {
    return static_cast<float>(static_cast<uint8_t>(images.bytes[i])) / 255.0f;
  }
  float v;
  std::memcpy(&v, images.bytes.data() + 4 * i, 4);
  return v;
}

}  // namespace

absl::Status NpyImageOptions::Validate() const {
  if (num_classes <= 0 || num_classes > 65536) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_classes must be in [1, 65536], got ", num_classes));
  }
  return ValidateImageScaling(normalize, mean, stddev, max_samples);
}

absl::StatusOr<Dataset> LoadNpyImageDataset(const base::FileSystem& fs,
                                            absl::string_view images_path,
                                            absl::string_view labels_path,
                                            const NpyImageOptions& options) {
  FEDCL_RETURN_IF_ERROR(options.Validate());
  FEDCL_ASSIGN_OR_RETURN(NpyArray images, ReadNpyFile(fs, images_path, options.max_file_bytes));
  FEDCL_ASSIGN_OR_RETURN(const ImageGeometry g,
                         GeometryOf(images, images_path, options.channels_last));
  FEDCL_ASSIGN_OR_RETURN(NpyArray labels, ReadNpyFile(fs, labels_path, options.max_file_bytes));
  FEDCL_RETURN_IF_ERROR(
      CheckLabels(labels, g.count, labels_path, images_path, options.num_classes));

  const int64_t plane = int64_t{g.height} * g.width;
  const int64_t sample = plane * g.channels;
  if (sample > kMaxInt) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", images_path, "': an image of ", sample, " values is too large"));
  }
  int64_t rows = g.count;
  if (options.max_samples > 0) rows = std::min<int64_t>(rows, options.max_samples);
  const bool transpose = images.shape.size() == 4 && options.channels_last && g.channels > 1;
  Dataset data;
  data.num_classes = options.num_classes;
  data.channels = g.channels;
  data.height = g.height;
  data.width = g.width;
  data.images.resize(rows, sample);
  for (int64_t r = 0; r < rows; ++r) {
    float* out = data.images.data() + r * sample;
    for (int64_t j = 0; j < sample; ++j) {
      // Row j of the output is (channel c, pixel p); the file holds pixel-major when transposing.
      const int64_t in =
          transpose ? r * sample + (j % plane) * g.channels + j / plane : r * sample + j;
      float v = PixelAt(images, in);
      if (!std::isfinite(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("'", images_path, "': value ", in, " is not finite (", v, ")"));
      }
      if (options.normalize) v = (v - options.mean) / options.stddev;
      out[j] = v;
    }
  }
  data.labels.resize(rows);
  for (int64_t r = 0; r < rows; ++r) data.labels[r] = static_cast<int32_t>(labels.IntegerAt(r));
  return data;
}

}  // namespace fedcl::data
