// The .npy decoder (core/data/npy.h) against files NumPy itself wrote
// (testdata/make_numpy_fixtures.py), and every kind of malformed file the decoder must refuse.
#include "core/data/npy.h"

#include <cmath>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/base/memory_filesystem.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/core/data/npy_test_util.h"

namespace fedcl::data {
namespace {

using ::testing::HasSubstr;
using testutil::EncodeNpy;

std::string Fixture(const std::string& name) {
  std::ifstream in(absl::StrCat(FEDCL_SOURCE_DIR, "/tests/core/data/testdata/", name),
                   std::ios::binary);
  EXPECT_TRUE(in.good()) << name;
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void ExpectRefused(absl::string_view bytes, absl::string_view problem) {
  absl::StatusOr<NpyArray> decoded = DecodeNpy(bytes, "bad.npy");
  ASSERT_FALSE(decoded.ok()) << problem;
  EXPECT_EQ(decoded.status().code(), absl::StatusCode::kInvalidArgument) << decoded.status();
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr("'bad.npy'"));
  EXPECT_THAT(std::string(decoded.status().message()), HasSubstr(problem));
}

TEST(NpyTest, DecodesWhatNumpyWrote) {
  absl::StatusOr<NpyArray> images = DecodeNpy(Fixture("images_nhwc_uint8.npy"), "x");
  ASSERT_TRUE(images.ok()) << images.status();
  EXPECT_EQ(images->dtype, NpyDtype::kUint8);
  EXPECT_EQ(images->shape, (std::vector<int64_t>{2, 3, 2, 3}));
  ASSERT_EQ(images->num_elements(), 36);
  for (int i = 0; i < 36; ++i) EXPECT_EQ(static_cast<uint8_t>(images->bytes[i]), (7 * i) & 0xff);

  absl::StatusOr<NpyArray> labels = DecodeNpy(Fixture("labels_int64.npy"), "y");
  ASSERT_TRUE(labels.ok()) << labels.status();
  EXPECT_EQ(labels->dtype, NpyDtype::kInt64);
  EXPECT_EQ(labels->IntegerAt(0), 3);
  EXPECT_EQ(labels->IntegerAt(1), 1);

  absl::StatusOr<NpyArray> v2 = DecodeNpy(Fixture("labels_uint16_v2.npy"), "v2");
  ASSERT_TRUE(v2.ok()) << v2.status();
  EXPECT_EQ(v2->dtype, NpyDtype::kUint16);
  EXPECT_EQ(v2->shape, (std::vector<int64_t>{2}));
  EXPECT_EQ(v2->IntegerAt(0), 1);
}

TEST(NpyTest, RefusesFortranOrderBigEndianAndUnknownDtypesByName) {
  ExpectRefused(Fixture("fortran_order.npy"), "Fortran order");
  ExpectRefused(Fixture("big_endian.npy"), "big-endian");
  ExpectRefused(EncodeNpy("<f8", "(2,)", std::string(16, '\0')), "dtype '<f8'");
  ExpectRefused(EncodeNpy("|O", "(1,)", std::string(8, '\0')), "dtype '|O'");
}

TEST(NpyTest, RefusesMalformedFilesNamingTheProblem) {
  ExpectRefused("", "not a .npy file");
  ExpectRefused(std::string("\x93NUMPZ\x01\x00\x00\x00", 10), "not a .npy file");
  ExpectRefused(std::string("\x93NUMPY\x04\x00\x00\x00", 10), "version 4.0");
  ExpectRefused(std::string("\x93NUMPY\x01\x00\xff\x00{}", 12), "truncated .npy header");
  const std::string good = EncodeNpy("|u1", "(2, 3)", "abcdef");
  ASSERT_TRUE(DecodeNpy(good, "good.npy").ok());
  ExpectRefused(good.substr(0, good.size() - 1), "truncated");
  ExpectRefused(good + "x", "oversized");
  ExpectRefused(EncodeNpy("|u1", "(4294967296, 4294967296)", ""), "overflows");
  ExpectRefused(EncodeNpy("|u1", "(-2, 3)", ""), "non-negative integer");
  ExpectRefused(EncodeNpy("|u1", "(2 3)", "abcdef"), "expected ',' or ')'");
  std::string two_shapes = good;
  two_shapes.replace(two_shapes.find("'shape'"), 7, "'descr'");
  ExpectRefused(two_shapes, "repeated key 'descr'");
  std::string no_order = good;
  no_order.replace(no_order.find("'fortran_order'"), 15, "'fortran_ordex'");
  ExpectRefused(no_order, "unexpected or repeated key 'fortran_ordex'");
}

TEST(NpyTest, ZeroLengthArraysDecodeToNoValuesWhateverTheOtherDimensions) {
  absl::StatusOr<NpyArray> empty = DecodeNpy(EncodeNpy("|u1", "(0, 4096, 4096)", ""), "e.npy");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->num_elements(), 0);
}

// Channels-last images become rows in channel, row, column order: value (n, h, w, c) of the
// file is column c·H·W + h·W + w of row n.
TEST(NpyImageDatasetTest, ChannelsLastImagesAreTransposedToChannelMajorRows) {
  base::MemoryFileSystem fs;
  fs.SetFile("/x.npy", Fixture("images_nhwc_uint8.npy"));
  fs.SetFile("/y.npy", Fixture("labels_int64.npy"));
  NpyImageOptions options;
  absl::StatusOr<Dataset> data = LoadNpyImageDataset(fs, "/x.npy", "/y.npy", options);
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_TRUE(data->Validate().ok());
  EXPECT_EQ(data->channels, 3);
  EXPECT_EQ(data->height, 3);
  EXPECT_EQ(data->width, 2);
  EXPECT_EQ(data->labels, (std::vector<int32_t>{3, 1}));
  for (int n = 0; n < 2; ++n) {
    for (int h = 0; h < 3; ++h) {
      for (int w = 0; w < 2; ++w) {
        for (int c = 0; c < 3; ++c) {
          const int flat = ((n * 3 + h) * 2 + w) * 3 + c;
          EXPECT_FLOAT_EQ(data->images(n, c * 6 + h * 2 + w), ((7 * flat) & 0xff) / 255.0f)
              << n << " " << h << " " << w << " " << c;
        }
      }
    }
  }
  // Read as channels-first instead, the same file is 3 channels of 2x3... no: [N, C=3, H=2, W=3].
  options.channels_last = false;
  data = LoadNpyImageDataset(fs, "/x.npy", "/y.npy", options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->channels, 3);
  EXPECT_EQ(data->height, 2);
  EXPECT_EQ(data->width, 3);
  for (int j = 0; j < 18; ++j)
    EXPECT_FLOAT_EQ(data->images(1, j), ((7 * (18 + j)) & 0xff) / 255.0f);
}

TEST(NpyImageDatasetTest, FloatImagesAreTakenAsStoredThenNormalized) {
  base::MemoryFileSystem fs;
  fs.SetFile("/x.npy", Fixture("images_float32.npy"));
  fs.SetFile("/y.npy", Fixture("labels_uint16_v2.npy"));
  NpyImageOptions options;
  options.normalize = true;
  options.mean = 0.5f;
  options.stddev = 2.0f;
  absl::StatusOr<Dataset> data = LoadNpyImageDataset(fs, "/x.npy", "/y.npy", options);
  ASSERT_TRUE(data.ok()) << data.status();
  EXPECT_EQ(data->channels, 1);
  for (int i = 0; i < 8; ++i) {
    EXPECT_FLOAT_EQ(data->images(i / 4, i % 4), (i / 8.0f - 0.25f - 0.5f) / 2.0f) << i;
  }
  EXPECT_EQ(data->labels, (std::vector<int32_t>{1, 0}));
}

TEST(NpyImageDatasetTest, RefusesWhatIsNotAnImageOrLabelArrayNamingTheFile) {
  base::MemoryFileSystem fs;
  fs.SetFile("/x.npy", Fixture("images_nhwc_uint8.npy"));
  fs.SetFile("/y.npy", Fixture("labels_int64.npy"));
  fs.SetFile("/three.npy", EncodeNpy("|u1", "(3,)", std::string("\x00\x01\x02", 3)));
  fs.SetFile("/big_label.npy", EncodeNpy("|u1", "(2,)", "\x01\x0a"));
  fs.SetFile("/flat.npy", EncodeNpy("|u1", "(2, 4)", "abcdefgh"));
  fs.SetFile("/int_images.npy", EncodeNpy("<i4", "(1, 1, 1)", std::string(4, '\0')));
  const float nan = std::nanf("");
  fs.SetFile("/nan.npy",
             EncodeNpy("<f4", "(1, 1, 1)", std::string(reinterpret_cast<const char*>(&nan), 4)));
  fs.SetFile("/one.npy", EncodeNpy("|u1", "(1,)", std::string(1, '\0')));
  const NpyImageOptions options;
  auto refused = [&](const char* images, const char* labels, const char* problem) {
    absl::StatusOr<Dataset> data = LoadNpyImageDataset(fs, images, labels, options);
    ASSERT_FALSE(data.ok()) << problem;
    EXPECT_EQ(data.status().code(), absl::StatusCode::kInvalidArgument) << data.status();
    EXPECT_THAT(std::string(data.status().message()), HasSubstr(problem));
  };
  refused("/x.npy", "/three.npy", "holds 2 images but '/three.npy' holds 3 labels");
  refused("/x.npy", "/big_label.npy", "label 10 of sample 1 is outside [0, 10)");
  refused("/flat.npy", "/y.npy", "images must be [N, H, W]");
  refused("/int_images.npy", "/one.npy", "images must be uint8 or float32");
  refused("/nan.npy", "/one.npy", "is not finite");
  refused("/x.npy", "/flat.npy", "labels must be a 1-D integer array");
}

}  // namespace
}  // namespace fedcl::data
