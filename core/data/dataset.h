// An in-memory labelled image dataset and the operations the learners need on it.
//
// A Dataset owns its samples: one row of `images` per sample, the pixels flattened in
// channel, row, column order (so a row reshapes to [channels, height, width]), and one label per
// sample. Clients of a federation and tasks of a continual stream are carved out of a dataset
// with Subset and SelectClasses (copies, so each piece can be handed to its own thread); training
// loops fill a reusable batch with GatherBatch:
//
//   FEDCL_ASSIGN_OR_RETURN(data::Dataset task, data::SelectClasses(train, {0, 1}, true));
//   nn::Matrix x;
//   std::vector<int32_t> y;
//   while (sampler.Next(&indices)) {
//     FEDCL_RETURN_IF_ERROR(data::GatherBatch(task, indices, &x, &y));   // reuses x and y
//     ...
//   }
//
// The functions here take `const Dataset&` and are safe to call concurrently on one dataset.
#ifndef FEDCL_CORE_DATA_DATASET_H_
#define FEDCL_CORE_DATA_DATASET_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "core/nn/tensor.h"

namespace fedcl::data {

struct Dataset {
  // [size(), channels * height * width], float32, one sample per row.
  nn::Matrix images;
  // One label per sample, each in [0, num_classes).
  std::vector<int32_t> labels;
  int num_classes = 0;
  int channels = 0;
  int height = 0;
  int width = 0;

  int size() const { return static_cast<int>(labels.size()); }
  int sample_dim() const { return channels * height * width; }

  // OK when the fields agree: as many image rows as labels, sample_dim() columns, positive
  // shape and class count, every label in range. InvalidArgument naming the first problem.
  absl::Status Validate() const;
};

// The pixel scaling and sample limit an image loader takes (IdxImageOptions, NpyImageOptions):
// InvalidArgument for normalisation without a finite mean and a positive stddev, or a negative
// max_samples.
absl::Status ValidateImageScaling(bool normalize, float mean, float stddev, int max_samples);

// The samples at `indices`, in that order (repeats allowed), with the same shape and classes.
// InvalidArgument if an index is outside [0, data.size()).
absl::StatusOr<Dataset> Subset(const Dataset& data, const std::vector<int>& indices);

// The samples whose label is in `classes`, in dataset order. With `relabel`, label classes[i]
// becomes i and num_classes becomes classes.size() (a task of a class-incremental stream trained
// with its own head); without it labels and num_classes are kept. InvalidArgument if `classes` is
// empty, repeats a class or names one outside [0, data.num_classes).
absl::StatusOr<Dataset> SelectClasses(const Dataset& data, const std::vector<int>& classes,
                                      bool relabel);

// Number of samples of each class, num_classes entries. Labels outside the range are not
// counted (a validated dataset has none).
std::vector<int> ClassCounts(const Dataset& data);

// Copies the samples at `indices` into `images` ([indices.size(), sample_dim()]) and `labels`.
// Both are resized only when the batch size changes, so a training loop with a fixed batch size
// allocates nothing after its first batch. InvalidArgument (outputs unspecified) if an index is
// out of range.
absl::Status GatherBatch(const Dataset& data, absl::Span<const int> indices, nn::Matrix* images,
                         std::vector<int32_t>* labels);

}  // namespace fedcl::data

#endif  // FEDCL_CORE_DATA_DATASET_H_
