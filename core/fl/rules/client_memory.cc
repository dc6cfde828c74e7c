#include "core/fl/rules/client_memory.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/base/status_macros.h"

namespace fedcl::fl {

absl::Span<const float> ClientMemory::Find(ClientId client) const {
  auto it = vectors_.find(client);
  if (it == vectors_.end()) return {};
  return it->second;
}

void ClientMemory::Store(ClientId client, absl::Span<const float> delta) {
  vectors_[client].assign(delta.begin(), delta.end());
}

ClientVectors ClientMemory::Export() const {
  ClientVectors memory(vectors_.begin(), vectors_.end());
  std::sort(memory.begin(), memory.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  return memory;
}

absl::Status ClientMemory::Import(const ClientVectors& memory) {
  absl::flat_hash_map<ClientId, std::vector<float>> vectors;
  FixedPointAccumulator sum(size_, arena_);
  for (const auto& [client, y] : memory) {
    if (static_cast<int64_t>(y.size()) != size_) {
      return absl::InvalidArgumentError(absl::StrCat("stored vector of client ", client, " has ",
                                                     y.size(), " values, the module ", size_));
    }
    for (size_t i = 0; i < y.size(); ++i) {
      if (!std::isfinite(y[i])) {
        return absl::InvalidArgumentError(absl::StrCat(
            "stored vector of client ", client, ": element ", i, " is not finite (", y[i], ")"));
      }
    }
    if (!vectors.try_emplace(client, y).second) {
      return absl::InvalidArgumentError(absl::StrCat("client ", client, " is stored twice"));
    }
    FEDCL_RETURN_IF_ERROR(sum.Add(y, 1.0));
  }
  sum.Tighten();
  vectors_ = std::move(vectors);
  sum_ = std::move(sum);
  return absl::OkStatus();
}

absl::Status ClientMemory::Forget(ClientId client) {
  auto it = vectors_.find(client);
  if (it == vectors_.end()) return absl::OkStatus();
  FEDCL_RETURN_IF_ERROR(sum_.Subtract(it->second, 1.0));
  vectors_.erase(it);
  return absl::OkStatus();
}

int64_t ClientMemory::memory_bytes() const {
  int64_t bytes = sum_.memory_bytes();
  for (const auto& [client, y] : vectors_) {
    bytes += static_cast<int64_t>(y.capacity() * sizeof(float));
  }
  bytes += static_cast<int64_t>(vectors_.capacity() *
                                (sizeof(std::pair<ClientId, std::vector<float>>) + 1));
  return bytes;
}

}  // namespace fedcl::fl
