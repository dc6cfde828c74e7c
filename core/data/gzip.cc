#include "core/data/gzip.h"

#include <zlib.h>

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace fedcl::data {
namespace {

constexpr size_t kMinBuffer = size_t{64} << 10;
// Deflate cannot compress better than about 1032:1, so a larger size hint is a lie.
constexpr uint64_t kMaxDeflateRatio = 1032;
constexpr size_t kMaxZlibChunk = std::numeric_limits<uInt>::max();

// Owns a z_stream set up for inflation with gzip/zlib auto-detection.
class Inflater {
 public:
  Inflater() { init_result_ = inflateInit2(&stream_, 15 + 32); }
  ~Inflater() {
    if (init_result_ == Z_OK) inflateEnd(&stream_);
  }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;

  int init_result() const { return init_result_; }
  z_stream& stream() { return stream_; }

 private:
  z_stream stream_{};
  int init_result_;
};

// The first output buffer size: the last member's ISIZE trailer (its size mod 2^32) when it is
// plausible, so a typical file inflates without reallocation.
size_t InitialBufferSize(absl::string_view compressed, uint64_t buffer_cap) {
  uint64_t hint = kMinBuffer;
  if (IsGzip(compressed) && compressed.size() >= 18) {
    const auto* t = reinterpret_cast<const uint8_t*>(compressed.data() + compressed.size() - 4);
    uint64_t isize =
        uint64_t{t[0]} | (uint64_t{t[1]} << 8) | (uint64_t{t[2]} << 16) | (uint64_t{t[3]} << 24);
    if (isize <= compressed.size() * kMaxDeflateRatio) hint = std::max(hint, isize + 1);
  }
  return static_cast<size_t>(std::min(hint, buffer_cap));
}

// Hands zlib the next chunk of `input` (zlib counts in 32 bits) once it has used up the last one.
void FeedInput(z_stream& z, absl::string_view& input) {
  if (z.avail_in != 0 || input.empty()) return;
  const size_t chunk = std::min(input.size(), kMaxZlibChunk);
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
  z.avail_in = static_cast<uInt>(chunk);
  input.remove_prefix(chunk);
}

// Points zlib's output at the free tail of `out`, doubling `out` (up to `cap` bytes) when it is
// full. False when it is full at `cap`.
bool MakeRoom(z_stream& z, std::string& out, uint64_t produced, uint64_t cap) {
  if (produced == out.size()) {
    if (out.size() >= cap) return false;
    out.resize(static_cast<size_t>(std::min<uint64_t>(cap, 2 * out.size())));
  }
  z.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
  z.avail_out = static_cast<uInt>(std::min<uint64_t>(out.size() - produced, kMaxZlibChunk));
  return true;
}

absl::Status ErrorFor(int code, const z_stream& stream, absl::string_view source) {
  const char* detail = stream.msg != nullptr ? stream.msg : "no detail";
  switch (code) {
    case Z_DATA_ERROR:
      return absl::InvalidArgumentError(absl::StrCat("'", source, "': corrupt compressed data (",
                                                     detail, ") after ", stream.total_in,
                                                     " compressed bytes of the current member"));
    case Z_NEED_DICT:
      return absl::InvalidArgumentError(
          absl::StrCat("'", source, "': zlib stream needs a preset dictionary"));
    case Z_MEM_ERROR:
      return absl::ResourceExhaustedError(
          absl::StrCat("'", source, "': out of memory while decompressing"));
    default:
      return absl::InternalError(
          absl::StrCat("'", source, "': zlib inflate failed with code ", code, " (", detail, ")"));
  }
}

}  // namespace

bool IsGzip(absl::string_view bytes) {
  return bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x1f &&
         static_cast<uint8_t>(bytes[1]) == 0x8b;
}

absl::StatusOr<std::string> Gunzip(absl::string_view compressed, absl::string_view source_name,
                                   uint64_t max_output_bytes) {
  if (compressed.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("'", source_name, "': empty gzip data"));
  }
  Inflater inflater;
  if (inflater.init_result() != Z_OK) {
    return ErrorFor(inflater.init_result(), inflater.stream(), source_name);
  }
  z_stream& z = inflater.stream();
  // One byte past the limit, so "exactly at the limit" and "over it" can be told apart.
  const uint64_t buffer_cap =
      std::min<uint64_t>(max_output_bytes, std::string().max_size() - 1) + 1;
  std::string out(InitialBufferSize(compressed, buffer_cap), '\0');
  uint64_t produced = 0;
  absl::string_view input = compressed;
  while (produced <= max_output_bytes) {
    FeedInput(z, input);
    if (!MakeRoom(z, out, produced, buffer_cap)) break;
    const uInt room = z.avail_out;
    const int result = inflate(&z, Z_NO_FLUSH);
    produced += room - z.avail_out;
    const bool input_done = z.avail_in == 0 && input.empty();
    if (result == Z_STREAM_END && input_done && produced <= max_output_bytes) {
      out.resize(static_cast<size_t>(produced));
      return out;
    } else if (result == Z_STREAM_END) {
      inflateReset(&z);  // Another gzip member follows, unless the loop stops at the limit.
    } else if (result == Z_BUF_ERROR && input_done) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", source_name, "': truncated compressed data: the stream ends after ",
                       compressed.size(), " bytes without its end marker"));
    } else if (result != Z_OK && result != Z_BUF_ERROR) {
      return ErrorFor(result, z, source_name);
    }
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      "'", source_name, "': decompressed data exceeds the limit of ", max_output_bytes, " bytes"));
}

}  // namespace fedcl::data
