#include "proto/tensor_convert.h"

#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedcl::proto {
namespace {

using ::testing::HasSubstr;

// A set with a matrix, a frozen vector and a scalar, filled with seeded random values plus a few
// awkward ones (negative zero, a subnormal, the largest float).
nn::ParameterSet MakeSet() {
  nn::ParameterSet set("ssf.task3");
  set.Add("blocks.0.w", {2, 3}, /*trainable=*/true);
  set.Add("blocks.0.b", {3}, /*trainable=*/false);
  set.Add("temperature", {}, /*trainable=*/true);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t i = 0; i < set.num_values(); ++i) set.flat_values()[i] = normal(rng);
  set.values(0)[0] = -0.0f;
  set.values(0)[1] = std::numeric_limits<float>::denorm_min();
  set.values(1)[2] = std::numeric_limits<float>::max();
  return set;
}

// Compares everything that travels, values bit for bit (so -0.0 and NaN payloads count).
void ExpectSameBits(const nn::ParameterSet& a, const nn::ParameterSet& b) {
  EXPECT_EQ(a.name(), b.name());
  ASSERT_EQ(a.num_tensors(), b.num_tensors());
  for (int i = 0; i < a.num_tensors(); ++i) {
    EXPECT_EQ(a.info(i).name, b.info(i).name);
    EXPECT_EQ(a.info(i).shape, b.info(i).shape);
    EXPECT_EQ(a.info(i).trainable, b.info(i).trainable);
    ASSERT_EQ(a.info(i).size, b.info(i).size);
    EXPECT_EQ(std::memcmp(a.values(i), b.values(i), a.info(i).size * sizeof(float)), 0)
        << "tensor " << a.info(i).name;
  }
}

v1::ParameterSet MakeMessage() {
  v1::ParameterSet message;
  ToProto(MakeSet(), &message);
  return message;
}

// FromProto must refuse `message` with InvalidArgument mentioning every one of `parts`.
void ExpectRejected(const v1::ParameterSet& message, std::vector<std::string> parts,
                    const DecodeOptions& options = {}) {
  absl::StatusOr<nn::ParameterSet> set = FromProto(message, options);
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().code(), absl::StatusCode::kInvalidArgument);
  for (const std::string& part : parts) EXPECT_THAT(set.status().message(), HasSubstr(part));
}

TEST(TensorConvertTest, RoundTripPreservesNamesShapesValuesAndFlagsBitExactly) {
  nn::ParameterSet original = MakeSet();
  v1::ParameterSet message;
  ToProto(original, &message);
  absl::StatusOr<nn::ParameterSet> decoded = FromProto(message);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ExpectSameBits(original, *decoded);
  EXPECT_EQ(decoded->flat_grads().squaredNorm(), 0.0f);
}

TEST(TensorConvertTest, RoundTripSurvivesSerialization) {
  nn::ParameterSet original = MakeSet();
  v1::ParameterSet sent;
  ToProto(original, &sent);
  v1::ParameterSet received;
  ASSERT_TRUE(received.ParseFromString(sent.SerializeAsString()));
  absl::StatusOr<nn::ParameterSet> decoded = FromProto(received);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ExpectSameBits(original, *decoded);
}

TEST(TensorConvertTest, EmptySetRoundTrips) {
  v1::ParameterSet message;
  ToProto(nn::ParameterSet("empty"), &message);
  absl::StatusOr<nn::ParameterSet> decoded = FromProto(message);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(decoded->name(), "empty");
  EXPECT_EQ(decoded->num_tensors(), 0);
}

TEST(TensorConvertTest, ValuesAreEncodedAsLittleEndianFloat32) {
  nn::ParameterSet set("s");
  set.Add("x", {2}, true);
  set.values(0)[0] = 1.0f;   // 0x3f800000
  set.values(0)[1] = -2.5f;  // 0xc0200000
  v1::ParameterSet message;
  ToProto(set, &message);
  ASSERT_EQ(message.tensors_size(), 1);
  EXPECT_EQ(message.tensors(0).dtype(), v1::DTYPE_FLOAT32);
  EXPECT_EQ(message.tensors(0).data(), std::string("\x00\x00\x80\x3f\x00\x00\x20\xc0", 8));
}

TEST(TensorConvertTest, ToProtoReplacesWhatTheMessageHeld) {
  v1::ParameterSet message = MakeMessage();
  nn::ParameterSet small("small");
  small.Add("x", {1}, false);
  ToProto(small, &message);
  EXPECT_EQ(message.name(), "small");
  ASSERT_EQ(message.tensors_size(), 1);
  EXPECT_FALSE(message.tensors(0).trainable());
}

TEST(TensorConvertTest, NonFiniteValuesRoundTripBitExactlyWhenAllowed) {
  nn::ParameterSet original = MakeSet();
  original.values(0)[2] = std::bit_cast<float>(uint32_t{0x7fc01234});  // quiet NaN, payload
  original.values(0)[3] = std::bit_cast<float>(uint32_t{0xff800001});  // signalling NaN
  original.values(1)[0] = -std::numeric_limits<float>::infinity();
  v1::ParameterSet message;
  ToProto(original, &message);
  absl::StatusOr<nn::ParameterSet> decoded = FromProto(message, {.require_finite = false});
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ExpectSameBits(original, *decoded);
}

TEST(TensorConvertTest, NonFiniteValueIsRejectedByDefaultNamingTensorAndElement) {
  nn::ParameterSet set = MakeSet();
  set.values(1)[2] = std::numeric_limits<float>::quiet_NaN();
  v1::ParameterSet message;
  ToProto(set, &message);
  ExpectRejected(message, {"'blocks.0.b'", "element 2", "not finite", "'ssf.task3'"});
  set.values(1)[2] = std::numeric_limits<float>::infinity();
  ToProto(set, &message);
  ExpectRejected(message, {"'blocks.0.b'", "element 2", "inf"});
}

TEST(TensorConvertTest, EmptyTensorNameIsRejected) {
  v1::ParameterSet message = MakeMessage();
  message.mutable_tensors(1)->clear_name();
  ExpectRejected(message, {"index 1", "name is empty"});
}

TEST(TensorConvertTest, DuplicateTensorNameIsRejected) {
  v1::ParameterSet message = MakeMessage();
  message.mutable_tensors(2)->set_name("blocks.0.w");
  ExpectRejected(message, {"'blocks.0.w' (index 2)", "already used by tensor 0"});
}

TEST(TensorConvertTest, UnsetDtypeIsRejected) {
  v1::ParameterSet message = MakeMessage();
  message.mutable_tensors(0)->clear_dtype();
  ExpectRejected(message, {"'blocks.0.w'", "DTYPE_UNSPECIFIED"});
}

TEST(TensorConvertTest, UnknownDtypeIsRejected) {
  v1::ParameterSet message = MakeMessage();
  message.mutable_tensors(0)->set_dtype(static_cast<v1::DType>(9));
  ExpectRejected(message, {"'blocks.0.w'", "unsupported dtype 9"});
}

TEST(TensorConvertTest, ZeroDimensionIsRejected) {
  v1::ParameterSet message = MakeMessage();
  message.mutable_tensors(0)->set_shape(1, 0);
  ExpectRejected(message, {"'blocks.0.w'", "[2, 0]", "not positive"});
}

TEST(TensorConvertTest, NegativeDimensionIsRejected) {
  v1::ParameterSet message = MakeMessage();
  message.mutable_tensors(1)->set_shape(0, -3);
  ExpectRejected(message, {"'blocks.0.b'", "[-3]", "not positive"});
}

TEST(TensorConvertTest, ElementCountOverflowIsRejected) {
  v1::ParameterSet message = MakeMessage();
  v1::Tensor* tensor = message.mutable_tensors(0);
  tensor->clear_shape();
  for (int i = 0; i < 3; ++i) tensor->add_shape(int64_t{1} << 30);  // 2^90 elements
  ExpectRejected(message, {"'blocks.0.w'", "overflows"});
  // 2^61 elements would fit in int64, but their byte count would not.
  tensor->clear_shape();
  tensor->add_shape(int64_t{1} << 61);
  ExpectRejected(message, {"'blocks.0.w'", "overflows"});
}

TEST(TensorConvertTest, DataLengthMustMatchShape) {
  v1::ParameterSet message = MakeMessage();
  message.mutable_tensors(0)->mutable_data()->pop_back();
  ExpectRejected(message, {"'blocks.0.w'", "23 bytes, expected 24"});
  message = MakeMessage();
  message.mutable_tensors(2)->mutable_data()->append(4, '\0');
  ExpectRejected(message, {"'temperature'", "8 bytes, expected 4"});
}

TEST(TensorConvertTest, CopyValuesOverwritesValuesOnly) {
  nn::ParameterSet source = MakeSet();
  v1::ParameterSet message;
  ToProto(source, &message);
  message.set_name("other name");
  message.mutable_tensors(1)->set_trainable(true);

  nn::ParameterSet into("into");
  into.Add("blocks.0.w", {2, 3}, false);
  into.Add("blocks.0.b", {3}, false);
  into.Add("temperature", {}, false);
  into.flat_grads().setConstant(5.0f);
  ASSERT_TRUE(CopyValuesFromProto(message, &into).ok());
  EXPECT_EQ(std::memcmp(into.values(0), source.values(0), source.num_values() * sizeof(float)), 0);
  EXPECT_EQ(into.name(), "into");
  EXPECT_FALSE(into.any_trainable());
  EXPECT_EQ(into.flat_grads().minCoeff(), 5.0f);
}

// CopyValuesFromProto must fail with InvalidArgument mentioning `part` and leave `into` as it was.
void ExpectCopyRefusedAndUntouched(const v1::ParameterSet& message, nn::ParameterSet into,
                                   const std::string& part) {
  into.flat_values().setConstant(3.0f);
  nn::ParameterSet before = into;
  absl::Status status = CopyValuesFromProto(message, &into);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(part));
  ExpectSameBits(before, into);
}

TEST(TensorConvertTest, CopyValuesLeavesDestinationUntouchedOnLayoutMismatch) {
  v1::ParameterSet message = MakeMessage();
  nn::ParameterSet shape_differs("d");
  shape_differs.Add("blocks.0.w", {2, 3}, true);
  shape_differs.Add("blocks.0.b", {4}, true);
  shape_differs.Add("temperature", {}, true);
  ExpectCopyRefusedAndUntouched(message, shape_differs, "shape [3], expected [4]");

  nn::ParameterSet name_differs("d");
  name_differs.Add("blocks.0.w", {2, 3}, true);
  name_differs.Add("blocks.0.b", {3}, true);
  name_differs.Add("scale", {}, true);
  ExpectCopyRefusedAndUntouched(message, name_differs, "expected tensor 'scale'");

  nn::ParameterSet fewer("d");
  fewer.Add("blocks.0.w", {2, 3}, true);
  ExpectCopyRefusedAndUntouched(message, fewer, "has 3 tensors, expected 1");
}

TEST(TensorConvertTest, CopyValuesLeavesDestinationUntouchedWhenALaterTensorIsInvalid) {
  nn::ParameterSet into = MakeSet();
  v1::ParameterSet bad_length = MakeMessage();
  bad_length.mutable_tensors(2)->mutable_data()->pop_back();
  ExpectCopyRefusedAndUntouched(bad_length, into, "'temperature'");

  nn::ParameterSet with_nan = MakeSet();
  with_nan.values(2)[0] = std::numeric_limits<float>::quiet_NaN();
  v1::ParameterSet nan_last;
  ToProto(with_nan, &nan_last);
  ExpectCopyRefusedAndUntouched(nan_last, into, "not finite");
}

}  // namespace
}  // namespace fedcl::proto
