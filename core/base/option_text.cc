#include "core/base/option_text.h"

#include <cctype>
#include <cmath>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

// The single field of `key` into `f`, or return OK (absent) or the error (given twice).
#define FEDCL_OPTION_FIND_(f, key)                    \
  absl::StatusOr<Field*> f##_found = FindScalar(key); \
  if (!f##_found.ok()) return f##_found.status();     \
  Field* f = *f##_found;                              \
  if (f == nullptr) return absl::OkStatus();          \
  f->read = true

namespace fedcl::base {
namespace {

bool IsIdentifierStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool IsIdentifierChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool IsSeparator(char c) {
  return std::isspace(static_cast<unsigned char>(c)) || c == ',' || c == ';';
}
bool IsNumberChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '+' || c == '-';
}

// A cursor over the text that knows its line and column for error messages.
class Scanner {
 public:
  explicit Scanner(absl::string_view text) : text_(text) {}

  // Skips separators and comments.
  void SkipBlanks() {
    while (pos_ < text_.size()) {
      if (text_[pos_] == '#') {
        while (pos_ < text_.size() && text_[pos_] != '\n') ++pos_;
      } else if (IsSeparator(text_[pos_])) {
        ++pos_;
      } else {
        return;
      }
    }
  }
  bool done() const { return pos_ >= text_.size(); }
  char peek() const { return text_[pos_]; }
  void advance() { ++pos_; }
  size_t pos() const { return pos_; }
  absl::string_view slice(size_t from) const { return text_.substr(from, pos_ - from); }
  std::string where() const {
    int line = 1, column = 1;
    for (size_t i = 0; i < pos_ && i < text_.size(); ++i) {
      column = text_[i] == '\n' ? 1 : column + 1;
      line += text_[i] == '\n' ? 1 : 0;
    }
    return absl::StrCat("line ", line, " column ", column);
  }

 private:
  absl::string_view text_;
  size_t pos_ = 0;
};

// Reads a quoted string after its opening quote; false on an unterminated string or a bad escape.
bool ReadQuoted(Scanner& s, std::string* out) {
  while (!s.done()) {
    char c = s.peek();
    s.advance();
    if (c == '"') return true;
    if (c == '\n') return false;
    if (c == '\\') {
      if (s.done()) return false;
      const char e = s.peek();
      s.advance();
      switch (e) {
        case '"':
        case '\\':
          c = e;
          break;
        case 'n':
          c = '\n';
          break;
        case 't':
          c = '\t';
          break;
        default:
          return false;
      }
    }
    out->push_back(c);
  }
  return false;
}

}  // namespace

absl::StatusOr<OptionText> OptionText::Parse(absl::string_view text, absl::string_view owner) {
  OptionText options;
  options.owner_ = std::string(owner);
  Scanner s(text);
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(owner, " options, ", s.where(), ": ", what,
                                                   " (the options are `key: value` "
                                                   "pairs in text format, e.g. `k: 50 seed: 3`)"));
  };
  s.SkipBlanks();
  while (!s.done()) {
    if (!IsIdentifierStart(s.peek())) return error("expected a key");
    const size_t key_start = s.pos();
    while (!s.done() && IsIdentifierChar(s.peek())) s.advance();
    Field field;
    field.key = std::string(s.slice(key_start));
    while (!s.done() && (s.peek() == ' ' || s.peek() == '\t')) s.advance();
    if (s.done() || s.peek() != ':')
      return error(absl::StrCat("expected ':' after '", field.key, "'"));
    s.advance();
    while (!s.done() && (s.peek() == ' ' || s.peek() == '\t')) s.advance();
    if (s.done()) return error(absl::StrCat("'", field.key, "' has no value"));
    if (s.peek() == '[') {
      // A list: one field per element, under the same key.
      s.advance();
      // An empty list still names the key: ReadList then gives no values.
      options.fields_.push_back({field.key, "", false, false, /*empty_list=*/true});
      while (true) {
        while (!s.done() && IsSeparator(s.peek()) && s.peek() != ';') s.advance();
        if (s.done()) return error(absl::StrCat("the list of '", field.key, "' is not closed"));
        if (s.peek() == ']') {
          s.advance();
          break;
        }
        if (!IsNumberChar(s.peek())) {
          return error(absl::StrCat("the list of '", field.key, "' holds something not a number"));
        }
        const size_t value_start = s.pos();
        while (!s.done() && IsNumberChar(s.peek())) s.advance();
        options.fields_.push_back(
            {field.key, std::string(s.slice(value_start)), false, false, false});
      }
      s.SkipBlanks();
      continue;
    }
    if (s.peek() == '"') {
      s.advance();
      field.quoted = true;
      if (!ReadQuoted(s, &field.value)) {
        return error(absl::StrCat("the string value of '", field.key,
                                  "' is not terminated or has an unknown escape"));
      }
    } else if (IsNumberChar(s.peek())) {
      const size_t value_start = s.pos();
      while (!s.done() && IsNumberChar(s.peek())) s.advance();
      field.value = std::string(s.slice(value_start));
    } else {
      return error(absl::StrCat("'", field.key, "' has no value"));
    }
    if (!s.done() && !IsSeparator(s.peek()) && s.peek() != '#') {
      return error(absl::StrCat("unexpected '", std::string(1, s.peek()), "' after the value of '",
                                field.key, "'"));
    }
    options.fields_.push_back(std::move(field));
    s.SkipBlanks();
  }
  return options;
}

absl::StatusOr<OptionText::Field*> OptionText::FindScalar(absl::string_view key) {
  Field* found = nullptr;
  for (Field& f : fields_) {
    if (f.key != key) continue;
    if (found != nullptr) {
      f.read = found->read = true;
      return absl::InvalidArgumentError(
          absl::StrCat(owner_, " options: '", key, "' is given more than once"));
    }
    found = &f;
  }
  return found;
}

absl::Status OptionText::ReadList(absl::string_view key, std::vector<int>* values) {
  std::vector<int> out;
  bool present = false;
  for (Field& f : fields_) {
    if (f.key != key) continue;
    present = f.read = true;
    if (f.empty_list) continue;
    int64_t v = 0;
    if (f.quoted || !absl::SimpleAtoi(f.value, &v) || v < std::numeric_limits<int>::min() ||
        v > std::numeric_limits<int>::max()) {
      return Invalid(f, "a list of integers");
    }
    out.push_back(static_cast<int>(v));
  }
  if (present) *values = std::move(out);
  return absl::OkStatus();
}

OptionText::Field* OptionText::Find(absl::string_view key) {
  for (Field& f : fields_) {
    if (f.key == key) return &f;
  }
  return nullptr;
}

bool OptionText::Has(absl::string_view key) const {
  for (const Field& f : fields_) {
    if (f.key == key) return true;
  }
  return false;
}

absl::Status OptionText::Invalid(const Field& field, absl::string_view expected) const {
  return absl::InvalidArgumentError(absl::StrCat(owner_, " options: '", field.key, "' must be ",
                                                 expected, ", got '", field.value, "'"));
}

absl::Status OptionText::Read(absl::string_view key, int64_t* value) {
  FEDCL_OPTION_FIND_(f, key);
  int64_t v = 0;
  if (f->quoted || !absl::SimpleAtoi(f->value, &v)) return Invalid(*f, "an integer");
  *value = v;
  return absl::OkStatus();
}

absl::Status OptionText::Read(absl::string_view key, int* value) {
  FEDCL_OPTION_FIND_(f, key);
  int64_t v = 0;
  if (f->quoted || !absl::SimpleAtoi(f->value, &v) || v < std::numeric_limits<int>::min() ||
      v > std::numeric_limits<int>::max()) {
    return Invalid(*f, "an integer that fits 32 bits");
  }
  *value = static_cast<int>(v);
  return absl::OkStatus();
}

absl::Status OptionText::Read(absl::string_view key, uint64_t* value) {
  FEDCL_OPTION_FIND_(f, key);
  uint64_t v = 0;
  if (f->quoted || f->value.empty() || f->value[0] == '-' || !absl::SimpleAtoi(f->value, &v)) {
    return Invalid(*f, "a non-negative integer");
  }
  *value = v;
  return absl::OkStatus();
}

absl::Status OptionText::Read(absl::string_view key, double* value) {
  FEDCL_OPTION_FIND_(f, key);
  double v = 0;
  if (f->quoted || !absl::SimpleAtod(f->value, &v) || !std::isfinite(v)) {
    return Invalid(*f, "a finite number");
  }
  *value = v;
  return absl::OkStatus();
}

absl::Status OptionText::Read(absl::string_view key, float* value) {
  double v = *value;
  if (absl::Status s = Read(key, &v); !s.ok()) return s;
  if (std::fabs(v) > std::numeric_limits<float>::max()) {
    return Invalid(*Find(key), "a finite number in float range");
  }
  *value = static_cast<float>(v);
  return absl::OkStatus();
}

absl::Status OptionText::Read(absl::string_view key, bool* value) {
  FEDCL_OPTION_FIND_(f, key);
  if (f->quoted || (f->value != "true" && f->value != "false")) {
    return Invalid(*f, "true or false");
  }
  *value = f->value == "true";
  return absl::OkStatus();
}

absl::Status OptionText::Read(absl::string_view key, std::string* value) {
  FEDCL_OPTION_FIND_(f, key);
  if (!f->quoted && !IsIdentifierStart(f->value.empty() ? '0' : f->value[0])) {
    return Invalid(*f, "a string or an identifier");
  }
  *value = f->value;
  return absl::OkStatus();
}

absl::Status OptionText::CheckAllRead() const {
  std::vector<std::string> known;
  const Field* unknown = nullptr;
  for (const Field& f : fields_) {
    if (f.read) {
      known.push_back(f.key);
    } else if (unknown == nullptr) {
      unknown = &f;
    }
  }
  if (unknown == nullptr) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      owner_, " options: unknown key '", unknown->key, "'",
      known.empty() ? "" : " (read: ", absl::StrJoin(known, ", "), known.empty() ? "" : ")"));
}

}  // namespace fedcl::base
