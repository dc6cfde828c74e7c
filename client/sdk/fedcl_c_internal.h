// What the C API's files share (fedcl_c.cc: the client; fedcl_c_options.cc: status names,
// errors and options): the opaque handles' definitions and the error helpers. Internal.
#ifndef FEDCL_CLIENT_SDK_FEDCL_C_INTERNAL_H_
#define FEDCL_CLIENT_SDK_FEDCL_C_INTERNAL_H_

#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "fedcl/client.h"
#include "fedcl/fedcl_c.h"

struct fedcl_error {
  fedcl_status code = FEDCL_UNKNOWN;
  std::string message;
};

struct fedcl_options {
  fedcl::ClientOptions options;
};

struct fedcl_client {
  std::unique_ptr<fedcl::Client> client;
  // fedcl_client_predict's C++ results, kept so that prediction allocates nothing once it has
  // seen a batch size; the mutex makes concurrent predictions on one client take turns (the
  // client serialises them anyway).
  std::mutex predict_mu;
  std::vector<fedcl::Prediction> predictions;
};

struct fedcl_cancel_token {
  fedcl::CancelToken token;
};

namespace fedcl::c_api {

// Stores a new error in *error (when the caller asked for one) and returns `code`. Must not throw:
// it also runs in the exception handlers.
inline fedcl_status Fail(fedcl_error** error, fedcl_status code,
                         absl::string_view message) noexcept {
  if (error == nullptr) return code;
  fedcl_error* made = new (std::nothrow) fedcl_error;
  if (made == nullptr) return code;  // out of memory: the code alone has to do
  made->code = code;
  try {
    made->message.assign(message.data(), message.size());
  } catch (...) {
    // Keep the error without its message rather than lose the code.
  }
  *error = made;
  return code;
}

inline fedcl_status FromStatus(const absl::Status& status, fedcl_error** error) {
  if (status.ok()) return FEDCL_OK;
  const int code = static_cast<int>(status.code());
  const fedcl_status c_code = code >= FEDCL_CANCELLED && code <= FEDCL_UNAUTHENTICATED
                                  ? static_cast<fedcl_status>(code)
                                  : FEDCL_UNKNOWN;
  return Fail(error, c_code, status.message());
}

// Runs `body` (returning fedcl_status) and turns any exception into an error code.
template <typename Body>
fedcl_status Guard(fedcl_error** error, Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return Fail(error, FEDCL_RESOURCE_EXHAUSTED, "out of memory");
  } catch (const std::exception& e) {
    return Fail(error, FEDCL_INTERNAL, e.what());
  } catch (...) {
    return Fail(error, FEDCL_INTERNAL, "unknown exception");
  }
}

// For the functions that cannot report: any exception is swallowed.
template <typename Body>
void GuardVoid(Body&& body) noexcept {
  try {
    body();
  } catch (...) {
  }
}

// `function` is the API function's name, taken from __func__ before entering Guard's lambda (in
// which __func__ would be "operator()").
inline fedcl_status NullArgument(fedcl_error** error, const char* function, const char* argument) {
  return Fail(error, FEDCL_INVALID_ARGUMENT, absl::StrCat(function, ": ", argument, " is NULL"));
}

}  // namespace fedcl::c_api

#endif  // FEDCL_CLIENT_SDK_FEDCL_C_INTERNAL_H_
