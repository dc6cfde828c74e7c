#include "server/upload_slots.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace fedcl::server {

absl::Status UploadSlotOptions::Validate() const {
  if (capacity < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("limits.max_concurrent_uploads is ", capacity, "; it must be >= 1"));
  }
  if (per_client < 1 || per_client > capacity) {
    return absl::InvalidArgumentError(
        absl::StrCat("limits.max_uploads_per_client is ", per_client,
                     "; it must be in [1, max_concurrent_uploads = ", capacity, "]"));
  }
  if (idle_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("limits.upload_idle_timeout_ms must be > 0");
  }
  if (total_timeout < idle_timeout) {
    return absl::InvalidArgumentError(
        "limits.upload_timeout_ms must be >= limits.upload_idle_timeout_ms");
  }
  return absl::OkStatus();
}

UploadSlots::UploadSlots(const UploadSlotOptions& options, base::Clock& clock)
    : options_(options), clock_(clock) {}

absl::Status UploadSlots::Enter(uint64_t client, std::shared_ptr<Holder> holder) {
  Admissions admitted;
  {
    absl::MutexLock lock(&mu_);
    int& count = per_client_[client];
    if (count >= options_.per_client) {
      return absl::ResourceExhaustedError(
          absl::StrCat("client ", client, " already has ", count,
                       " upload(s) in progress, its share "
                       "(limits.max_uploads_per_client); retry once that upload has ended"));
    }
    ++count;
    const Holder* key = holder.get();
    Entry& entry = entries_[key];
    entry.client = client;
    entry.holder = std::move(holder);
    entry.sequence = next_sequence_++;
    queue_.emplace_back(key, entry.sequence);
    ++waiting_;
    admitted = AdmitLocked();
  }
  RunAdmissions(admitted);
  return absl::OkStatus();
}

UploadSlots::Admissions UploadSlots::AdmitLocked() {
  Admissions admitted;
  const absl::Time now = clock_.Now();
  while (in_use_ < options_.capacity && !queue_.empty()) {
    const auto [key, sequence] = queue_.front();
    queue_.pop_front();
    auto it = entries_.find(key);
    // A waiter that left was taken out of the count when it left; its queue slot is skipped.
    if (it == entries_.end() || it->second.sequence != sequence) continue;
    Entry& entry = it->second;
    entry.state = State::kHolding;
    entry.admitted = entry.last_data = now;
    --waiting_;
    ++in_use_;
    admitted.push_back(entry.holder);
  }
  return admitted;
}

void UploadSlots::RunAdmissions(const Admissions& admissions) {
  for (const std::shared_ptr<Holder>& holder : admissions) holder->OnAdmitted();
}

void UploadSlots::Touch(const Holder* holder) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(holder);
  if (it != entries_.end() && it->second.state == State::kHolding) {
    it->second.last_data = clock_.Now();
  }
}

void UploadSlots::Disarm(const Holder* holder) {
  absl::MutexLock lock(&mu_);
  auto it = entries_.find(holder);
  if (it != entries_.end()) it->second.armed = false;
}

void UploadSlots::EraseLocked(const Holder* holder) {
  auto it = entries_.find(holder);
  if (it == entries_.end()) return;
  if (it->second.state == State::kHolding) {
    --in_use_;
  } else {
    --waiting_;  // its queue slot stays behind and is skipped
  }
  auto count = per_client_.find(it->second.client);
  if (--count->second == 0) per_client_.erase(count);
  entries_.erase(it);
}

void UploadSlots::Leave(const Holder* holder) {
  Admissions admitted;
  std::shared_ptr<Holder> keep;  // released after the lock, in case it is the last reference
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(holder);
    if (it == entries_.end()) return;
    if (it->second.expiring) {
      it->second.left = true;  // ExpireDue erases it once OnExpired has returned
      return;
    }
    keep = std::move(it->second.holder);
    EraseLocked(holder);
    admitted = AdmitLocked();
  }
  RunAdmissions(admitted);
}

absl::Status UploadSlots::PastDeadline(const Entry& entry, absl::Time now) const {
  if (now - entry.admitted >= options_.total_timeout) {
    return absl::DeadlineExceededError(
        absl::StrCat("the upload of client ", entry.client, " took longer than ",
                     absl::FormatDuration(options_.total_timeout),
                     " (limits.upload_timeout_ms): cancelled, nothing was folded; send it again"));
  }
  if (now - entry.last_data >= options_.idle_timeout) {
    return absl::DeadlineExceededError(absl::StrCat(
        "the upload of client ", entry.client, " sent no data for ",
        absl::FormatDuration(options_.idle_timeout),
        " (limits.upload_idle_timeout_ms): cancelled, nothing was folded; send it again"));
  }
  return absl::OkStatus();
}

int UploadSlots::ExpireDue() {
  std::vector<std::pair<std::shared_ptr<Holder>, absl::Status>> due;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = clock_.Now();
    for (auto& [key, entry] : entries_) {
      if (entry.state != State::kHolding || !entry.armed || entry.expiring) continue;
      absl::Status why = PastDeadline(entry, now);
      if (why.ok()) continue;
      entry.expiring = true;
      due.emplace_back(entry.holder, std::move(why));
    }
  }
  if (due.empty()) return 0;
  std::vector<bool> gave_up;
  for (const auto& [holder, why] : due) gave_up.push_back(holder->OnExpired(why));
  int expired = 0;
  Admissions admitted;
  {
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < due.size(); ++i) {
      auto it = entries_.find(due[i].first.get());
      if (it == entries_.end()) continue;
      it->second.expiring = false;
      if (gave_up[i] || it->second.left) EraseLocked(due[i].first.get());
      expired += gave_up[i] ? 1 : 0;
    }
    admitted = AdmitLocked();
  }
  RunAdmissions(admitted);
  return expired;
}

absl::Duration UploadSlots::check_period() const {
  const absl::Duration shorter = std::min(options_.idle_timeout, options_.total_timeout);
  return std::clamp(shorter / 8, absl::Milliseconds(1), absl::Seconds(1));
}

int UploadSlots::in_use() const {
  absl::MutexLock lock(&mu_);
  return in_use_;
}

int UploadSlots::waiting() const {
  absl::MutexLock lock(&mu_);
  return waiting_;
}

}  // namespace fedcl::server
