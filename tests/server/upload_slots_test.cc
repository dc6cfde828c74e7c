#include "server/upload_slots.h"

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/base/clock.h"
#include "core/base/random.h"
#include "gtest/gtest.h"

namespace fedcl::server {
namespace {

// An upload that records what UploadSlots told it, in one shared journal of events.
class FakeUpload final : public UploadSlots::Holder {
 public:
  FakeUpload(std::string name, std::vector<std::string>& events)
      : name_(std::move(name)), events_(events) {}
  void OnAdmitted() override {
    ++admitted;
    events_.push_back("admit " + name_);
    if (on_admitted) on_admitted();
  }
  bool OnExpired(const absl::Status& why) override {
    expired_with = why;
    events_.push_back("expire " + name_);
    if (on_expired) on_expired();
    return gives_up;
  }
  int admitted = 0;
  absl::Status expired_with;
  bool gives_up = true;
  std::function<void()> on_admitted, on_expired;

 private:
  std::string name_;
  std::vector<std::string>& events_;
};

class UploadSlotsTest : public ::testing::Test {
 protected:
  std::shared_ptr<FakeUpload> Upload(const std::string& name) {
    return std::make_shared<FakeUpload>(name, events_);
  }
  static UploadSlotOptions Options(int capacity, int per_client) {
    UploadSlotOptions o;
    o.capacity = capacity;
    o.per_client = per_client;
    o.idle_timeout = absl::Seconds(10);
    o.total_timeout = absl::Seconds(60);
    return o;
  }
  base::ManualClock clock_{absl::FromUnixSeconds(1000)};
  std::vector<std::string> events_;
};

TEST_F(UploadSlotsTest, SlotsGoToWaitersInArrivalOrder) {
  UploadSlots slots(Options(2, 1), clock_);
  auto a = Upload("a"), b = Upload("b"), c = Upload("c"), d = Upload("d");
  ASSERT_TRUE(slots.Enter(1, a).ok());
  ASSERT_TRUE(slots.Enter(2, b).ok());
  ASSERT_TRUE(slots.Enter(3, c).ok());
  ASSERT_TRUE(slots.Enter(4, d).ok());
  EXPECT_EQ(slots.in_use(), 2);
  EXPECT_EQ(slots.waiting(), 2);
  slots.Leave(b.get());
  slots.Leave(c.get());  // admitted by b's leaving, then leaves: d is next
  slots.Leave(a.get());
  EXPECT_EQ(events_, (std::vector<std::string>{"admit a", "admit b", "admit c", "admit d"}));
  EXPECT_EQ(slots.in_use(), 1);
  slots.Leave(d.get());
  slots.Leave(d.get());  // twice is harmless
  EXPECT_EQ(slots.in_use(), 0);
  EXPECT_EQ(slots.waiting(), 0);
}

TEST_F(UploadSlotsTest, AWaiterThatLeavesIsSkippedAndCountsNoLonger) {
  UploadSlots slots(Options(1, 1), clock_);
  auto a = Upload("a"), b = Upload("b"), c = Upload("c");
  ASSERT_TRUE(slots.Enter(1, a).ok());
  ASSERT_TRUE(slots.Enter(2, b).ok());
  ASSERT_TRUE(slots.Enter(3, c).ok());
  slots.Leave(b.get());  // gives up waiting
  EXPECT_EQ(slots.waiting(), 1);
  EXPECT_TRUE(slots.Enter(2, Upload("b2")).ok()) << "client 2 has nothing in progress any more";
  slots.Leave(a.get());
  EXPECT_EQ(b->admitted, 0);
  EXPECT_EQ(c->admitted, 1);
}

TEST_F(UploadSlotsTest, AClientBeyondItsShareIsRefusedAndOthersAreNot) {
  UploadSlots slots(Options(4, 2), clock_);
  auto a1 = Upload("a1"), a2 = Upload("a2");
  ASSERT_TRUE(slots.Enter(7, a1).ok());
  ASSERT_TRUE(slots.Enter(7, a2).ok());
  const absl::Status third = slots.Enter(7, Upload("a3"));
  EXPECT_EQ(third.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(third.message().find("client 7"), std::string::npos) << third;
  EXPECT_NE(third.message().find("max_uploads_per_client"), std::string::npos) << third;
  EXPECT_TRUE(slots.Enter(8, Upload("b")).ok());
  EXPECT_EQ(slots.in_use(), 3) << "the refused upload took nothing";
  slots.Leave(a1.get());
  EXPECT_TRUE(slots.Enter(7, Upload("a4")).ok()) << "back under its share";
}

// Waiting uploads count in the share too: a client cannot queue up uploads either.
TEST_F(UploadSlotsTest, WaitingUploadsCountInTheShare) {
  UploadSlots slots(Options(1, 1), clock_);
  ASSERT_TRUE(slots.Enter(1, Upload("holder")).ok());
  ASSERT_TRUE(slots.Enter(2, Upload("waiter")).ok());
  EXPECT_EQ(slots.Enter(2, Upload("second")).code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(UploadSlotsTest, AnIdleHolderLosesItsSlotExactlyAtTheIdleDeadline) {
  UploadSlots slots(Options(1, 1), clock_);
  auto stalled = Upload("stalled"), honest = Upload("honest");
  ASSERT_TRUE(slots.Enter(1, stalled).ok());
  ASSERT_TRUE(slots.Enter(2, honest).ok());
  clock_.Advance(absl::Seconds(10) - absl::Nanoseconds(1));
  EXPECT_EQ(slots.ExpireDue(), 0);
  EXPECT_EQ(honest->admitted, 0);
  clock_.Advance(absl::Nanoseconds(1));
  EXPECT_EQ(slots.ExpireDue(), 1);
  EXPECT_EQ(stalled->expired_with.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(stalled->expired_with.message().find("upload_idle_timeout_ms"), std::string::npos);
  EXPECT_EQ(honest->admitted, 1) << "the slot went to the waiter";
  EXPECT_EQ(events_, (std::vector<std::string>{"admit stalled", "expire stalled", "admit honest"}));
  EXPECT_TRUE(slots.Enter(1, Upload("retry")).ok()) << "the expired upload no longer counts";
  slots.Leave(stalled.get());  // a late Leave is a no-op
  EXPECT_EQ(slots.in_use(), 1);
}

TEST_F(UploadSlotsTest, DataMoveTheIdleDeadlineButNotTheTotalOne) {
  UploadSlots slots(Options(1, 1), clock_);
  auto trickle = Upload("trickle");
  ASSERT_TRUE(slots.Enter(1, trickle).ok());
  for (int i = 0; i < 11; ++i) {  // a chunk every 5 s: never idle for 10 s
    clock_.Advance(absl::Seconds(5));
    EXPECT_EQ(slots.ExpireDue(), 0) << "at " << 5 * (i + 1) << " s";
    slots.Touch(trickle.get());
  }
  clock_.Advance(absl::Seconds(5));  // 60 s since admission
  EXPECT_EQ(slots.ExpireDue(), 1);
  EXPECT_NE(trickle->expired_with.message().find("upload_timeout_ms"), std::string::npos)
      << trickle->expired_with;
}

TEST_F(UploadSlotsTest, WaitersAndDisarmedHoldersHaveNoDeadline) {
  UploadSlots slots(Options(1, 1), clock_);
  auto folding = Upload("folding"), waiter = Upload("waiter");
  ASSERT_TRUE(slots.Enter(1, folding).ok());
  ASSERT_TRUE(slots.Enter(2, waiter).ok());
  slots.Disarm(folding.get());
  clock_.Advance(absl::Hours(2));
  EXPECT_EQ(slots.ExpireDue(), 0);
  EXPECT_EQ(events_, (std::vector<std::string>{"admit folding"}));
  // Its deadline starts at admission, not at arrival.
  slots.Leave(folding.get());
  clock_.Advance(absl::Seconds(9));
  EXPECT_EQ(slots.ExpireDue(), 0);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(slots.ExpireDue(), 1);
}

// A holder past its deadline that is finishing anyway keeps its slot until it leaves; one that
// leaves while OnExpired runs is removed once.
TEST_F(UploadSlotsTest, AHolderThatDeclinesExpiryKeepsItsSlotUntilItLeaves) {
  UploadSlots slots(Options(1, 1), clock_);
  auto busy = Upload("busy"), waiter = Upload("waiter");
  busy->gives_up = false;
  ASSERT_TRUE(slots.Enter(1, busy).ok());
  ASSERT_TRUE(slots.Enter(2, waiter).ok());
  clock_.Advance(absl::Seconds(10));
  EXPECT_EQ(slots.ExpireDue(), 0);
  EXPECT_EQ(waiter->admitted, 0);
  busy->on_expired = [&] { slots.Leave(busy.get()); };  // leaves from inside the callback
  EXPECT_EQ(slots.ExpireDue(), 0);
  EXPECT_EQ(waiter->admitted, 1);
  EXPECT_EQ(slots.in_use(), 1);
  EXPECT_TRUE(slots.Enter(1, Upload("again")).ok());
}

TEST_F(UploadSlotsTest, CallbacksMayCallBackIn) {
  UploadSlots slots(Options(1, 1), clock_);
  auto quitter = Upload("quitter"), next = Upload("next");
  quitter->on_admitted = [&] { slots.Leave(quitter.get()); };  // e.g. out of memory
  ASSERT_TRUE(slots.Enter(1, quitter).ok());
  EXPECT_EQ(slots.in_use(), 0);
  ASSERT_TRUE(slots.Enter(2, next).ok());
  EXPECT_EQ(next->admitted, 1);
}

TEST_F(UploadSlotsTest, OptionsAreValidatedNamingTheConfigField) {
  UploadSlotOptions o = Options(4, 1);
  EXPECT_TRUE(o.Validate().ok());
  o.per_client = 5;
  EXPECT_NE(o.Validate().message().find("max_uploads_per_client"), std::string::npos);
  o = Options(4, 1);
  o.total_timeout = absl::Seconds(5);
  EXPECT_NE(o.Validate().message().find("upload_timeout_ms"), std::string::npos);
  o = Options(0, 1);
  EXPECT_NE(o.Validate().message().find("max_concurrent_uploads"), std::string::npos);
}

// Random enters, leaves, touches, disarms and clock moves against a naive model: at most
// `capacity` holders, none over its client's share, admissions in arrival order, and every
// expiry exactly when the model says a deadline passed.
TEST_F(UploadSlotsTest, RandomScheduleKeepsEveryInvariantOfANaiveModel) {
  const UploadSlotOptions options = Options(3, 2);
  UploadSlots slots(options, clock_);
  base::Rng rng(21);
  struct Model {
    uint64_t client;
    bool holding = false, armed = true, gone = false;
    absl::Time admitted, last;
  };
  std::vector<std::shared_ptr<FakeUpload>> uploads;
  std::vector<Model> model;
  std::vector<size_t> queue;  // model indices waiting, in arrival order
  auto admit = [&] {
    int holding = 0;
    for (const Model& m : model) holding += m.holding && !m.gone;
    while (holding < options.capacity && !queue.empty()) {
      Model& m = model[queue.front()];
      queue.erase(queue.begin());
      m.holding = true;
      m.admitted = m.last = clock_.Now();
      ++holding;
    }
  };
  for (int step = 0; step < 4000; ++step) {
    const int op = static_cast<int>(rng.UniformInt(10));
    if (op < 3) {
      const uint64_t client = rng.UniformInt(4);
      int in_progress = 0;
      for (const Model& m : model) in_progress += m.client == client && !m.gone;
      auto upload = Upload(std::to_string(uploads.size()));
      const absl::Status entered = slots.Enter(client, upload);
      ASSERT_EQ(entered.ok(), in_progress < options.per_client) << entered;
      if (!entered.ok()) continue;
      uploads.push_back(upload);
      model.push_back({client});
      queue.push_back(model.size() - 1);
      admit();
    } else if (op < 5 && !model.empty()) {
      const size_t i = rng.UniformInt(model.size());
      slots.Leave(uploads[i].get());
      if (!model[i].gone) {
        queue.erase(std::remove(queue.begin(), queue.end(), i), queue.end());
        model[i].gone = true;
        admit();
      }
    } else if (op < 7 && !model.empty()) {
      const size_t i = rng.UniformInt(model.size());
      slots.Touch(uploads[i].get());
      if (model[i].holding) model[i].last = clock_.Now();
      if (rng.UniformInt(4) == 0) {
        slots.Disarm(uploads[i].get());
        model[i].armed = false;
      }
    } else {
      clock_.Advance(absl::Seconds(static_cast<int64_t>(rng.UniformInt(8))));
      std::set<size_t> due;
      for (size_t i = 0; i < model.size(); ++i) {
        const Model& m = model[i];
        if (m.gone || !m.holding || !m.armed) continue;
        if (clock_.Now() - m.last >= options.idle_timeout ||
            clock_.Now() - m.admitted >= options.total_timeout) {
          due.insert(i);
        }
      }
      ASSERT_EQ(slots.ExpireDue(), static_cast<int>(due.size())) << "step " << step;
      for (size_t i : due) model[i].gone = true;
      admit();
    }
    int holding = 0, waiting = 0;
    for (size_t i = 0; i < model.size(); ++i) {
      if (model[i].gone) continue;
      holding += model[i].holding;
      waiting += !model[i].holding;
      ASSERT_EQ(uploads[i]->admitted, model[i].holding ? 1 : 0) << "upload " << i;
    }
    ASSERT_EQ(slots.in_use(), holding);
    ASSERT_EQ(slots.waiting(), waiting);
    ASSERT_LE(holding, options.capacity);
  }
}

}  // namespace
}  // namespace fedcl::server
