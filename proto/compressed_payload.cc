#include "proto/compressed_payload.h"

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "proto/little_endian.h"

namespace fedcl::proto {
namespace {

using Codec = fl::CompressionSpec::Codec;

void AppendFloat(float value, std::string* out) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  char bytes[4];
  StoreLittleEndian32(bits, bytes);
  out->append(bytes, sizeof(bytes));
}

void AppendVarint(uint32_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

// Reads the payload front to back; every read checks what is left first.
class Reader {
 public:
  explicit Reader(absl::string_view bytes) : bytes_(bytes) {}

  absl::Status Need(int64_t count, absl::string_view what) const {
    if (count < 0 || static_cast<uint64_t>(count) > bytes_.size() - at_) {
      return absl::InvalidArgumentError(
          absl::StrCat("the payload ends inside its ", what, " (", bytes_.size(), " bytes)"));
    }
    return absl::OkStatus();
  }
  float Float() {
    uint32_t bits = LoadLittleEndian32(bytes_.data() + at_);
    at_ += 4;
    float value;
    std::memcpy(&value, &bits, sizeof(value));
    return value;
  }
  uint16_t Half() {
    const auto lo = static_cast<uint8_t>(bytes_[at_]), hi = static_cast<uint8_t>(bytes_[at_ + 1]);
    at_ += 2;
    return static_cast<uint16_t>(lo | (hi << 8));
  }
  int8_t Int8() { return static_cast<int8_t>(bytes_[at_++]); }
  absl::StatusOr<uint32_t> Varint() {
    uint64_t value = 0;
    for (int i = 0; i < 5; ++i) {
      if (at_ == bytes_.size()) return absl::InvalidArgumentError("the payload ends inside a gap");
      const auto byte = static_cast<uint8_t>(bytes_[at_++]);
      value |= uint64_t{byte & 0x7fu} << (7 * i);
      if ((byte & 0x80) == 0) {
        if (value > std::numeric_limits<uint32_t>::max()) break;
        return static_cast<uint32_t>(value);
      }
    }
    return absl::InvalidArgumentError("a gap is not a varint below 2^32");
  }
  size_t left() const { return bytes_.size() - at_; }

 private:
  absl::string_view bytes_;
  size_t at_ = 0;
};

absl::Status ReadScalesAndInt8(Reader& in, int64_t count, int32_t block_size,
                               fl::CompressedValues& out) {
  const int64_t blocks = (count + block_size - 1) / block_size;
  if (absl::Status s = in.Need(4 * blocks, "scales"); !s.ok()) return s;
  out.scales.resize(static_cast<size_t>(blocks));
  for (float& scale : out.scales) scale = in.Float();
  if (absl::Status s = in.Need(count, "int8 values"); !s.ok()) return s;
  out.quantized.resize(static_cast<size_t>(count));
  for (int8_t& q : out.quantized) q = in.Int8();
  return absl::OkStatus();
}

}  // namespace

void AppendCompressedPayload(const fl::CompressedValues& c, std::string* out) {
  out->reserve(out->size() + static_cast<size_t>(c.bytes()));
  switch (c.spec.codec) {
    case Codec::kFloat32:
      for (float value : c.raw) AppendFloat(value, out);
      return;
    case Codec::kFloat16:
      for (uint16_t half : c.halves) {
        out->push_back(static_cast<char>(half & 0xff));
        out->push_back(static_cast<char>(half >> 8));
      }
      return;
    case Codec::kTopK: {
      uint32_t previous = 0;
      for (size_t j = 0; j < c.indices.size(); ++j) {
        AppendVarint(j == 0 ? c.indices[0] : c.indices[j] - previous, out);
        previous = c.indices[j];
      }
      [[fallthrough]];
    }
    case Codec::kInt8:
      for (float scale : c.scales) AppendFloat(scale, out);
      out->append(reinterpret_cast<const char*>(c.quantized.data()), c.quantized.size());
      return;
  }
}

absl::StatusOr<fl::CompressedValues> ParseCompressedPayload(const fl::CompressionSpec& spec,
                                                            int64_t size, absl::string_view bytes) {
  fl::CompressedValues out;
  out.spec = spec;
  out.size = size;
  Reader in(bytes);
  switch (spec.codec) {
    case Codec::kFloat32:
      if (absl::Status s = in.Need(4 * size, "float32 values"); !s.ok()) return s;
      out.raw.resize(static_cast<size_t>(size));
      for (float& value : out.raw) value = in.Float();
      break;
    case Codec::kFloat16:
      if (absl::Status s = in.Need(2 * size, "float16 values"); !s.ok()) return s;
      out.halves.resize(static_cast<size_t>(size));
      for (uint16_t& half : out.halves) half = in.Half();
      break;
    case Codec::kInt8:
      if (absl::Status s = ReadScalesAndInt8(in, size, spec.block_size, out); !s.ok()) return s;
      break;
    case Codec::kTopK: {
      const int64_t k = fl::TopKCount(spec, size);
      // Every gap takes a byte at least: refuse a short payload before reserving k indices.
      if (absl::Status s = in.Need(k, "index gaps"); !s.ok()) return s;
      out.indices.resize(static_cast<size_t>(k));
      uint64_t index = 0;
      for (int64_t j = 0; j < k; ++j) {
        absl::StatusOr<uint32_t> gap = in.Varint();
        if (!gap.ok()) return gap.status();
        index = j == 0 ? *gap : index + *gap;
        if (index > std::numeric_limits<uint32_t>::max()) {
          return absl::InvalidArgumentError(
              absl::StrCat("index ", j, " lies beyond 2^32 − 1 (the gaps sum to ", index, ")"));
        }
        out.indices[static_cast<size_t>(j)] = static_cast<uint32_t>(index);
      }
      if (absl::Status s = ReadScalesAndInt8(in, k, spec.block_size, out); !s.ok()) return s;
      break;
    }
  }
  if (in.left() != 0) {
    return absl::InvalidArgumentError(absl::StrCat("the payload has ", in.left(),
                                                   " bytes after its ",
                                                   fl::CompressionSpecText(spec), " values"));
  }
  return out;
}

}  // namespace fedcl::proto
