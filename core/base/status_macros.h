// Status propagation and invariant checks.
//
// Debian 12's Abseil (20220623) has neither absl/log nor the RETURN_IF_ERROR family, so fedcl
// keeps its own small set here:
//
//   absl::Status Load(...) {
//     FEDCL_RETURN_IF_ERROR(CheckHeader(bytes));
//     FEDCL_ASSIGN_OR_RETURN(Dataset data, Decode(bytes));
//     FEDCL_CHECK(data.size() > 0) << "never empty after Decode";   // invariant, not input
//   }
//
// FEDCL_CHECK aborts the process. Use it only for broken invariants (a bug in fedcl), never for
// bad input, I/O or network faults: those return a Status.
#ifndef FEDCL_CORE_BASE_STATUS_MACROS_H_
#define FEDCL_CORE_BASE_STATUS_MACROS_H_

#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FEDCL_STATUS_CONCAT_INNER_(a, b) a##b
#define FEDCL_STATUS_CONCAT_(a, b) FEDCL_STATUS_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` (an absl::Status) is not OK.
#define FEDCL_RETURN_IF_ERROR(expr)                \
  do {                                             \
    ::absl::Status fedcl_status_ = (expr);         \
    if (!fedcl_status_.ok()) return fedcl_status_; \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status, otherwise moves the
// value into `lhs`, which may be a declaration (`auto x`, `Dataset d`) or an existing variable.
#define FEDCL_ASSIGN_OR_RETURN(lhs, rexpr) \
  FEDCL_ASSIGN_OR_RETURN_IMPL_(FEDCL_STATUS_CONCAT_(fedcl_statusor_, __LINE__), lhs, rexpr)

#define FEDCL_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                 \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

namespace fedcl::base::internal {

// Collects the streamed message of a failed check and aborts in its destructor.
class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  [[noreturn]] ~CheckFailure();
  std::ostream& stream() { return message_; }

 private:
  std::ostringstream message_;
};

// Makes `FEDCL_CHECK(x) << ...` a void expression so it can sit in a ternary.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace fedcl::base::internal

// Aborts with file, line, condition and the streamed message if `condition` is false.
#define FEDCL_CHECK(condition)                       \
  (condition) ? (void)0                              \
              : ::fedcl::base::internal::Voidify() & \
                    ::fedcl::base::internal::CheckFailure(__FILE__, __LINE__, #condition).stream()

// Aborts if `expr` (an absl::Status) is not OK. For call sites where failure is a fedcl bug.
#define FEDCL_CHECK_OK(expr)                                                 \
  do {                                                                       \
    ::absl::Status fedcl_check_status_ = (expr);                             \
    FEDCL_CHECK(fedcl_check_status_.ok()) << fedcl_check_status_.ToString(); \
  } while (false)

#endif  // FEDCL_CORE_BASE_STATUS_MACROS_H_
