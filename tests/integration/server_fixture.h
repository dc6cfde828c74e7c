// A fedcl-server process for integration tests: a temporary directory with a small backbone
// checkpoint, tokens for clients 0..15, TLS material from deploy/dev_ca.sh and a config; plus a
// raw gRPC client to send it anything, well-formed or not.
#ifndef FEDCL_TESTS_INTEGRATION_SERVER_FIXTURE_H_
#define FEDCL_TESTS_INTEGRATION_SERVER_FIXTURE_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "proto/fedcl/v1/federation.grpc.pb.h"
#include "tests/integration/child_process.h"

namespace fedcl::testing {

// Writes a checkpoint of an MLP backbone over 8×8 images with one hidden layer of `hidden` units
// and `classes` classes: its head, the module tests share, has (hidden + 1) × classes values.
void SaveMlpBackbone(const std::string& path, int hidden, int classes);

class ServerFixture {
 public:
  // Creates the directory, checkpoint (a tiny MLP: 8×8 images, 4 classes), tokens and TLS files.
  ServerFixture();
  ~ServerFixture();

  // Writes the config: `extra` is appended to a base text-format config (modules: "head").
  void WriteConfig(const std::string& extra);
  // Writes `text` as the whole config (paths: dir(), tls/, tokens.txt are there to use).
  void WriteRawConfig(const std::string& text);
  // Writes client `client`'s token to a file of its own and returns the path.
  std::string TokenFile(int client);
  // The start of a config over TLS with tokens, serving `backbone` for 10 classes with its state
  // under dir() (modules and the rest are the caller's).
  std::string TlsConfigHead(const std::string& backbone) const;
  // The C example device (fedcl-device-loop) as client `client` of this server over TLS with
  // its token, storing under dir()/device-<client> and streaming Fashion-MNIST's training set
  // from `data_dir`; callers add the slice, batching and the rest.
  std::vector<std::string> DeviceLoopArgs(int client, const std::string& data_dir);
  const std::string& address() const { return address_; }
  // Starts fedcl-server on `listen` (by default a free port) and connects; fails the test on
  // error. A restart may pass address() to keep the port the devices know.
  void StartServer(const std::string& listen = "127.0.0.1:0");
  // SIGKILL, reap.
  void KillServer();
  // Sends `signal` and returns the exit status (DeadlineExceeded if it does not exit).
  absl::StatusOr<int> StopServer(int signal);

  fedcl::v1::Federation::Stub& stub() { return *stub_; }
  const std::string& dir() const { return dir_; }
  const std::string& token(int client) { return tokens_[client]; }

  // Calls with client `client`'s token (or `token` if given).
  grpc::Status Join(int client, fedcl::v1::JoinResponse* response = nullptr);
  grpc::Status GetWork(int client, fedcl::v1::GetWorkResponse* response);
  grpc::Status Status(fedcl::v1::GetStatusResponse* response);
  // With `round { shards: 1 }` (the barrier policy): the test, as the one reporter, closes
  // `round` (tokens.txt holds a worker token for this).
  grpc::Status ReportShard(int64_t round, fedcl::v1::ReportShardResponse* response);
  // The standard health service's answer for the whole server, without a token
  // (1 = SERVING, 2 = NOT_SERVING).
  absl::StatusOr<int> HealthCheck();
  // Downloads a module and returns its values.
  absl::StatusOr<std::vector<float>> DownloadModule(int client, const std::string& name,
                                                    int64_t version);

  // One update to send, with knobs to make it wrong in every way the server must refuse.
  struct Update {
    int client = 0;
    int64_t round = 0;
    std::string module = "head";
    int64_t base_version = 0;
    std::vector<float> values;  // the delta (defaults to 44 copies of `fill`)
    std::vector<int64_t> weight_shape = {4, 10};
    int dtype = 1;  // fedcl.v1.DType
    int64_t chunk_bytes = 1024;
    std::optional<int64_t> declared_bytes;  // header total_bytes; unset = the real size
    bool corrupt_crc = false;
    bool cancel_midway = false;   // send half the data, then cancel the call
    int64_t oversized_chunk = 0;  // > 0: send one data chunk of this many bytes instead
    std::string token;            // empty = the client's own token
    std::string weight_name = "head.weight";
    int64_t num_samples = 16;
    int64_t local_steps = 1;
    double loss = 0.5;
  };
  static Update MakeUpdate(int client, int64_t round, float fill);
  grpc::Status Submit(const Update& update, fedcl::v1::SubmitUpdateResponse* response = nullptr);

  // An upload that sends its header and the first `bytes` bytes of its data, then neither sends
  // more nor closes: a slow or abandoned client. Finish waits for the server to end it (at most
  // `deadline`) and returns the server's status.
  class OpenUpload {
   public:
    OpenUpload(ServerFixture& fixture, const Update& update, size_t bytes, absl::Duration deadline);
    grpc::Status Finish() { return writer_->Finish(); }

   private:
    grpc::ClientContext context_;
    fedcl::v1::SubmitUpdateResponse response_;
    std::unique_ptr<grpc::ClientWriter<fedcl::v1::UpdateChunk>> writer_;
  };

 private:
  void Connect();
  // The stream's first message and the delta bytes of `update`.
  static fedcl::v1::UpdateChunk Header(const Update& update, const std::string& data);
  static std::string Data(const Update& update);
  std::string dir_;
  std::map<int, std::string> tokens_;
  std::string worker_token_;
  std::unique_ptr<ChildProcess> server_;
  std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<fedcl::v1::Federation::Stub> stub_;
};

}  // namespace fedcl::testing

#endif  // FEDCL_TESTS_INTEGRATION_SERVER_FIXTURE_H_
