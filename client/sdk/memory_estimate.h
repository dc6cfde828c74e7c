// What the edge SDK counts against a device's memory budget: the bytes fedcl itself holds.
//
// Held bytes are exact: every parameter set's values and gradients (backbone, head, modules), the
// SDK's re-base copies of the shared modules, the queue of committed deltas and the input buffer.
// A batch's working bytes are an estimate from the model's shape: the activations each layer
// keeps, which dominate a call. tests/bench/sdk_predict_latency.cc prints the estimate beside the
// heap a first call of 32 images really keeps.
#ifndef FEDCL_CLIENT_SDK_MEMORY_ESTIMATE_H_
#define FEDCL_CLIENT_SDK_MEMORY_ESTIMATE_H_

#include <cstdint>
#include <string>

#include "core/nn/model_config.h"
#include "core/nn/parameter_set.h"

namespace fedcl::sdk {

// "12.3 MiB", for messages.
std::string Mib(int64_t bytes);

// Values plus gradients (when the set keeps them), in bytes.
int64_t ParameterSetBytes(const nn::ParameterSet& set);

// Working bytes of a call on `batch` images: the activations every layer keeps (in buffers it
// reuses between calls), and for `training` the gradients of the backward pass.
int64_t BatchWorkingBytes(const nn::ModelConfig& config, int64_t batch, bool training);

}  // namespace fedcl::sdk

#endif  // FEDCL_CLIENT_SDK_MEMORY_ESTIMATE_H_
