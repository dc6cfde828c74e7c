// Decoding of NumPy's .npy files, the format a PyTorch or NumPy user saves arrays in
// (numpy.save), so a device or a tool can train on a user's own images and labels.
//
// A .npy file is the magic bytes \x93NUMPY, a version (1.0, 2.0 or 3.0), the length of a header
// (2 bytes little-endian in 1.0, 4 in later versions), the header, and the values:
//
//   {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 28, 28), }
//
// The header is a Python dict literal with exactly those three keys. fedcl reads C-order arrays
// of little-endian (or single-byte) integers and float32; big-endian, Fortran-order, object and
// other dtypes are refused by name:
//
//   FEDCL_ASSIGN_OR_RETURN(data::NpyArray images, data::ReadNpyFile(fs, "/data/x_train.npy"));
//   // images.dtype == NpyDtype::kUint8, images.shape == {60000, 28, 28}
//
// As with IDX (idx.h), decoding never trusts the header: a short or oversized file, a bad magic
// number or version, a malformed header, a negative or overflowing shape are each an
// InvalidArgument whose message names the source and the problem, and a successful decode holds
// exactly product(shape) values. A file may be gzip-compressed (.npy.gz). Thread-safe.
#ifndef FEDCL_CORE_DATA_NPY_H_
#define FEDCL_CORE_DATA_NPY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/base/filesystem.h"
#include "core/data/dataset.h"
#include "core/data/idx.h"

namespace fedcl::data {

enum class NpyDtype { kUint8, kInt8, kInt16, kUint16, kInt32, kUint32, kInt64, kUint64, kFloat32 };

// "uint8", "float32", ...
absl::string_view NpyDtypeName(NpyDtype dtype);

struct NpyArray {
  NpyDtype dtype = NpyDtype::kUint8;
  std::vector<int64_t> shape;  // outermost first; empty for a scalar
  std::string bytes;           // product(shape) values, little-endian, C order

  int64_t num_elements() const;
  // Value `i` as an integer (integer dtypes only).
  int64_t IntegerAt(int64_t i) const;
};

// Decodes an uncompressed .npy file held in `bytes`; `source_name` prefixes every error.
absl::StatusOr<NpyArray> DecodeNpy(absl::string_view bytes, absl::string_view source_name);

// Reads `path` through `fs`, inflates it if it starts with the gzip magic bytes, and decodes it.
// `max_bytes` bounds the file and its decompressed size.
absl::StatusOr<NpyArray> ReadNpyFile(const base::FileSystem& fs, absl::string_view path,
                                     uint64_t max_bytes = kDefaultMaxIdxBytes);

struct NpyImageOptions {
  // Labels must lie in [0, num_classes).
  int num_classes = 10;
  // A 4-D image array is [N, H, W, C] (NumPy's and PIL's order) when true, [N, C, H, W]
  // (PyTorch's) when false. A 3-D array is [N, H, W] with one channel either way.
  bool channels_last = true;
  // uint8 pixels become v / 255, then with `normalize` (x - mean) / stddev. float32 pixels are
  // taken as they are (they must be finite), then normalized the same way if asked.
  bool normalize = false;
  float mean = 0.0f;
  float stddev = 1.0f;
  // Keep only the first max_samples samples (0 keeps all). The files are still fully validated.
  int max_samples = 0;
  uint64_t max_file_bytes = kDefaultMaxIdxBytes;

  // InvalidArgument naming the first bad field.
  absl::Status Validate() const;
};

// Reads images (uint8 or float32, [N, H, W] or 4-D as above) and labels (any integer dtype, [N])
// through `fs`. The result passes Dataset::Validate(). InvalidArgument naming the file and the
// problem: a dtype or rank that is not an image or a label array, counts that differ, a label
// outside [0, num_classes), a non-finite pixel, an image larger than 2^31 values.
absl::StatusOr<Dataset> LoadNpyImageDataset(const base::FileSystem& fs,
                                            absl::string_view images_path,
                                            absl::string_view labels_path,
                                            const NpyImageOptions& options);

}  // namespace fedcl::data

#endif  // FEDCL_CORE_DATA_NPY_H_
