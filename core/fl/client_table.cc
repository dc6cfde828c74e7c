#include "core/fl/client_table.h"

#include <limits>

#include "absl/strings/str_cat.h"

namespace fedcl::fl {
namespace {

// Narrows `value` (in [minimum, 2^31)) into `out`, or says which field does not fit.
absl::Status Narrow(int64_t value, int64_t minimum, const char* field, ClientId id, int32_t* out) {
  if (value < minimum || value > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("client ", id, ": ", field, " = ", value, " is out of range"));
  }
  *out = static_cast<int32_t>(value);
  return absl::OkStatus();
}

}  // namespace

absl::Status ClientTable::Put(const ClientRecord& r) {
  Packed p;
  for (absl::Status s :
       {Narrow(r.enrolled_round, 0, "enrolled_round", r.id, &p.enrolled_round),
        Narrow(r.fedau.last_round, -1, "fedau.last_round", r.id, &p.fedau_last_round),
        Narrow(r.fedau.intervals, 0, "fedau.intervals", r.id, &p.fedau_intervals),
        Narrow(r.fedau.interval_sum, 0, "fedau.interval_sum", r.id, &p.fedau_interval_sum),
        Narrow(r.participations, 0, "participations", r.id, &p.participations),
        Narrow(r.last_participation_round, -1, "last_participation_round", r.id,
               &p.last_participation_round)}) {
    if (!s.ok()) return s;
  }
  p.revoked = r.revoked;
  clients_.insert_or_assign(r.id, p);
  return absl::OkStatus();
}

std::optional<ClientRecord> ClientTable::Find(ClientId id) const {
  auto it = clients_.find(id);
  if (it == clients_.end()) return std::nullopt;
  return Unpack(id, it->second);
}

bool ClientTable::IsRevoked(ClientId id) const {
  auto it = clients_.find(id);
  return it != clients_.end() && it->second.revoked;
}

ClientRecord ClientTable::Unpack(ClientId id, const Packed& p) {
  ClientRecord r;
  r.id = id;
  r.enrolled_round = p.enrolled_round;
  r.revoked = p.revoked;
  r.fedau.last_round = p.fedau_last_round;
  r.fedau.intervals = p.fedau_intervals;
  r.fedau.interval_sum = p.fedau_interval_sum;
  r.participations = p.participations;
  r.last_participation_round = p.last_participation_round;
  return r;
}

}  // namespace fedcl::fl
