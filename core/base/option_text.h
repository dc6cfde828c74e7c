// A member's own options as a small text proto, parsed by the member itself.
//
// Extension points (aggregation rules, OOD detectors, continual methods) take their knobs as one
// string in protobuf text format, restricted to scalar fields, so that a new member adds knobs
// without growing a config message, a C ABI or a switch in a host. `core/` must not include
// protobuf (architecture.md), so this is the small subset a member needs, parsed here:
//
//   // in the member:
//   FEDCL_ASSIGN_OR_RETURN(base::OptionText text, base::OptionText::Parse(options, "fedadam"));
//   FEDCL_RETURN_IF_ERROR(text.Read("beta1", &beta1_));     // absent: beta1_ keeps its default
//   FEDCL_RETURN_IF_ERROR(text.Read("tau", &tau_));
//   FEDCL_RETURN_IF_ERROR(text.CheckAllRead());             // an unknown key is an error
//
// Syntax: `key: value` pairs separated by whitespace, commas or semicolons; `#` starts a comment
// to the end of the line. A list (a repeated field) is `key: [1, 2]`, or the key repeated. A key
// is an identifier ([A-Za-z_][A-Za-z0-9_]*). A value is a number
// (decimal, optional sign, fraction and exponent; `inf` and `nan` are refused), `true`/`false`,
// an identifier (an enum value, read as a string), or a double-quoted string with the escapes
// \" \\ \n \t. This is valid text format for a message of scalar fields, so a config file can
// carry it in a string field unchanged.
//
// Errors are InvalidArgument and name the owner, the key and what was wrong. Not thread-safe.
#ifndef FEDCL_CORE_BASE_OPTION_TEXT_H_
#define FEDCL_CORE_BASE_OPTION_TEXT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace fedcl::base {

class OptionText {
 public:
  // Parses `text`; `owner` names the member in error messages ("rule fedadam"). InvalidArgument
  // for a syntax error (with its position). A key given twice is a list (ReadList); a scalar
  // Read refuses it.
  static absl::StatusOr<OptionText> Parse(absl::string_view text, absl::string_view owner);

  // Reads `key` into `value` if present (and marks it read); leaves `value` unchanged if absent.
  // InvalidArgument if the value does not parse as the type or does not fit it (an integer out
  // of range, a fraction for an integer type, a string for a number, ...).
  absl::Status Read(absl::string_view key, int* value);
  absl::Status Read(absl::string_view key, int64_t* value);
  absl::Status Read(absl::string_view key, uint64_t* value);
  absl::Status Read(absl::string_view key, double* value);
  absl::Status Read(absl::string_view key, float* value);
  absl::Status Read(absl::string_view key, bool* value);
  // Strings and identifiers (enum values).
  absl::Status Read(absl::string_view key, std::string* value);
  // A repeated field: every value given for `key` (a list, or the key repeated), replacing
  // `values` if the key is present at all.
  absl::Status ReadList(absl::string_view key, std::vector<int>* values);

  bool Has(absl::string_view key) const;
  // InvalidArgument naming the first key no Read asked for, and the keys that were read.
  absl::Status CheckAllRead() const;
  bool empty() const { return fields_.empty(); }

 private:
  struct Field {
    std::string key;
    std::string value;
    bool quoted = false;  // a string literal (never a number or a bool)
    bool read = false;
    bool empty_list = false;  // `key: []`: present, no value
  };
  // The one field of `key` (null if absent); InvalidArgument if it is given more than once.
  absl::StatusOr<Field*> FindScalar(absl::string_view key);
  Field* Find(absl::string_view key);
  absl::Status Invalid(const Field& field, absl::string_view expected) const;

  std::string owner_;
  std::vector<Field> fields_;
};

}  // namespace fedcl::base

#endif  // FEDCL_CORE_BASE_OPTION_TEXT_H_
