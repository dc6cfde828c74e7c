// fedcl-server as a real process on 127.0.0.1 (TLS, tokens) against hostile and unlucky clients
// (issue 16): shapes whose element count overflows and absurd sizes, slow and abandoned uploads
// holding the upload slots, names of tens of kilobytes, and numbers no device reports. Each gets
// its specific status, and a normal round completes afterwards. Every wait is bounded: the
// fixture gives each call a 10 s deadline, and the uploads left open here 30 s.
#include <cmath>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/integration/server_fixture.h"

namespace fedcl::testing {
namespace {

using fedcl::v1::GetStatusResponse;

constexpr int64_t kTwo32 = int64_t{1} << 32;

// Two updates (0.1 and 0.3) close round 0; with FedAU's first participations (ω = 1) over the
// N = 4 enrolled clients, the module moves by (0.1 + 0.3) / 4.
void ExpectANormalRoundCompletes(ServerFixture& f, const std::vector<float>& initial) {
  ASSERT_TRUE(f.Submit(ServerFixture::MakeUpdate(0, 0, 0.1f)).ok());
  ASSERT_TRUE(f.Submit(ServerFixture::MakeUpdate(1, 0, 0.3f)).ok());
  GetStatusResponse status;
  ASSERT_TRUE(f.Status(&status).ok());
  EXPECT_EQ(status.round(), 1);
  auto after = f.DownloadModule(0, "head", 1);
  ASSERT_TRUE(after.ok()) << after.status();
  ASSERT_EQ(after->size(), initial.size());
  for (size_t i = 0; i < after->size(); ++i) {
    EXPECT_NEAR((*after)[i], initial[i] + 0.1f, 1e-6) << "value " << i;
  }
}

std::vector<float> StartAndJoin(ServerFixture& f, const std::string& config) {
  f.WriteConfig(config);
  f.StartServer();
  if (::testing::Test::HasFatalFailure()) return {};
  for (int client : {0, 1, 2, 3}) EXPECT_TRUE(f.Join(client).ok());
  auto initial = f.DownloadModule(0, "head", 0);
  EXPECT_TRUE(initial.ok()) << initial.status();
  return initial.ok() ? *initial : std::vector<float>{};
}

// Before the fix, [2^32, 2^32 - 1] wrapped to a negative count that matched a negative
// total_bytes: the call hung until the client's deadline and kept its upload slot, so after
// max_concurrent_uploads of them every upload hung. Now each is refused at once, naming the field.
TEST(ServerAdversarialTest, OverflowingShapesAndAbsurdSizesAreRefusedAtOnceAndHoldNoSlot) {
  ServerFixture f;
  const std::vector<float> initial =
      StartAndJoin(f,
                   "round { duration_ms: 600000 max_participants: 2 }\n"
                   "limits { max_concurrent_uploads: 2 }\n");
  ASSERT_FALSE(initial.empty());
  struct Case {
    std::vector<int64_t> shape;
    int64_t declared_bytes;
    const char* field;
  };
  // The wrapped count of the issue: (2^32 · (2^32 - 1) + 4) floats, as int64, in bytes.
  const int64_t wrapped = static_cast<int64_t>(
      (static_cast<uint64_t>(kTwo32) * static_cast<uint64_t>(kTwo32 - 1) + 4) * 4);
  const Case cases[] = {
      {{kTwo32, kTwo32 - 1}, wrapped, "modules[0]"},
      {{kTwo32, kTwo32}, 16, "modules[0]"},  // 2^64 wraps to 0: the bias's 16 bytes in all
      {{kTwo32 / 2, kTwo32 / 2, 4}, 16, "modules[0]"},
      {{4, 10}, -40, "total_bytes"},
      {{4, 10}, std::numeric_limits<int64_t>::min(), "total_bytes"},
      {{4, 10}, int64_t{1} << 62, "total_bytes"},
  };
  for (int repeat = 0; repeat < 2; ++repeat) {  // more of them than there are upload slots
    for (const Case& c : cases) {
      ServerFixture::Update u = ServerFixture::MakeUpdate(2, 0, 0.1f);
      u.weight_shape = c.shape;
      u.declared_bytes = c.declared_bytes;
      const absl::Time start = absl::Now();
      const grpc::Status status = f.Submit(u);
      EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << c.field << ": " << status.error_message() << " after " << absl::Now() - start;
      EXPECT_NE(status.error_message().find(c.field), std::string::npos) << status.error_message();
    }
  }
  GetStatusResponse status;
  ASSERT_TRUE(f.Status(&status).ok());
  EXPECT_EQ(status.accepted_this_round(), 0);
  ExpectANormalRoundCompletes(f, initial);
}

// Every slot held by a client that stalled (half its data sent) or abandoned its upload (header
// only): an honest upload waits until the idle deadline takes the slots back, then lands. Before
// the fix it ended in DEADLINE_EXCEEDED after the client's 10 s. A second upload of a client that
// has one in progress is refused at once (its share is one).
TEST(ServerAdversarialTest, StalledAndAbandonedUploadsLoseTheirSlotsAndAnHonestUploadLands) {
  ServerFixture f;
  const std::vector<float> initial =
      StartAndJoin(f,
                   "round { duration_ms: 600000 max_participants: 2 }\n"
                   "limits { max_concurrent_uploads: 2 upload_idle_timeout_ms: 2000 }\n");
  ASSERT_FALSE(initial.empty());
  ServerFixture::OpenUpload stalled(f, ServerFixture::MakeUpdate(2, 0, 0.5f), 88,
                                    absl::Seconds(30));
  ServerFixture::OpenUpload abandoned(f, ServerFixture::MakeUpdate(3, 0, 0.5f), 0,
                                      absl::Seconds(30));
  // Once a client's open upload holds a slot, another upload of that client is refused with
  // RESOURCE_EXHAUSTED; until then the probe (with a wrong CRC) runs and is refused as corrupt.
  for (int client : {2, 3}) {
    ServerFixture::Update probe = ServerFixture::MakeUpdate(client, 0, 0.5f);
    probe.corrupt_crc = true;
    grpc::Status answer;
    for (int attempt = 0; attempt < 1000; ++attempt) {
      answer = f.Submit(probe);
      if (answer.error_code() != grpc::StatusCode::DATA_LOSS) break;
      absl::SleepFor(absl::Milliseconds(10));
    }
    EXPECT_EQ(answer.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
        << "client " << client << ": " << answer.error_message();
    EXPECT_NE(answer.error_message().find("max_uploads_per_client"), std::string::npos);
  }
  const absl::Time start = absl::Now();
  const grpc::Status honest = f.Submit(ServerFixture::MakeUpdate(0, 0, 0.1f));
  EXPECT_TRUE(honest.ok()) << honest.error_message();
  std::cerr << "the honest upload landed after " << absl::Now() - start << "\n";
  for (ServerFixture::OpenUpload* open : {&stalled, &abandoned}) {
    const grpc::Status ended = open->Finish();
    EXPECT_EQ(ended.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << ended.error_message();
    EXPECT_NE(ended.error_message().find("upload_idle_timeout_ms"), std::string::npos)
        << ended.error_message();
  }
  GetStatusResponse status;
  ASSERT_TRUE(f.Status(&status).ok());
  EXPECT_EQ(status.accepted_this_round(), 1) << "nothing of the stalled uploads counted";
  ASSERT_TRUE(f.Submit(ServerFixture::MakeUpdate(1, 0, 0.3f)).ok());
  ASSERT_TRUE(f.Status(&status).ok());
  EXPECT_EQ(status.round(), 1);
  auto after = f.DownloadModule(0, "head", 1);
  ASSERT_TRUE(after.ok()) << after.status();
  for (size_t i = 0; i < after->size(); ++i) EXPECT_NEAR((*after)[i], initial[i] + 0.1f, 1e-6);
}

// A name of 40 kB echoed whole made the status trailer larger than the client's metadata limit,
// and the caller saw RESOURCE_EXHAUSTED. Now each call gets the code the same request with a
// short unknown name gets, with a short message.
TEST(ServerAdversarialTest, LongNamesGetTheSameCodeAsShortOnesAndAShortMessage) {
  ServerFixture f;
  const std::vector<float> initial =
      StartAndJoin(f, "round { duration_ms: 600000 max_participants: 2 }\n");
  ASSERT_FALSE(initial.empty());
  auto submit = [&](const std::string& module, const std::string& tensor) {
    ServerFixture::Update u = ServerFixture::MakeUpdate(2, 0, 0.1f);
    u.module = module;
    u.weight_name = tensor;
    return f.Submit(u);
  };
  auto download = [&](const std::string& name) { return f.DownloadModule(2, name, 0).status(); };
  auto attach = [&](const std::string& name) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + f.token(2));
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    fedcl::v1::AttachDescriptorRequest request;
    request.set_client_id(2);
    request.set_name(name);
    auto* tensor = request.mutable_descriptor_tensors()->add_tensors();
    tensor->set_name("d");
    tensor->add_shape(1);
    tensor->set_dtype(fedcl::v1::DTYPE_FLOAT32);
    tensor->set_data(std::string(4, '\0'));
    fedcl::v1::AttachDescriptorResponse response;
    return f.stub().AttachDescriptor(&context, request, &response);
  };
  for (size_t bytes : {30000, 40000}) {
    const std::string name(bytes, 'n');
    struct Call {
      const char* what;
      int code_long, code_short;
      std::string message;
    };
    const grpc::Status module_long = submit(name, "head.weight");
    const grpc::Status tensor_long = submit("head", name);
    const grpc::Status attach_long = attach(name);
    const absl::Status download_long = download(name);
    const Call calls[] = {
        {"module name", module_long.error_code(), submit("nope", "head.weight").error_code(),
         module_long.error_message()},
        {"tensor name", tensor_long.error_code(), submit("head", "nope").error_code(),
         tensor_long.error_message()},
        {"AttachDescriptor", attach_long.error_code(), attach("nope").error_code(),
         attach_long.error_message()},
        {"DownloadModule", static_cast<int>(download_long.code()),
         static_cast<int>(download("nope").code()), std::string(download_long.message())},
    };
    for (const Call& c : calls) {
      EXPECT_NE(c.code_long, static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED)) << c.what;
      EXPECT_NE(c.code_long, 0) << c.what;
      EXPECT_EQ(c.code_long, c.code_short) << c.what << ": " << c.message;
      // The server echoes a name as its first 64 bytes and its size; messages the coordinator
      // composes with the whole name are cut to 1 kB at the boundary (server/grpc_status.h).
      EXPECT_LT(c.message.size(), 1200u) << c.what;
      EXPECT_NE(c.message.find(" bytes)"), std::string::npos) << c.what << ": " << c.message;
    }
  }
  ExpectANormalRoundCompletes(f, initial);
}

// A loss of 1e308 made the round's metrics line invalid JSON (inf) and negative or 2^62 sample
// counts were accepted. Now each is refused naming the field; the largest valid values go
// through, and every metrics line parses.
TEST(ServerAdversarialTest, BadNumbersAreRefusedNamingTheFieldAndMetricsStayValidJson) {
  ServerFixture f;
  const std::vector<float> initial =
      StartAndJoin(f, "round { duration_ms: 600000 max_participants: 2 }\n");
  ASSERT_FALSE(initial.empty());
  struct Case {
    int64_t samples, steps;
    double loss;
    const char* field;
  };
  const double inf = std::numeric_limits<double>::infinity();
  const Case cases[] = {
      {16, 1, 1e308, "loss"},       {16, 1, -1e308, "loss"},
      {16, 1, inf, "loss"},         {16, 1, std::nan(""), "loss"},
      {-1, 1, 0.5, "num_samples"},  {int64_t{1} << 62, 1, 0.5, "num_samples"},
      {16, -5, 0.5, "local_steps"}, {16, int64_t{1} << 62, 0.5, "local_steps"},
  };
  for (const Case& c : cases) {
    ServerFixture::Update u = ServerFixture::MakeUpdate(2, 0, 0.1f);
    u.num_samples = c.samples;
    u.local_steps = c.steps;
    u.loss = c.loss;
    const grpc::Status status = f.Submit(u);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_NE(status.error_message().find(c.field), std::string::npos) << status.error_message();
  }
  ServerFixture::Update largest = ServerFixture::MakeUpdate(0, 0, 0.1f);
  largest.num_samples = int64_t{1} << 31;
  largest.loss = 1e9;
  ASSERT_TRUE(f.Submit(largest).ok());
  ServerFixture::Update other = ServerFixture::MakeUpdate(1, 0, 0.3f);
  other.loss = -1e9;
  ASSERT_TRUE(f.Submit(other).ok());
  GetStatusResponse status;
  ASSERT_TRUE(f.Status(&status).ok());
  EXPECT_EQ(status.round(), 1);
  auto after = f.DownloadModule(0, "head", 1);
  ASSERT_TRUE(after.ok());
  for (size_t i = 0; i < after->size(); ++i) EXPECT_NEAR((*after)[i], initial[i] + 0.1f, 1e-6);
  // The server's ticker writes the closed round's line within 50 ms; wait for it (10 s at most).
  std::vector<std::string> lines;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(10);
       lines.empty() && absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(20))) {
    std::ifstream metrics(f.dir() + "/state/metrics.jsonl");
    for (std::string line; std::getline(metrics, line);) lines.push_back(line);
  }
  ASSERT_EQ(lines.size(), 1u);
  google::protobuf::Struct parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[0], &parsed).ok()) << lines[0];
  EXPECT_TRUE(std::isfinite(parsed.fields().at("mean_loss").number_value())) << lines[0];
  EXPECT_EQ(parsed.fields().at("samples").number_value(), (int64_t{1} << 31) + 16) << lines[0];
}

}  // namespace
}  // namespace fedcl::testing
