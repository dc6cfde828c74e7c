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
  state_.last_closed_round = close.closed_round;
  state_.open_round.reset();
  std::erase_if(state_.journal,
                [&](const JournalEntry& e) { return e.round <= close.closed_round; });
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

int64_t MemoryStateStore::journal_writes() const {
  absl::MutexLock lock(&mu_);
  return journal_writes_;
}

}  // namespace fedcl::fl
