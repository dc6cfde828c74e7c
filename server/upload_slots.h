// Who may stage an upload now, and for how long: the server's defence against hostile and slow
// clients on SubmitUpdate.
//
// An upload stages a whole update in memory, so at most `capacity` uploads hold a slot at once and
// the rest wait, first come first served. Three rules keep one client from starving the others:
//   - a per-client share: a client id has at most `per_client` uploads in progress (holding a
//     slot or waiting for one); another is refused at once with ResourceExhausted;
//   - an idle deadline: a holder that receives no data for `idle_timeout` loses its slot;
//   - a total deadline: a holder keeps its slot at most `total_timeout` from its admission.
// A holder that loses its slot is told (Holder::OnExpired) so that it can end its call with
// DeadlineExceeded and free its staging memory; the slot then passes to the next waiter. So with
// every slot held by stalled clients, an honest upload waits at most about the idle deadline (plus
// one check period of the caller's watchdog), never forever.
//
//   UploadSlots slots(options, clock);
//   FEDCL_RETURN_IF_ERROR(slots.Enter(client_id, holder));  // OnAdmitted now or later
//   ... slots.Touch(holder.get()) as data arrives ...
//   slots.Disarm(holder.get());   // all data in: no deadline while it is folded
//   slots.Leave(holder.get());    // done: the slot goes to the next waiter
//   // a watchdog thread: every check_period(), slots.ExpireDue();
//
// Deadlines are read from the injected clock and enforced only when ExpireDue runs, so a test
// moves a ManualClock and calls ExpireDue itself: nothing here sleeps or reads wall time.
//
// Holders are kept by shared_ptr while entered, and callbacks (OnAdmitted, OnExpired) run
// without the lock held, on the thread of whoever caused them (Enter, Leave or ExpireDue); they
// may call back into UploadSlots (e.g. Leave from OnAdmitted). Thread-safe.
#ifndef FEDCL_SERVER_UPLOAD_SLOTS_H_
#define FEDCL_SERVER_UPLOAD_SLOTS_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/base/clock.h"

namespace fedcl::server {

struct UploadSlotOptions {
  // Uploads staged at once (limits.max_concurrent_uploads), >= 1.
  int capacity = 4;
  // Uploads one client id may have in progress, holding a slot or waiting for one
  // (limits.max_uploads_per_client), in [1, capacity].
  int per_client = 1;
  // A holder receiving no data for this long loses its slot (limits.upload_idle_timeout_ms).
  // Data arrive a chunk at a time, so this must exceed the time a client's link takes to send one
  // chunk (ServerInfo.chunk_bytes).
  absl::Duration idle_timeout = absl::Seconds(60);
  // A holder keeps its slot at most this long from its admission (limits.upload_timeout_ms),
  // >= idle_timeout.
  absl::Duration total_timeout = absl::Minutes(10);
  // InvalidArgument naming the field.
  absl::Status Validate() const;
};

class UploadSlots {
 public:
  // One upload, as UploadSlots sees it.
  class Holder {
   public:
    virtual ~Holder() = default;
    // The upload holds a slot from now on (called once, possibly inside Enter).
    virtual void OnAdmitted() = 0;
    // The upload held its slot past a deadline (`why`, DeadlineExceeded naming it). Return true if
    // it gives the slot up now (it then ends its call and must not call Leave); false if it is past
    // needing the deadline (e.g. its data are all in) and will call Leave itself.
    virtual bool OnExpired(const absl::Status& why) = 0;
  };

  // `options` must be valid; `clock` must outlive this.
  UploadSlots(const UploadSlotOptions& options, base::Clock& clock);
  UploadSlots(const UploadSlots&) = delete;
  UploadSlots& operator=(const UploadSlots&) = delete;

  // Enters `holder`, an upload of `client`: admitted now if a slot is free (OnAdmitted runs before
  // Enter returns), else queued. ResourceExhausted, and nothing entered, if the client already
  // has its share of uploads in progress. A holder may be entered once.
  absl::Status Enter(uint64_t client, std::shared_ptr<Holder> holder);
  // Data arrived for `holder`: its idle deadline starts again. No-op unless it holds a slot.
  void Touch(const Holder* holder);
  // `holder` no longer has deadlines (its data are all in; what remains is the server's work).
  void Disarm(const Holder* holder);
  // `holder` is done: it leaves the queue, or frees its slot for the next waiter. No-op if it is
  // not entered (never was, left already, or gave its slot up in OnExpired).
  void Leave(const Holder* holder);
  // Expires every armed holder past a deadline at the clock's now; returns how many gave their
  // slot up. Run by the host's watchdog every check_period().
  int ExpireDue();

  // How often ExpireDue should run: an eighth of the shorter deadline, within [1 ms, 1 s].
  absl::Duration check_period() const;
  const UploadSlotOptions& options() const { return options_; }
  int in_use() const;
  int waiting() const;

 private:
  enum class State { kWaiting, kHolding };
  struct Entry {
    uint64_t client = 0;
    std::shared_ptr<Holder> holder;
    State state = State::kWaiting;
    uint64_t sequence = 0;  // tells a queued pointer from a later holder at the same address
    bool armed = true;
    bool expiring = false;  // OnExpired is running
    bool left = false;      // Leave came while OnExpired was running
    absl::Time admitted;
    absl::Time last_data;
  };
  using Admissions = std::vector<std::shared_ptr<Holder>>;

  // Admits waiters into free slots; their OnAdmitted is for the caller to run after unlocking.
  Admissions AdmitLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes `entry` (its slot, its client's count).
  void EraseLocked(const Holder* holder) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // DeadlineExceeded naming the deadline `entry` passed at `now`, or OK.
  absl::Status PastDeadline(const Entry& entry, absl::Time now) const;
  static void RunAdmissions(const Admissions& admissions);

  const UploadSlotOptions options_;
  base::Clock& clock_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<const Holder*, Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::deque<std::pair<const Holder*, uint64_t>> queue_ ABSL_GUARDED_BY(mu_);  // arrival order
  absl::flat_hash_map<uint64_t, int> per_client_ ABSL_GUARDED_BY(mu_);
  int in_use_ ABSL_GUARDED_BY(mu_) = 0;
  int waiting_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t next_sequence_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace fedcl::server

#endif  // FEDCL_SERVER_UPLOAD_SLOTS_H_
