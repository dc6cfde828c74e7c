#include "core/data/dataset.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace fedcl::data {
namespace {

absl::Status CheckIndices(const Dataset& data, absl::Span<const int> indices) {
  for (size_t i = 0; i < indices.size(); ++i) {
    if (indices[i] < 0 || indices[i] >= data.size()) {
      return absl::InvalidArgumentError(absl::StrCat("index ", indices[i], " at position ", i,
                                                     " is outside a dataset of ", data.size(),
                                                     " samples"));
    }
  }
  return absl::OkStatus();
}

// A dataset with `data`'s shape and classes and `rows` uninitialised samples.
Dataset EmptyLike(const Dataset& data, int rows) {
  Dataset out;
  out.images.resize(rows, data.images.cols());
  out.labels.resize(rows);
  out.num_classes = data.num_classes;
  out.channels = data.channels;
  out.height = data.height;
  out.width = data.width;
  return out;
}

}  // namespace

absl::Status Dataset::Validate() const {
  if (channels <= 0 || height <= 0 || width <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset shape ", channels, "x", height, "x", width, " is not positive"));
  }
  if (num_classes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("dataset has ", num_classes, " classes"));
  }
  if (images.rows() != size() || images.cols() != sample_dim()) {
    return absl::InvalidArgumentError(
        absl::StrCat("dataset images are ", images.rows(), "x", images.cols(), " but there are ",
                     size(), " labels of samples with ", sample_dim(), " values"));
  }
  for (int i = 0; i < size(); ++i) {
    if (labels[i] < 0 || labels[i] >= num_classes) {
      return absl::InvalidArgumentError(absl::StrCat("label ", labels[i], " of sample ", i,
                                                     " is outside [0, ", num_classes, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Dataset> Subset(const Dataset& data, const std::vector<int>& indices) {
  FEDCL_RETURN_IF_ERROR(CheckIndices(data, indices));
  Dataset out = EmptyLike(data, static_cast<int>(indices.size()));
  for (size_t i = 0; i < indices.size(); ++i) {
    out.images.row(i) = data.images.row(indices[i]);
    out.labels[i] = data.labels[indices[i]];
  }
  return out;
}

absl::StatusOr<Dataset> SelectClasses(const Dataset& data, const std::vector<int>& classes,
                                      bool relabel) {
  if (classes.empty()) return absl::InvalidArgumentError("SelectClasses needs at least one class");
  if (data.num_classes <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("dataset has ", data.num_classes, " classes"));
  }
  // new_label[c] is the label class c gets, or -1 if c is not selected.
  std::vector<int> new_label(data.num_classes, -1);
  for (size_t i = 0; i < classes.size(); ++i) {
    const int c = classes[i];
    if (c < 0 || c >= data.num_classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("class ", c, " is outside [0, ", data.num_classes, ")"));
    }
    if (new_label[c] != -1) return absl::InvalidArgumentError(absl::StrCat("class ", c, " twice"));
    new_label[c] = relabel ? static_cast<int>(i) : c;
  }
  std::vector<int> kept;
  for (int i = 0; i < data.size(); ++i) {
    const int label = data.labels[i];
    if (label >= 0 && label < data.num_classes && new_label[label] != -1) kept.push_back(i);
  }
  Dataset out = EmptyLike(data, static_cast<int>(kept.size()));
  for (size_t i = 0; i < kept.size(); ++i) {
    out.images.row(i) = data.images.row(kept[i]);
    out.labels[i] = new_label[data.labels[kept[i]]];
  }
  if (relabel) out.num_classes = static_cast<int>(classes.size());
  return out;
}

std::vector<int> ClassCounts(const Dataset& data) {
  std::vector<int> counts(data.num_classes > 0 ? data.num_classes : 0, 0);
  for (int32_t label : data.labels) {
    if (label >= 0 && label < data.num_classes) ++counts[label];
  }
  return counts;
}

absl::Status GatherBatch(const Dataset& data, absl::Span<const int> indices, nn::Matrix* images,
                         std::vector<int32_t>* labels) {
  FEDCL_RETURN_IF_ERROR(CheckIndices(data, indices));
  nn::EnsureShape(*images, static_cast<Eigen::Index>(indices.size()), data.images.cols());
  labels->resize(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) {
    images->row(i) = data.images.row(indices[i]);
    (*labels)[i] = data.labels[indices[i]];
  }
  return absl::OkStatus();
}

absl::Status ValidateImageScaling(bool normalize, float mean, float stddev, int max_samples) {
  if (normalize && !(std::isfinite(mean) && std::isfinite(stddev) && stddev > 0.0f)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "normalisation needs a finite mean and a positive stddev, got ", mean, " and ", stddev));
  }
  if (max_samples < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_samples is negative: ", max_samples));
  }
  return absl::OkStatus();
}

}  // namespace fedcl::data
