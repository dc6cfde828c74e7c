#include "core/base/option_text.h"

#include <cstdint>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::base {
namespace {

using ::testing::HasSubstr;

TEST(OptionTextTest, ReadsEveryScalarTypeAndKeepsDefaultsForAbsentKeys) {
  absl::StatusOr<OptionText> text = OptionText::Parse(
      "k: 50, beta1: 0.9; tau: 1e-3\n"
      "# a comment: ignored\n"
      "seed: 18446744073709551615 steps: -7 on: true kind: polynomial name: \"a \\\"b\\\"\\n\"",
      "test");
  ASSERT_TRUE(text.ok()) << text.status();
  int k = 1, absent = 42;
  double beta1 = 0, tau = 0;
  float tau_f = 0;
  uint64_t seed = 0;
  int64_t steps = 0;
  bool on = false;
  std::string kind, name;
  ASSERT_TRUE(text->Read("k", &k).ok());
  ASSERT_TRUE(text->Read("absent", &absent).ok());
  ASSERT_TRUE(text->Read("beta1", &beta1).ok());
  ASSERT_TRUE(text->Read("tau", &tau).ok());
  ASSERT_TRUE(text->Read("tau", &tau_f).ok());
  ASSERT_TRUE(text->Read("seed", &seed).ok());
  ASSERT_TRUE(text->Read("steps", &steps).ok());
  ASSERT_TRUE(text->Read("on", &on).ok());
  ASSERT_TRUE(text->Read("kind", &kind).ok());
  ASSERT_TRUE(text->Read("name", &name).ok());
  EXPECT_EQ(k, 50);
  EXPECT_EQ(absent, 42);
  EXPECT_DOUBLE_EQ(beta1, 0.9);
  EXPECT_DOUBLE_EQ(tau, 1e-3);
  EXPECT_FLOAT_EQ(tau_f, 1e-3f);
  EXPECT_EQ(seed, UINT64_MAX);
  EXPECT_EQ(steps, -7);
  EXPECT_TRUE(on);
  EXPECT_EQ(kind, "polynomial");
  EXPECT_EQ(name, "a \"b\"\n");
  EXPECT_TRUE(text->CheckAllRead().ok());
}

TEST(OptionTextTest, AnEmptyTextHasNoKeys) {
  absl::StatusOr<OptionText> text = OptionText::Parse("  # nothing\n", "test");
  ASSERT_TRUE(text.ok());
  EXPECT_TRUE(text->empty());
  EXPECT_TRUE(text->CheckAllRead().ok());
}

TEST(OptionTextTest, AnUnreadKeyIsNamed) {
  absl::StatusOr<OptionText> text = OptionText::Parse("k: 3 kk: 4", "detector knn");
  ASSERT_TRUE(text.ok());
  int k = 0;
  ASSERT_TRUE(text->Read("k", &k).ok());
  const absl::Status status = text->CheckAllRead();
  EXPECT_TRUE(absl::IsInvalidArgument(status));
  EXPECT_THAT(status.message(), HasSubstr("detector knn"));
  EXPECT_THAT(status.message(), HasSubstr("unknown key 'kk'"));
}

TEST(OptionTextTest, ValuesOfTheWrongTypeAreRefusedAndLeaveTheTargetUnchanged) {
  struct Case {
    const char* text;
    const char* expected;
  };
  for (const Case& c : {Case{"k: 1.5", "an integer"}, Case{"k: \"3\"", "an integer"},
                        Case{"k: 4294967296", "fits 32 bits"}, Case{"k: abc", "an integer"}}) {
    absl::StatusOr<OptionText> text = OptionText::Parse(c.text, "t");
    ASSERT_TRUE(text.ok()) << c.text;
    int k = 9;
    const absl::Status status = text->Read("k", &k);
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << c.text;
    EXPECT_THAT(status.message(), HasSubstr(c.expected)) << c.text;
    EXPECT_EQ(k, 9) << c.text;
  }
  absl::StatusOr<OptionText> text = OptionText::Parse("x: inf y: nan z: 1e39 b: 1 u: -1", "t");
  ASSERT_TRUE(text.ok());
  double x = 0, y = 0;
  float z = 0;
  bool b = false;
  uint64_t u = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(text->Read("x", &x)));
  EXPECT_TRUE(absl::IsInvalidArgument(text->Read("y", &y)));
  EXPECT_TRUE(absl::IsInvalidArgument(text->Read("z", &z)));
  EXPECT_TRUE(absl::IsInvalidArgument(text->Read("b", &b)));
  EXPECT_TRUE(absl::IsInvalidArgument(text->Read("u", &u)));
  EXPECT_EQ(z, 0.0f);
}

TEST(OptionTextTest, SyntaxErrorsNameTheirPosition) {
  for (const char* bad : {"k 3", "k:", ": 3", "k: \"open", "k: \"\\q\"", "k: 3x:", "k: {", "3: 1",
                          "k: [1, 2", "k: [1, \"a\"]"}) {
    absl::StatusOr<OptionText> text = OptionText::Parse(bad, "rule fedadam");
    ASSERT_FALSE(text.ok()) << bad;
    EXPECT_TRUE(absl::IsInvalidArgument(text.status())) << bad;
    EXPECT_THAT(text.status().message(), HasSubstr("rule fedadam options, line 1")) << bad;
  }
}

TEST(OptionTextTest, ListsAreBracketedOrRepeatedKeysAndAScalarGivenTwiceIsRefused) {
  absl::StatusOr<OptionText> text =
      OptionText::Parse("blocks: [2, 3] lae: 0 lae: 1 empty: [] k: 1 k: 2", "method sema");
  ASSERT_TRUE(text.ok()) << text.status();
  std::vector<int> blocks, lae, empty = {9}, absent = {7};
  ASSERT_TRUE(text->ReadList("blocks", &blocks).ok());
  ASSERT_TRUE(text->ReadList("lae", &lae).ok());
  ASSERT_TRUE(text->ReadList("absent", &absent).ok());
  EXPECT_EQ(blocks, (std::vector<int>{2, 3}));
  EXPECT_EQ(lae, (std::vector<int>{0, 1}));
  EXPECT_EQ(absent, (std::vector<int>{7}));
  int k = 0;
  const absl::Status twice = text->Read("k", &k);
  EXPECT_TRUE(absl::IsInvalidArgument(twice));
  EXPECT_THAT(twice.message(), HasSubstr("'k' is given more than once"));
  EXPECT_EQ(k, 0);
  EXPECT_TRUE(text->Has("empty"));
  ASSERT_TRUE(text->ReadList("empty", &empty).ok());
  EXPECT_TRUE(empty.empty());
}

}  // namespace
}  // namespace fedcl::base
