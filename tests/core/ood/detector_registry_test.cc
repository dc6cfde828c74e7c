#include "core/ood/detector_registry.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/base/random.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::ood {
namespace {

using ::testing::HasSubstr;

bool SameNeeds(const FeatureNeeds& a, const FeatureNeeds& b) {
  return a.logits == b.logits && a.features == b.features && a.layers == b.layers &&
         a.token_mean == b.token_mean;
}

TEST(DetectorRegistryTest, EveryBuiltInDetectorIsRegisteredWithWhatItReads) {
  struct Expected {
    const char* name;
    FeatureNeeds needs;
    bool labels;
  };
  for (const Expected& e :
       {Expected{"max_softmax", {.logits = true}, false},
        Expected{"energy", {.logits = true}, false},
        Expected{"mahalanobis", {.features = true}, true}, Expected{"hdc", {.layers = true}, true},
        Expected{"rd_zscore", {.token_mean = true}, false}}) {
    absl::StatusOr<const DetectorInfo*> info = FindDetector(e.name);
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ((*info)->name, e.name);
    EXPECT_TRUE(SameNeeds((*info)->needs, e.needs)) << e.name << ": " << (*info)->needs.Describe();
    EXPECT_EQ((*info)->fit_needs_labels, e.labels) << e.name;
  }
}

TEST(DetectorRegistryTest, NamesAreSortedUniqueAndEachMakesADetectorOfThatName) {
  const std::vector<std::string> names = DetectorNames();
  ASSERT_EQ(names.size(), Detectors().size());
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_EQ(std::adjacent_find(names.begin(), names.end()), names.end());
  for (const DetectorInfo& info : Detectors()) {
    EXPECT_FALSE(info.description.empty()) << info.name;
    EXPECT_EQ(info.description.find('\n'), std::string::npos) << info.name;
    absl::StatusOr<std::unique_ptr<OodDetector>> d = MakeDetector(info.name);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ((*d)->name(), info.name);
    EXPECT_FALSE((*d)->calibrated());
  }
}

TEST(DetectorRegistryTest, AnUnknownNameListsTheRegisteredOnesSorted) {
  absl::Status s = MakeDetector("odin").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("unknown OOD detector 'odin'"));
  EXPECT_THAT(s.message(),
              HasSubstr(absl::StrCat("(registered: ", absl::StrJoin(DetectorNames(), ", "), ")")));
  EXPECT_FALSE(FindDetector("").ok());
  EXPECT_FALSE(FindDetector("Energy").ok());  // names are exact
}

// Every detector parses its own options: an unknown key and a syntax error are refused with
// messages naming the detector and the key or the position.
TEST(DetectorRegistryTest, EachDetectorRefusesAnUnknownKeyByName) {
  for (const std::string& name : DetectorNames()) {
    absl::Status unknown = MakeDetector(name, {.options = "no_such_knob: 3"}).status();
    EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(unknown.message(), HasSubstr(absl::StrCat("detector ", name)));
    EXPECT_THAT(unknown.message(), HasSubstr("unknown key 'no_such_knob'"));
    EXPECT_THAT(unknown.message(), HasSubstr(absl::StrCat(name, " takes")));
    absl::Status syntax = MakeDetector(name, {.options = "k 3"}).status();
    EXPECT_EQ(syntax.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(syntax.message(), HasSubstr("line 1 column"));
  }
}

// Random hooks of a ViT-like forward: 3 classes apart in every feature, 24 wide (RD's default
// bottleneck of 16 compresses it).
struct Hooks {
  nn::Matrix logits, features, token_mean;
  std::vector<nn::Matrix> layers;
  std::vector<int32_t> labels;
  OodBatch Batch(const FeatureNeeds& needs) const {
    OodBatch b;
    if (needs.logits) b.logits = &logits;
    if (needs.features) b.features = &features;
    if (needs.layers)
      for (const nn::Matrix& m : layers) b.layers.push_back(&m);
    if (needs.token_mean) b.token_mean = &token_mean;
    return b;
  }
};

Hooks MakeHooks(int n, base::Rng& rng) {
  auto sample = [&](int cols, std::vector<int32_t>& labels) {
    nn::Matrix m(n, cols);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < cols; ++j)
        m(i, j) = static_cast<float>(rng.Normal()) + (j % 3 == labels[i] ? 2.0f : 0.0f);
    return m;
  };
  Hooks h;
  for (int i = 0; i < n; ++i) h.labels.push_back(i % 3);
  h.logits = sample(4, h.labels);
  h.features = sample(24, h.labels);
  h.token_mean = sample(24, h.labels);
  for (int l = 0; l < 2; ++l) h.layers.push_back(sample(24, h.labels));
  return h;
}

// A detector's needs are the whole truth: given exactly the fields it declares (and labels only
// if it says so), every registered detector fits, calibrates and scores with its defaults.
TEST(DetectorRegistryTest, EachDetectorWorksFromExactlyTheFieldsItDeclares) {
  base::Rng rng(21);
  const Hooks fit = MakeHooks(200, rng), held = MakeHooks(100, rng), probe = MakeHooks(40, rng);
  for (const DetectorInfo& info : Detectors()) {
    SCOPED_TRACE(info.name);
    std::unique_ptr<OodDetector> d = *info.create({.seed = 5});
    const std::vector<int32_t> none;
    ASSERT_TRUE(d->Fit(fit.Batch(info.needs), info.fit_needs_labels ? fit.labels : none).ok());
    ASSERT_TRUE(d->Calibrate(held.Batch(info.needs)).ok());
    absl::StatusOr<std::vector<float>> scores = d->Score(probe.Batch(info.needs));
    ASSERT_TRUE(scores.ok()) << scores.status();
    ASSERT_EQ(scores->size(), 40u);
    for (float s : *scores) EXPECT_TRUE(std::isfinite(s));
    std::vector<float> into(40);
    ASSERT_TRUE(d->ScoreInto(probe.Batch(info.needs), absl::MakeSpan(into)).ok());
    EXPECT_EQ(into, *scores);
    EXPECT_FALSE(d->Score(OodBatch{}).ok());  // none of what it reads
  }
}

}  // namespace
}  // namespace fedcl::ood
