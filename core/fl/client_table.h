// The coordinator's client registry, packed: a million dormant clients cost tens of bytes each,
// not the hundred-odd a std::map of ClientRecord takes (a 64-byte record plus a tree node and its
// allocation per client).
//
// Records are stored as 32-bit fields in the leaves of a B-tree (absl::btree_map: a handful of
// records per 256-byte node, no allocation per client), ordered by id. Rounds and counts must fit
// in 31 bits; Put refuses a record that does not (2^31 rounds is far beyond any deployment).
//
// Not thread-safe: the coordinator guards it with its mutex.
#ifndef FEDCL_CORE_FL_CLIENT_TABLE_H_
#define FEDCL_CORE_FL_CLIENT_TABLE_H_

#include <cstdint>
#include <optional>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "core/fl/state_store.h"

namespace fedcl::fl {

class ClientTable {
 public:
  // Inserts or replaces `record`. InvalidArgument naming the field if a round or count is
  // negative where it may not be or does not fit in 31 bits; nothing changes then.
  absl::Status Put(const ClientRecord& record);
  std::optional<ClientRecord> Find(ClientId id) const;
  bool IsRevoked(ClientId id) const;

  // Calls fn(const ClientRecord&) for up to `limit` clients with id >= first, in id order.
  template <typename Fn>
  void ForEach(ClientId first, int64_t limit, Fn fn) const {
    for (auto it = clients_.lower_bound(first); it != clients_.end() && limit > 0; ++it, --limit)
      fn(Unpack(it->first, it->second));
  }

  int64_t size() const { return static_cast<int64_t>(clients_.size()); }

 private:
  struct Packed {
    int32_t enrolled_round = 0;
    int32_t fedau_last_round = -1;
    int32_t fedau_intervals = 0;
    int32_t fedau_interval_sum = 0;
    int32_t participations = 0;
    int32_t last_participation_round = -1;
    bool revoked = false;
  };
  static ClientRecord Unpack(ClientId id, const Packed& packed);

  absl::btree_map<ClientId, Packed> clients_;
};

}  // namespace fedcl::fl

#endif  // FEDCL_CORE_FL_CLIENT_TABLE_H_
