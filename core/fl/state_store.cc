#include "core/fl/state_store.h"

#include <algorithm>

namespace fedcl::fl {

absl::Status MemoryStateStore::PutClient(const ClientRecord& client) {
  absl::MutexLock lock(&mu_);
  written_ = true;
  PutClientLocked(client);
  return absl::OkStatus();
}

void MemoryStateStore::PutClientLocked(const ClientRecord& client) {
  auto it = std::find_if(state_.clients.begin(), state_.clients.end(),
                         [&](const ClientRecord& c) { return c.id == client.id; });
  if (it == state_.clients.end()) {
    state_.clients.push_back(client);
  } else {
    *it = client;
  }
}

absl::Status MemoryStateStore::JournalUpdate(const JournalEntry& entry) {
  absl::MutexLock lock(&mu_);
  if (journal_failures_ > 0) {
    --journal_failures_;
    return absl::UnavailableError("journal write failed (injected)");
  }
  written_ = true;
  ++journal_writes_;
  JournalEntry stored = entry;
  for (absl::Span<const float> view : entry.views)
    stored.values.insert(stored.values.end(), view.begin(), view.end());
  stored.views.clear();
  state_.journal.push_back(std::move(stored));
  return absl::OkStatus();
}

absl::Status MemoryStateStore::RoundOpened(const RoundRecord& round) {
  absl::MutexLock lock(&mu_);
  written_ = true;
  state_.open_round = round;
  return absl::OkStatus();
}

absl::Status MemoryStateStore::RoundClosed(const RoundClose& close) {
  absl::MutexLock lock(&mu_);
  written_ = true;
  state_.modules = close.modules;
  for (const ClientRecord& client : close.clients) PutClientLocked(client);
  state_.aggregator_memory = close.aggregator_memory;
  for (const PoolHolder& holder : close.pool_holders) PutPoolHolderLocked(holder);
  state_.last_closed_round = close.closed_round;
  state_.open_round.reset();
  std::erase_if(state_.journal,
                [&](const JournalEntry& e) { return e.round <= close.closed_round; });
  return absl::OkStatus();
}

void MemoryStateStore::PutPoolHolderLocked(const PoolHolder& holder) {
  std::vector<PoolHolder>& holders = state_.pool.holders;
  auto at = std::lower_bound(
      holders.begin(), holders.end(), holder, [](const PoolHolder& a, const PoolHolder& b) {
        return std::pair(a.module_id, a.client) < std::pair(b.module_id, b.client);
      });
  if (at != holders.end() && at->module_id == holder.module_id && at->client == holder.client) {
    *at = holder;
  } else {
    holders.insert(at, holder);
  }
}

absl::Status MemoryStateStore::PoolProposal(const PoolProposalRecord& record) {
  absl::MutexLock lock(&mu_);
  if (pool_failures_ > 0) {
    --pool_failures_;
    return absl::UnavailableError("pool write failed (injected)");
  }
  written_ = true;
  std::vector<RegisteredModule>& modules = state_.pool.modules;
  auto it = std::find_if(modules.begin(), modules.end(),
                         [&](const RegisteredModule& m) { return m.id == record.module.id; });
  if (it == modules.end()) {
    modules.push_back(record.module);
  } else {
    *it = record.module;
  }
  state_.pool.next_id = record.next_id;
  state_.pool.merges = record.merges;
  for (const PoolHolder& holder : record.new_holders) PutPoolHolderLocked(holder);
  return absl::OkStatus();
}

absl::Status MemoryStateStore::PutPoolHolders(absl::Span<const PoolHolder> holders) {
  absl::MutexLock lock(&mu_);
  if (pool_failures_ > 0) {
    --pool_failures_;
    return absl::UnavailableError("pool write failed (injected)");
  }
  written_ = true;
  for (const PoolHolder& holder : holders) PutPoolHolderLocked(holder);
  return absl::OkStatus();
}

absl::StatusOr<StoredState> MemoryStateStore::Load() const {
  absl::MutexLock lock(&mu_);
  if (!written_) return absl::NotFoundError("the state store is empty");
  return state_;
}

void MemoryStateStore::FailNextJournalWrites(int count) {
  absl::MutexLock lock(&mu_);
  journal_failures_ = count;
}

void MemoryStateStore::FailNextPoolWrites(int count) {
  absl::MutexLock lock(&mu_);
  pool_failures_ = count;
}

int64_t MemoryStateStore::journal_writes() const {
  absl::MutexLock lock(&mu_);
  return journal_writes_;
}

}  // namespace fedcl::fl
