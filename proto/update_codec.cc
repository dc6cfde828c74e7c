#include "proto/update_codec.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "core/base/crc32.h"
#include "core/fl/update_validation.h"
#include "core/nn/tensor.h"
#include "proto/compressed_payload.h"
#include "proto/federation_convert.h"
#include "proto/little_endian.h"

namespace fedcl::proto {
namespace {

// "topk:0.0123456789:1048576" and the like; a codec's text is never near this long.
constexpr size_t kLongestCompressionText = 64;

// `status` with "modules[i]: " in front of its message.
absl::Status InModule(int index, const absl::Status& status) {
  if (status.ok()) return status;
  return absl::Status(status.code(), absl::StrCat("modules[", index, "]: ", status.message()));
}

}  // namespace

absl::Status EncodeUpdate(fl::ClientId client, int64_t round, const fl::LocalUpdate& update,
                          v1::UpdateHeader* header, std::string* data) {
  if (update.modules.empty()) return absl::InvalidArgumentError("the update has no modules");
  header->Clear();
  header->set_client_id(client);
  header->set_round(round);
  header->set_num_samples(update.num_samples);
  header->set_local_steps(update.local_steps);
  header->set_loss(update.loss);
  for (const fl::ModuleUpdate& module : update.modules) {
    int64_t expected = 0;
    for (const fl::TensorSpec& spec : module.layout) expected += nn::NumElements(spec.shape);
    if (expected != static_cast<int64_t>(module.values.size())) {
      return absl::InvalidArgumentError(absl::StrCat("module '", module.name, "' has ",
                                                     module.values.size(),
                                                     " values; its layout holds ", expected));
    }
    v1::ModuleDelta* delta = header->add_modules();
    delta->set_name(module.name);
    delta->set_base_version(module.base_version);
    proto::LayoutToProto(module.layout, delta->mutable_layout());
    if (module.compressed.has_value() && module.compressed->spec.compresses()) {
      delta->set_compression(fl::CompressionSpecText(module.compressed->spec));
      delta->set_payload_bytes(module.compressed->bytes());
    }
  }
  data->clear();
  for (const fl::ModuleUpdate& module : update.modules) {
    if (module.compressed.has_value() && module.compressed->spec.compresses()) {
      AppendCompressedPayload(*module.compressed, data);
      continue;
    }
    const size_t at = data->size();
    data->resize(at + module.values.size() * sizeof(float));
    char* out = data->data() + at;
    for (float value : module.values) {
      uint32_t bits;
      std::memcpy(&bits, &value, sizeof(bits));
      proto::StoreLittleEndian32(bits, out);
      out += sizeof(bits);
    }
  }
  header->set_total_bytes(static_cast<int64_t>(data->size()));
  header->set_crc32(base::Crc32(*data));
  return absl::OkStatus();
}

absl::StatusOr<UpdateLayout> DecodeUpdateHeader(const v1::UpdateHeader& header,
                                                absl::Span<const fl::ModuleSnapshot> pool) {
  if (absl::Status report =
          fl::ValidateTrainingReport(header.num_samples(), header.local_steps(), header.loss());
      !report.ok()) {
    return report;
  }
  if (header.modules_size() == 0) return absl::InvalidArgumentError("the update has no modules");
  // The largest update that could be valid: every pooled module once.
  int64_t largest = 0;
  for (const fl::ModuleSnapshot& m : pool) largest += m.values->num_values();
  UpdateLayout out;
  int64_t floats = 0;
  for (int i = 0; i < header.modules_size(); ++i) {
    const v1::ModuleDelta& delta = header.modules(i);
    absl::StatusOr<std::vector<fl::TensorSpec>> layout = LayoutFromProto(delta.layout());
    if (!layout.ok()) return InModule(i, layout.status());
    absl::StatusOr<int64_t> size = fl::LayoutNumValues(*layout);
    if (!size.ok()) return InModule(i, size.status());
    if (*size > largest - floats) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the update declares more values than the pool's ", largest, " in all"));
    }
    auto module = std::find_if(pool.begin(), pool.end(), [&](const fl::ModuleSnapshot& m) {
      return m.spec.name == delta.name();
    });
    if (module == pool.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("modules[", i, "]: no module named '", fl::EchoInput(delta.name()), "'"));
    }
    if (absl::Status fits = fl::ValidateDeltaLayout(delta.name(), *layout, *module->values);
        !fits.ok()) {
      return InModule(i, fits);
    }
    fl::CompressionSpec codec;
    if (!delta.compression().empty()) {
      // ParseCompressionSpec echoes what it cannot read: keep that short (issue 16, item 6).
      if (delta.compression().size() > kLongestCompressionText) {
        return InModule(i, absl::InvalidArgumentError(absl::StrCat(
                               "compression '", fl::EchoInput(delta.compression()),
                               "' is not a codec (", delta.compression().size(), " bytes)")));
      }
      absl::StatusOr<fl::CompressionSpec> parsed = fl::ParseCompressionSpec(delta.compression());
      if (!parsed.ok()) return InModule(i, parsed.status());
      codec = *parsed;
    }
    int64_t payload = *size * static_cast<int64_t>(sizeof(float));
    if (codec.compresses()) {
      const fl::PayloadBounds bounds = fl::PayloadBytesBounds(codec, *size);
      if (delta.payload_bytes() < bounds.min || delta.payload_bytes() > bounds.max) {
        return InModule(
            i, absl::InvalidArgumentError(absl::StrCat(
                   "payload_bytes is ", delta.payload_bytes(), "; ", fl::CompressionSpecText(codec),
                   " of ", *size, " values takes ",
                   bounds.min == bounds.max ? absl::StrCat(bounds.min)
                                            : absl::StrCat(bounds.min, " to ", bounds.max))));
      }
      payload = delta.payload_bytes();
      out.compressed = true;
    } else if (delta.payload_bytes() != 0 && delta.payload_bytes() != payload) {
      return InModule(i, absl::InvalidArgumentError(
                             absl::StrCat("payload_bytes is ", delta.payload_bytes(), "; ", *size,
                                          " float32 values take ", payload)));
    }
    out.layouts.push_back(*std::move(layout));
    out.num_values.push_back(*size);
    out.compression.push_back(codec);
    out.payload_bytes.push_back(payload);
    floats += *size;
    out.total_bytes += payload;
  }
  out.total_values = floats;
  if (header.total_bytes() != out.total_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("total_bytes is ", header.total_bytes(),
                                                   "; the modules' payloads take ", out.total_bytes,
                                                   " bytes"));
  }
  return out;
}

absl::Status DecodeUpdatePayload(const UpdateLayout& layout, absl::string_view bytes,
                                 absl::Span<float> values) {
  if (static_cast<int64_t>(bytes.size()) != layout.total_bytes ||
      static_cast<int64_t>(values.size()) != layout.total_values) {
    return absl::InvalidArgumentError(
        absl::StrCat("an update of ", layout.total_bytes, " bytes and ", layout.total_values,
                     " values cannot decode ", bytes.size(), " bytes into ", values.size()));
  }
  size_t at = 0, offset = 0;
  for (size_t i = 0; i < layout.num_values.size(); ++i) {
    const absl::string_view payload =
        bytes.substr(at, static_cast<size_t>(layout.payload_bytes[i]));
    const absl::Span<float> out = values.subspan(offset, static_cast<size_t>(layout.num_values[i]));
    absl::StatusOr<fl::CompressedValues> parsed =
        ParseCompressedPayload(layout.compression[i], layout.num_values[i], payload);
    absl::Status decoded = parsed.ok() ? fl::Decompress(*parsed, out) : parsed.status();
    if (!decoded.ok()) return InModule(static_cast<int>(i), decoded);
    at += payload.size();
    offset += out.size();
  }
  return absl::OkStatus();
}

fl::UpdateSubmission SubmissionFromHeader(const v1::UpdateHeader& header,
                                          const UpdateLayout& layout, absl::Span<float> values) {
  fl::UpdateSubmission update;
  update.client = header.client_id();
  update.round = header.round();
  update.num_samples = header.num_samples();
  update.local_steps = header.local_steps();
  update.loss = header.loss();
  size_t offset = 0;
  for (int i = 0; i < header.modules_size(); ++i) {
    const v1::ModuleDelta& delta = header.modules(i);
    update.modules.push_back({delta.name(), delta.base_version(), layout.layouts[i],
                              values.subspan(offset, static_cast<size_t>(layout.num_values[i]))});
    offset += static_cast<size_t>(layout.num_values[i]);
  }
  return update;
}

absl::StatusOr<size_t> DataChunkOffset(absl::string_view first_bytes, uint64_t chunk_length) {
  if (first_bytes.empty() || static_cast<uint8_t>(first_bytes[0]) != 0x12) {
    return absl::InvalidArgumentError("only data may follow the header");
  }
  // A varint of at most 10 bytes; a last byte with its continuation bit set never ends it.
  uint64_t length = 0;
  size_t at = 1;
  bool ended = false;
  for (int shift = 0; at < first_bytes.size() && shift < 64 && !ended; shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(first_bytes[at++]);
    length |= uint64_t{byte & 0x7fu} << shift;
    ended = (byte & 0x80) == 0;
  }
  if (!ended) return absl::InvalidArgumentError("a data chunk's length is not a valid varint");
  if (at > chunk_length || length != chunk_length - at) {
    return absl::InvalidArgumentError("a data chunk must hold exactly one data field");
  }
  return at;
}

}  // namespace fedcl::proto
