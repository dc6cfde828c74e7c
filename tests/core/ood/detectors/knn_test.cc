#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/base/random.h"
#include "core/ood/detector_registry.h"
#include "core/ood/ood_metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::ood {
namespace {

using ::testing::HasSubstr;

// Four clusters in 16 dimensions around random centres, each row scaled by a random factor in
// [0.2, 5] so that normalisation matters; some rows of the probe set are far off.
nn::Matrix Clustered(int n, base::Rng& rng, float far = 0.0f) {
  base::Rng centres_rng(11);
  nn::Matrix centres(4, 16);
  for (int c = 0; c < 4; ++c)
    for (int j = 0; j < 16; ++j) centres(c, j) = static_cast<float>(centres_rng.Normal());
  nn::Matrix z(n, 16);
  for (int i = 0; i < n; ++i) {
    const float scale = static_cast<float>(rng.Uniform(0.2, 5.0));
    for (int j = 0; j < 16; ++j) {
      const float off = (i % 3 == 0 && j < 4) ? far : 0.0f;
      z(i, j) = scale * (centres(i % 4, j) + 0.3f * static_cast<float>(rng.Normal()) + off);
    }
  }
  return z;
}

// The defining quantity computed naively in double: normalise, every distance, sort, k-th.
std::vector<double> BruteForce(const nn::Matrix& train, const nn::Matrix& probe, int k) {
  auto unit = [](const nn::Matrix& m, int64_t i) {
    Eigen::RowVectorXd v = m.row(i).cast<double>();
    return Eigen::RowVectorXd(v / v.norm());
  };
  std::vector<double> out;
  for (int64_t i = 0; i < probe.rows(); ++i) {
    std::vector<double> d;
    for (int64_t j = 0; j < train.rows(); ++j)
      d.push_back((unit(probe, i) - unit(train, j)).norm());
    std::sort(d.begin(), d.end());
    out.push_back(d[k - 1]);
  }
  return out;
}

std::unique_ptr<OodDetector> Knn(const std::string& options, uint64_t seed = 1) {
  absl::StatusOr<std::unique_ptr<OodDetector>> d =
      MakeDetector("knn", {.seed = seed, .options = options});
  EXPECT_TRUE(d.ok()) << d.status();
  return d.ok() ? *std::move(d) : nullptr;
}

TEST(KnnDetectorTest, IsRegisteredToReadTheHeadsInputWithoutLabels) {
  const DetectorInfo* info = *FindDetector("knn");
  EXPECT_TRUE(info->needs.features);
  EXPECT_FALSE(info->needs.logits || info->needs.layers || info->needs.token_mean);
  EXPECT_FALSE(info->fit_needs_labels);
}

TEST(KnnDetectorTest, ScoreIsTheKthNearestNormalisedDistanceByBruteForce) {
  base::Rng rng(3);
  const nn::Matrix train = Clustered(300, rng), probe = Clustered(150, rng, 2.0f);
  for (int k : {1, 7, 50, 300}) {  // 150 probe rows: three chunks, the last one partial
    std::unique_ptr<OodDetector> knn = Knn(absl::StrCat("k: ", k));
    ASSERT_TRUE(knn->Fit({.features = &train}, {}).ok());
    const std::vector<float> scores = *knn->Score({.features = &probe});
    const std::vector<double> expected = BruteForce(train, probe, k);
    ASSERT_EQ(scores.size(), expected.size());
    for (size_t i = 0; i < scores.size(); ++i)
      EXPECT_NEAR(scores[i], expected[i], 2e-5) << "k " << k << ", row " << i;
  }
}

TEST(KnnDetectorTest, ScalingAFeatureVectorDoesNotChangeItsScore) {
  base::Rng rng(4);
  const nn::Matrix train = Clustered(200, rng), probe = Clustered(40, rng, 1.0f);
  std::unique_ptr<OodDetector> knn = Knn("k: 5");
  ASSERT_TRUE(knn->Fit({.features = &train}, {}).ok());
  const std::vector<float> scores = *knn->Score({.features = &probe});
  for (float factor : {3.7f, 0.01f}) {
    const nn::Matrix scaled = probe * factor;
    const std::vector<float> again = *knn->Score({.features = &scaled});
    for (size_t i = 0; i < scores.size(); ++i) EXPECT_NEAR(again[i], scores[i], 1e-5) << i;
  }
  // And the stored set is normalised too: a scaled training set gives the same scores.
  const nn::Matrix big = train * 40.0f;
  std::unique_ptr<OodDetector> scaled_fit = Knn("k: 5");
  ASSERT_TRUE(scaled_fit->Fit({.features = &big}, {}).ok());
  const std::vector<float> same = *scaled_fit->Score({.features = &probe});
  for (size_t i = 0; i < scores.size(); ++i) EXPECT_NEAR(same[i], scores[i], 1e-5) << i;
}

TEST(KnnDetectorTest, AFarClusterScoresAboveInDistributionAndCalibrationKeeps95Percent) {
  base::Rng rng(8);
  const nn::Matrix train = Clustered(400, rng), held = Clustered(400, rng);
  // A fifth cluster around its own random centre: in 16 dimensions, a direction far from the
  // four in-distribution ones.
  base::Rng far_rng(12);
  nn::Matrix far(400, 16);
  Eigen::RowVectorXf centre(16);
  for (int j = 0; j < 16; ++j) centre[j] = static_cast<float>(far_rng.Normal());
  for (int i = 0; i < far.rows(); ++i)
    for (int j = 0; j < 16; ++j) far(i, j) = centre[j] + 0.3f * static_cast<float>(rng.Normal());
  std::unique_ptr<OodDetector> knn = Knn("k: 20");
  ASSERT_TRUE(knn->Fit({.features = &train}, {}).ok());
  EXPECT_FALSE(knn->IsOod(1e9f));  // not calibrated: flags nothing
  ASSERT_TRUE(knn->Calibrate({.features = &held}).ok());
  const std::vector<float> id = *knn->Score({.features = &held});
  const std::vector<float> ood = *knn->Score({.features = &far});
  EXPECT_GT(*Auroc(id, ood), 0.99);
  int flagged_id = 0, flagged_ood = 0;
  for (float u : id) flagged_id += knn->IsOod(u);
  for (float u : ood) flagged_ood += knn->IsOod(u);
  EXPECT_LE(flagged_id, static_cast<int>(0.05 * id.size()));
  EXPECT_GE(flagged_id, static_cast<int>(0.05 * id.size()) - 1);
  EXPECT_GT(flagged_ood, static_cast<int>(0.9 * ood.size()));
}

// max_samples keeps a random subset drawn from the seed: the same seed the same scores, another
// seed other ones, and never a score below the full set's (a k-th neighbour among fewer
// candidates is no nearer).
TEST(KnnDetectorTest, ASubsetIsDrawnFromTheSeedAndIsNeverNearerThanTheFullSet) {
  base::Rng rng(5);
  const nn::Matrix train = Clustered(300, rng), probe = Clustered(60, rng, 1.0f);
  std::unique_ptr<OodDetector> full = Knn("k: 5");
  ASSERT_TRUE(full->Fit({.features = &train}, {}).ok());
  const std::vector<float> all = *full->Score({.features = &probe});
  std::vector<std::vector<float>> subset;
  for (uint64_t seed : {9, 9, 10}) {
    std::unique_ptr<OodDetector> knn = Knn("k: 5 max_samples: 100", seed);
    ASSERT_TRUE(knn->Fit({.features = &train}, {}).ok());
    subset.push_back(*knn->Score({.features = &probe}));
  }
  EXPECT_EQ(subset[0], subset[1]);
  EXPECT_NE(subset[0], subset[2]);
  int farther = 0;
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_GE(subset[0][i], all[i] - 1e-5) << i;
    farther += subset[0][i] > all[i] + 1e-5;
  }
  EXPECT_GT(farther, 0);  // the subset really is smaller
}

TEST(KnnDetectorTest, BadOptionsAndBadFitsAreRefusedNamingTheField) {
  EXPECT_THAT(MakeDetector("knn", {.options = "k: 0"}).status().message(),
              HasSubstr("'k' must be >= 1"));
  EXPECT_THAT(MakeDetector("knn", {.options = "k: 2.5"}).status().message(),
              HasSubstr("'k' must be an integer"));
  EXPECT_THAT(MakeDetector("knn", {.options = "max_samples: 0"}).status().message(),
              HasSubstr("'max_samples' must be >= 1"));
  absl::Status unknown = MakeDetector("knn", {.options = "neighbours: 3"}).status();
  EXPECT_THAT(unknown.message(), HasSubstr("unknown key 'neighbours'"));
  EXPECT_THAT(unknown.message(), HasSubstr("knn takes: k, max_samples"));

  base::Rng rng(6);
  const nn::Matrix thirty = Clustered(30, rng), probe = Clustered(5, rng);
  std::unique_ptr<OodDetector> knn = Knn("");  // k = 50 by default
  EXPECT_EQ(knn->Score({.features = &probe}).status().code(),
            absl::StatusCode::kFailedPrecondition);  // not fitted
  EXPECT_THAT(knn->Fit({.features = &thirty}, {}).message(),
              HasSubstr("'k' (50) must be at most the number of stored features (30"));
  EXPECT_THAT(Knn("k: 10 max_samples: 8")->Fit({.features = &thirty}, {}).message(),
              HasSubstr("(8, 'max_samples')"));
  EXPECT_THAT(knn->Fit({}, {}).message(), HasSubstr("knn needs the batch's features"));
  nn::Matrix nan = thirty;
  nan(3, 2) = NAN;
  EXPECT_THAT(knn->Fit({.features = &nan}, {}).message(), HasSubstr("not finite"));
  // A failed fit changes nothing: still unfitted; then a good fit, and a wrong width refused.
  EXPECT_EQ(knn->Score({.features = &probe}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  std::unique_ptr<OodDetector> small = Knn("k: 3");
  ASSERT_TRUE(small->Fit({.features = &thirty}, {}).ok());
  const nn::Matrix narrow = probe.leftCols(5);
  EXPECT_THAT(small->Score({.features = &narrow}).status().message(),
              HasSubstr("features have 5 dimensions, fitted on 16"));
}

}  // namespace
}  // namespace fedcl::ood
