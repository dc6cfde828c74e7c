// The continual method's options text a Client's learner gets: the method-specific fields of
// fedcl::ClientOptions (kept for devices built against earlier headers and the C option codes)
// as the method's own knobs, followed by ClientOptions::method_options, whose keys win.
#ifndef FEDCL_CLIENT_SDK_METHOD_OPTIONS_H_
#define FEDCL_CLIENT_SDK_METHOD_OPTIONS_H_

#include <string>

#include "absl/status/statusor.h"
#include "fedcl/client.h"

namespace fedcl::sdk {

// `vit_dim`: the width of the device's ViT (0 when not known yet, or not a ViT), from which
// SEMA's descriptor bottleneck is chosen (16, and at most a quarter of the width).
// InvalidArgument if method_options does not parse.
absl::StatusOr<std::string> MethodOptionsText(const ClientOptions& options, int vit_dim);

}  // namespace fedcl::sdk

#endif  // FEDCL_CLIENT_SDK_METHOD_OPTIONS_H_
