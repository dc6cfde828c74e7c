#include "core/fl/client_table.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::fl {
namespace {

ClientRecord Record(ClientId id) {
  ClientRecord r;
  r.id = id;
  r.enrolled_round = 3;
  r.revoked = false;
  r.fedau = {.last_round = 41, .intervals = 7, .interval_sum = 38};
  r.participations = 9;
  r.last_participation_round = 41;
  return r;
}

bool Same(const ClientRecord& a, const ClientRecord& b) {
  return a.id == b.id && a.enrolled_round == b.enrolled_round && a.revoked == b.revoked &&
         a.fedau == b.fedau && a.participations == b.participations &&
         a.last_participation_round == b.last_participation_round;
}

TEST(ClientTableTest, PacksAndUnpacksEveryField) {
  ClientTable table;
  ClientRecord r = Record(1u << 40);
  r.revoked = true;
  ASSERT_TRUE(table.Put(r).ok());
  ASSERT_TRUE(table.Find(r.id).has_value());
  EXPECT_TRUE(Same(*table.Find(r.id), r));
  EXPECT_TRUE(table.IsRevoked(r.id));
  EXPECT_FALSE(table.Find(5).has_value());
  EXPECT_FALSE(table.IsRevoked(5));
  // A fresh enrolment's sentinels (-1) survive.
  ClientRecord fresh;
  fresh.id = 2;
  fresh.fedau = FedAuEnrol(0);
  ASSERT_TRUE(table.Put(fresh).ok());
  EXPECT_TRUE(Same(*table.Find(2), fresh));
}

TEST(ClientTableTest, IteratesInIdOrderFromAnId) {
  ClientTable table;
  for (ClientId id : {50, 10, 30, 20, 40}) ASSERT_TRUE(table.Put(Record(id)).ok());
  std::vector<ClientId> seen;
  table.ForEach(20, 3, [&](const ClientRecord& r) { seen.push_back(r.id); });
  EXPECT_EQ(seen, (std::vector<ClientId>{20, 30, 40}));
  EXPECT_EQ(table.size(), 5);
}

TEST(ClientTableTest, RefusesFieldsBeyond31BitsAndKeepsTheOldRecord) {
  ClientTable table;
  ASSERT_TRUE(table.Put(Record(7)).ok());
  ClientRecord big = Record(7);
  big.fedau.interval_sum = int64_t{1} << 31;
  absl::Status status = table.Put(big);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), ::testing::HasSubstr("fedau.interval_sum"));
  EXPECT_TRUE(Same(*table.Find(7), Record(7)));
  ClientRecord negative = Record(8);
  negative.participations = -1;
  EXPECT_FALSE(table.Put(negative).ok());
  EXPECT_FALSE(table.Find(8).has_value());
}

}  // namespace
}  // namespace fedcl::fl
