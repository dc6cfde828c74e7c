// The C API's status names, errors and options (fedcl/fedcl_c.h); the client's calls are in
// fedcl_c.cc.
#include <cstdint>
#include <limits>
#include <utility>

#include "client/sdk/fedcl_c_internal.h"

#ifndef FEDCL_VERSION
#error "FEDCL_VERSION must be defined by the build (client/sdk/packaging.cmake)"
#endif

namespace {

using namespace fedcl::c_api;  // NOLINT: the helpers every C entry point uses

// Converts an int64 option to an int field, refusing values an int cannot hold.
fedcl_status SetIntField(int* field, int64_t value) {
  if (value < std::numeric_limits<int>::min() || value > std::numeric_limits<int>::max()) {
    return FEDCL_INVALID_ARGUMENT;
  }
  *field = static_cast<int>(value);
  return FEDCL_OK;
}

}  // namespace

extern "C" {

const char* fedcl_status_name(fedcl_status status) {
  switch (status) {
    case FEDCL_OK:
      return "OK";
    case FEDCL_CANCELLED:
      return "CANCELLED";
    case FEDCL_UNKNOWN:
      return "UNKNOWN";
    case FEDCL_INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case FEDCL_DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case FEDCL_NOT_FOUND:
      return "NOT_FOUND";
    case FEDCL_ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case FEDCL_PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case FEDCL_RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case FEDCL_FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case FEDCL_ABORTED:
      return "ABORTED";
    case FEDCL_OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case FEDCL_UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case FEDCL_INTERNAL:
      return "INTERNAL";
    case FEDCL_UNAVAILABLE:
      return "UNAVAILABLE";
    case FEDCL_DATA_LOSS:
      return "DATA_LOSS";
    case FEDCL_UNAUTHENTICATED:
      return "UNAUTHENTICATED";
  }
  return "INVALID_STATUS";
}

const char* fedcl_version(void) { return FEDCL_VERSION; }

// ---- Errors ----------------------------------------------------------------------------------

fedcl_status fedcl_error_code(const fedcl_error* error) {
  return error == nullptr ? FEDCL_OK : error->code;
}

const char* fedcl_error_message(const fedcl_error* error) {
  return error == nullptr ? "" : error->message.c_str();
}

void fedcl_error_destroy(fedcl_error* error) { delete error; }

// ---- Options ---------------------------------------------------------------------------------

fedcl_options* fedcl_options_create(void) {
  fedcl_options* options = nullptr;
  GuardVoid([&] { options = new fedcl_options; });
  return options;
}

void fedcl_options_destroy(fedcl_options* options) {
  GuardVoid([&] { delete options; });
}

fedcl_status fedcl_options_set_string(fedcl_options* options, fedcl_option option,
                                      const char* value) {
  return Guard(nullptr, [&]() -> fedcl_status {
    if (options == nullptr || value == nullptr) return FEDCL_INVALID_ARGUMENT;
    fedcl::ClientOptions& o = options->options;
    switch (option) {
      case FEDCL_OPTION_SERVER_ADDRESS:
        o.server_address = value;
        return FEDCL_OK;
      case FEDCL_OPTION_TLS_CA_FILE:
        o.tls_ca_file = value;
        return FEDCL_OK;
      case FEDCL_OPTION_TLS_SERVER_NAME:
        o.tls_server_name = value;
        return FEDCL_OK;
      case FEDCL_OPTION_TOKEN:
        o.token = value;
        return FEDCL_OK;
      case FEDCL_OPTION_STORAGE_DIR:
        o.storage_dir = value;
        return FEDCL_OK;
      case FEDCL_OPTION_METHOD:
        o.method = value;
        return FEDCL_OK;
      case FEDCL_OPTION_OOD_DETECTOR:
        o.ood_detector = value;
        return FEDCL_OK;
      case FEDCL_OPTION_METHOD_OPTIONS:
        o.method_options = value;
        return FEDCL_OK;
      default:
        return FEDCL_INVALID_ARGUMENT;  // not a string option, or unknown
    }
  });
}

fedcl_status fedcl_options_set_int(fedcl_options* options, fedcl_option option, int64_t value) {
  return Guard(nullptr, [&]() -> fedcl_status {
    if (options == nullptr) return FEDCL_INVALID_ARGUMENT;
    fedcl::ClientOptions& o = options->options;
    switch (option) {
      case FEDCL_OPTION_CLIENT_ID:
        // Ids are unsigned 64-bit: the value's bits are taken as they are.
        o.client_id = static_cast<uint64_t>(value);
        return FEDCL_OK;
      case FEDCL_OPTION_MEMORY_BUDGET_BYTES:
        o.memory_budget_bytes = value;
        return FEDCL_OK;
      case FEDCL_OPTION_THREADS:
        return SetIntField(&o.threads, value);
      case FEDCL_OPTION_OFFLINE_QUEUE_BYTES:
        o.offline_queue_bytes = value;
        return FEDCL_OK;
      case FEDCL_OPTION_AUTOSAVE_BATCHES:
        return SetIntField(&o.autosave_batches, value);
      case FEDCL_OPTION_CALL_TIMEOUT_MS:
        o.call_timeout = absl::Milliseconds(value);
        return FEDCL_OK;
      case FEDCL_OPTION_SEED:
        o.seed = static_cast<uint64_t>(value);
        return FEDCL_OK;
      case FEDCL_OPTION_NUM_CLASSES:
        return SetIntField(&o.num_classes, value);
      case FEDCL_OPTION_SEMA_NEW_MODULE_STEPS:
        return SetIntField(&o.sema_new_module_steps, value);
      case FEDCL_OPTION_SEMA_MAX_ADAPTERS_PER_BLOCK:
        return SetIntField(&o.sema_max_adapters_per_block, value);
      case FEDCL_OPTION_LAE_STEPS_PER_TASK:
        return SetIntField(&o.lae_steps_per_task, value);
      case FEDCL_OPTION_FEDINS_POOL_SIZE:
        return SetIntField(&o.fedins_pool_size, value);
      case FEDCL_OPTION_FEDINS_TOP_K:
        return SetIntField(&o.fedins_top_k, value);
      default:
        return FEDCL_INVALID_ARGUMENT;
    }
  });
}

fedcl_status fedcl_options_set_double(fedcl_options* options, fedcl_option option, double value) {
  return Guard(nullptr, [&]() -> fedcl_status {
    if (options == nullptr) return FEDCL_INVALID_ARGUMENT;
    switch (option) {
      case FEDCL_OPTION_LEARNING_RATE:
        options->options.learning_rate = static_cast<float>(value);
        return FEDCL_OK;
      case FEDCL_OPTION_SEMA_EXPANSION_TAU:
        options->options.sema_expansion_tau = value;
        return FEDCL_OK;
      case FEDCL_OPTION_LAE_FRACTION_PER_TASK:
        options->options.lae_fraction_per_task = value;
        return FEDCL_OK;
      default:
        return FEDCL_INVALID_ARGUMENT;
    }
  });
}

void fedcl_options_set_log_callback(fedcl_options* options, fedcl_log_callback callback,
                                    void* user_data) {
  GuardVoid([&] {
    if (options == nullptr) return;
    if (callback == nullptr) {
      options->options.log = nullptr;
      return;
    }
    options->options.log = [callback, user_data](fedcl::LogLevel level, absl::string_view message) {
      // The SDK calls this from C++ code that does not expect it to throw; a message that cannot
      // be copied (out of memory) is dropped.
      try {
        const std::string text(message);  // NUL-terminated for C
        callback(user_data, static_cast<fedcl_log_level>(level), text.c_str());
      } catch (...) {
      }
    };
  });
}

void fedcl_options_set_conditions(fedcl_options* options, fedcl_conditions_callback callback,
                                  void* user_data, unsigned learn_requires,
                                  unsigned sync_requires) {
  GuardVoid([&] {
    if (options == nullptr) return;
    auto conditions = [](unsigned bits) {
      return fedcl::ClientOptions::Conditions{
          .charging = (bits & FEDCL_CONDITION_CHARGING) != 0,
          .unmetered_network = (bits & FEDCL_CONDITION_UNMETERED_NETWORK) != 0,
          .idle = (bits & FEDCL_CONDITION_IDLE) != 0};
    };
    options->options.learn_requires = conditions(learn_requires);
    options->options.sync_requires = conditions(sync_requires);
    if (callback == nullptr) {
      options->options.conditions = nullptr;
      return;
    }
    options->options.conditions = [callback, user_data, conditions] {
      return conditions(callback(user_data));
    };
  });
}

}  // extern "C"
