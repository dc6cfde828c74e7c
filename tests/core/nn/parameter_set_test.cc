#include "core/nn/parameter_set.h"

#include "gtest/gtest.h"

namespace fedcl::nn {
namespace {

TEST(ParameterSetTest, TensorsAreContiguousInAddOrder) {
  ParameterSet set("m");
  int w = set.Add("w", {2, 3}, true);
  int b = set.Add("b", {3}, false);
  EXPECT_EQ(set.num_values(), 9);
  EXPECT_EQ(set.num_trainable_values(), 6);
  EXPECT_EQ(set.info(b).offset, 6);
  set.values(w)[5] = 2.0f;
  set.values(b)[0] = 3.0f;
  EXPECT_EQ(set.flat_values()[5], 2.0f);
  EXPECT_EQ(set.flat_values()[6], 3.0f);
  EXPECT_EQ(set.Find("b"), b);
  EXPECT_EQ(set.Find("nope"), -1);
}

TEST(ParameterSetTest, FlatViewsSupportAggregationArithmetic) {
  ParameterSet global("g"), delta("d");
  for (ParameterSet* s : {&global, &delta}) {
    s->Add("a", {4}, true);
    s->Add("b", {2, 2}, true);
  }
  ASSERT_TRUE(global.CheckSameLayout(delta).ok());
  global.flat_values().setConstant(1.0f);
  delta.flat_values().setConstant(2.0f);
  global.flat_values() += 0.5f * delta.flat_values();
  EXPECT_FLOAT_EQ(global.flat_values().sum(), 8 * 2.0f);
  EXPECT_FLOAT_EQ(delta.flat_values().norm(), std::sqrt(8 * 4.0f));
}

TEST(ParameterSetTest, LayoutMismatchNamesTheTensor) {
  ParameterSet a("a"), b("b");
  a.Add("w", {2, 3}, true);
  b.Add("w", {3, 2}, true);
  absl::Status status = a.CheckSameLayout(b);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("'w'"), std::string::npos);
}

TEST(ParameterSetTest, CopyIsDeep) {
  ParameterSet a("a");
  int i = a.Add("w", {3}, true);
  a.values(i)[0] = 1.0f;
  ParameterSet b = a;
  b.values(i)[0] = 5.0f;
  EXPECT_EQ(a.values(i)[0], 1.0f);
}

}  // namespace
}  // namespace fedcl::nn
