// Damages a valid envelope in every way a disk, a copy or a network can, and checks that each
// decode either fails with a clear error and an empty output, or (only for the intact bytes)
// returns exactly the original message. Never a crash, never OK with a different message.
#include <cstdint>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "proto/envelope.h"
#include "proto/fedcl/v1/tensor.pb.h"

namespace fedcl::proto {
namespace {

constexpr char kSource[] = "/state/model.ckpt";

v1::ParameterSet MakeMessage() {
  v1::ParameterSet message;
  message.set_name("module");
  for (int i = 0; i < 4; ++i) {
    v1::Tensor* tensor = message.add_tensors();
    tensor->set_name(absl::StrCat("t", i));
    tensor->add_shape(i + 1);
    tensor->set_dtype(v1::DTYPE_FLOAT32);
    tensor->set_data(std::string(4 * (i + 1), static_cast<char>(0x10 * i + 1)));
    tensor->set_trainable(i != 2);
  }
  return message;
}

class EnvelopeCorruptionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> bytes = EncodeEnvelope(PayloadKind::kParameterSet, original_);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    valid_ = *bytes;
    ASSERT_GT(valid_.size(), kEnvelopeHeaderSize + 40);
  }

  // Decodes `bytes`; true if it succeeded. Checks the invariants of either outcome.
  bool DecodeAndCheck(const std::string& bytes) {
    v1::ParameterSet decoded = original_;  // a failed decode must clear it
    absl::Status status = DecodeEnvelope(bytes, kSource, PayloadKind::kParameterSet, &decoded);
    if (status.ok()) {
      EXPECT_EQ(decoded.SerializeAsString(), original_.SerializeAsString());
      return true;
    }
    EXPECT_NE(status.message().find(kSource), absl::string_view::npos) << status;
    EXPECT_TRUE(status.code() == absl::StatusCode::kDataLoss ||
                status.code() == absl::StatusCode::kInvalidArgument ||
                status.code() == absl::StatusCode::kFailedPrecondition)
        << status;
    EXPECT_EQ(decoded.ByteSizeLong(), 0u) << status;
    return false;
  }

  v1::ParameterSet original_ = MakeMessage();
  std::string valid_;
};

TEST_F(EnvelopeCorruptionTest, IntactBytesDecode) { EXPECT_TRUE(DecodeAndCheck(valid_)); }

TEST_F(EnvelopeCorruptionTest, EveryTruncationFails) {
  for (size_t length = 0; length < valid_.size(); ++length) {
    SCOPED_TRACE(length);
    EXPECT_FALSE(DecodeAndCheck(valid_.substr(0, length)));
  }
}

TEST_F(EnvelopeCorruptionTest, EveryAppendedSuffixFails) {
  for (const std::string& suffix : {std::string(1, '\0'), std::string("x"), valid_}) {
    EXPECT_FALSE(DecodeAndCheck(valid_ + suffix));
  }
}

TEST_F(EnvelopeCorruptionTest, EverySingleBitFlipFails) {
  for (size_t i = 0; i < valid_.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      SCOPED_TRACE(testing::Message() << "byte " << i << " bit " << bit);
      std::string bytes = valid_;
      bytes[i] = static_cast<char>(bytes[i] ^ (1 << bit));
      EXPECT_FALSE(DecodeAndCheck(bytes));
    }
  }
}

TEST_F(EnvelopeCorruptionTest, EveryWholeByteInversionFails) {
  for (size_t i = 0; i < valid_.size(); ++i) {
    SCOPED_TRACE(i);
    std::string bytes = valid_;
    bytes[i] = static_cast<char>(~bytes[i]);
    EXPECT_FALSE(DecodeAndCheck(bytes));
  }
}

TEST_F(EnvelopeCorruptionTest, RandomMultiByteDamageNeverYieldsADifferentMessage) {
  std::mt19937 rng(20240601);
  std::uniform_int_distribution<size_t> position(0, valid_.size() - 1);
  std::uniform_int_distribution<int> count(2, 8);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int trial = 0; trial < 3000; ++trial) {
    SCOPED_TRACE(trial);
    std::string bytes = valid_;
    for (int n = count(rng); n > 0; --n) bytes[position(rng)] = static_cast<char>(byte(rng));
    if (trial % 3 == 0) bytes.resize(position(rng));  // damage and truncation together
    // Random damage can write back the original byte, so success is allowed here, but only with
    // the original message (checked inside).
    DecodeAndCheck(bytes);
  }
}

}  // namespace
}  // namespace fedcl::proto
