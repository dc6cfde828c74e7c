// Writing .npy files in tests the way numpy.save does (format 1.0, header padded to 64 bytes).
#ifndef FEDCL_TESTS_CORE_DATA_NPY_TEST_UTIL_H_
#define FEDCL_TESTS_CORE_DATA_NPY_TEST_UTIL_H_

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace fedcl::data::testutil {

// `descr` as NumPy writes it ("|u1", "<f4", ...), `shape` as a Python tuple ("(2, 3)", "(4,)"),
// `data` the values' bytes.
inline std::string EncodeNpy(absl::string_view descr, absl::string_view shape,
                             absl::string_view data) {
  std::string header =
      absl::StrCat("{'descr': '", descr, "', 'fortran_order': False, 'shape': ", shape, ", }");
  while ((10 + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::string file("\x93NUMPY\x01\x00", 8);
  file.push_back(static_cast<char>(header.size() & 0xff));
  file.push_back(static_cast<char>(header.size() >> 8));
  return absl::StrCat(file, header, data);
}

}  // namespace fedcl::data::testutil

#endif  // FEDCL_TESTS_CORE_DATA_NPY_TEST_UTIL_H_
