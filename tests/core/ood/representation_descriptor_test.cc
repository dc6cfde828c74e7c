#include "core/ood/representation_descriptor.h"

#include <cmath>

#include "gtest/gtest.h"

namespace fedcl::ood {
namespace {

TEST(RepresentationDescriptorTest, MustCompress) {
  base::Rng rng(1);
  EXPECT_FALSE(RepresentationDescriptor::Create(16, 16, rng).ok());
  EXPECT_FALSE(RepresentationDescriptor::Create(16, 0, rng).ok());
  EXPECT_EQ(RepresentationDescriptor::Create(64, 16, rng)->num_parameters(),
            64 * 16 + 16 + 16 * 64 + 64);
}

TEST(RepresentationDescriptorTest, GradientsMatchFiniteDifferences) {
  base::Rng rng(2);
  RepresentationDescriptor rd = *RepresentationDescriptor::Create(6, 2, rng);
  rd.encoder_bias().setConstant(0.1f);
  nn::Matrix z(5, 6);
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 6; ++j) z(i, j) = static_cast<float>(rng.Normal());
  nn::Matrix de, dd;
  Eigen::VectorXf dbe, dbd;
  rd.Gradients(z, &de, &dbe, &dd, &dbd);
  auto mean_loss = [&] {
    double sum = 0;
    for (float l : rd.Losses(z)) sum += l;
    return sum / 5.0;
  };
  auto check = [&](float& parameter, float analytic) {
    const float saved = parameter, h = 1e-2f;
    parameter = saved + h;
    const double plus = mean_loss();
    parameter = saved - h;
    const double minus = mean_loss();
    parameter = saved;
    const double numeric = (plus - minus) / (2 * h);
    EXPECT_NEAR(analytic, numeric, 1e-3 + 1e-2 * std::abs(numeric));
  };
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 6; ++j) check(rd.encoder()(i, j), de(i, j));
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 2; ++j) check(rd.decoder()(i, j), dd(i, j));
  for (int i = 0; i < 2; ++i) check(rd.encoder_bias()[i], dbe[i]);
  for (int i = 0; i < 6; ++i) check(rd.decoder_bias()[i], dbd[i]);
}

TEST(LossRecordsTest, FifoAndZScoreArithmetic) {
  LossRecords records(4);
  records.Add({9, 1});
  EXPECT_EQ(records.ZScore(100), 0.0);  // two values or fewer: 0
  records.Add({2, 3, 4});               // 9 falls out: {1, 2, 3, 4}
  EXPECT_EQ(records.size(), 4);
  EXPECT_DOUBLE_EQ(records.mean(), 2.5);
  EXPECT_NEAR(records.stddev(), std::sqrt(5.0 / 3.0), 1e-12);  // unbiased
  EXPECT_NEAR(records.ZScore(5), 2.5 / std::sqrt(5.0 / 3.0), 1e-6);
  EXPECT_NEAR(records.ZScore(0), 2.5 / std::sqrt(5.0 / 3.0), 1e-6);  // |ℓ − μ|
  records.Freeze();
  records.Add({100});
  EXPECT_DOUBLE_EQ(records.mean(), 2.5);
}

}  // namespace
}  // namespace fedcl::ood
