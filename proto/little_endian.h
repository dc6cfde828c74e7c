// Little-endian loads and stores of fixed-width integers, independent of the host byte order.
//
// fedcl's wire and file formats are little-endian. These helpers read and write through `char*`
// one byte at a time, which compilers turn into a single (possibly unaligned) load or store on
// little-endian hosts, so they are safe on any alignment and any host.
#ifndef FEDCL_PROTO_LITTLE_ENDIAN_H_
#define FEDCL_PROTO_LITTLE_ENDIAN_H_

#include <cstdint>

namespace fedcl::proto {

inline uint32_t LoadLittleEndian32(const char* p) {
  uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(p[i]);
  return value;
}

inline uint64_t LoadLittleEndian64(const char* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(p[i]);
  return value;
}

inline void StoreLittleEndian32(uint32_t value, char* p) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

inline void StoreLittleEndian64(uint64_t value, char* p) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((value >> (8 * i)) & 0xff);
}

}  // namespace fedcl::proto

#endif  // FEDCL_PROTO_LITTLE_ENDIAN_H_
