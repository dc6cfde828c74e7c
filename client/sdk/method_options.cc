#include "client/sdk/method_options.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/base/option_text.h"
#include "core/base/status_macros.h"

namespace fedcl::sdk {

absl::StatusOr<std::string> MethodOptionsText(const ClientOptions& options, int vit_dim) {
  FEDCL_ASSIGN_OR_RETURN(base::OptionText given,
                         base::OptionText::Parse(options.method_options, "method_options"));
  std::vector<std::pair<std::string, std::string>> mapped;
  auto number = [](double v) { return absl::StrFormat("%.17g", v); };
  const std::string& method = options.method;
  if (method == "sema" || method == "sema_replay") {
    mapped = {{"new_module_steps", absl::StrCat(options.sema_new_module_steps)},
              {"expansion_tau", number(options.sema_expansion_tau)},
              {"max_adapters_per_block", absl::StrCat(options.sema_max_adapters_per_block)}};
    // The descriptor must compress the block width (16 of the small ViT's 64).
    if (vit_dim > 0) {
      mapped.push_back(
          {"descriptor_bottleneck", absl::StrCat(std::max(1, std::min(16, vit_dim / 4)))});
    }
  } else if (method == "lae") {
    // Without BeginTask, the first "task" ends (and the offline module starts) after a task's
    // batches; the warm-up is a tenth of a task, as the simulator's.
    mapped = {{"steps_per_task", absl::StrCat(options.lae_steps_per_task)},
              {"fraction_per_task", number(options.lae_fraction_per_task)},
              {"warmup_steps", absl::StrCat(options.lae_steps_per_task / 10)},
              {"untasked_task_steps", absl::StrCat(options.lae_steps_per_task)}};
  } else if (method == "fedins") {
    mapped = {{"pool_size", absl::StrCat(options.fedins_pool_size)},
              {"top_k", absl::StrCat(options.fedins_top_k)}};
  }
  std::string text;
  for (const auto& [key, value] : mapped) {
    if (!given.Has(key)) absl::StrAppend(&text, key, ": ", value, " ");
  }
  absl::StrAppend(&text, options.method_options);
  return text;
}

}  // namespace fedcl::sdk
