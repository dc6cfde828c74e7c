// fedcl_chaos_device: a device for the chaos test (chaos_test.cc) that runs the shipped device
// code — DeviceSession over GrpcPort, its state in a DeviceStateStore — with a StepTrainer in
// place of a model, and keeps a ledger (chaos_ledger.h) of what it learned, sent and was answered.
// It may be killed with SIGKILL at any moment and restarted with the same flags; it resumes from
// its state file exactly as fedcl-client does.
//
// Each round the server offers it, it learns one step: step k moves coordinate
// --first_index + k of the module by a value in ±{1..5}/64, so every step of every device touches
// a coordinate of its own (the test gives each device a disjoint range). It submits its queued
// learning for the round; learning the server did not take (the round closed first) is kept and
// sent with the next round's. Once --stop_file exists it stops at the next point where it has no
// update in flight, writes "done" and exits 0. Exit codes: 2 bad flags, 3 out of time or steps, 4
// a local failure (state or ledger files).
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/base/command_line.h"
#include "core/base/filesystem.h"
#include "core/device/device_session.h"
#include "proto/device_state.h"
#include "proto/device_state_store.h"
#include "proto/grpc_port.h"
#include "tests/integration/chaos_ledger.h"
#include "tests/integration/step_trainer.h"

ABSL_FLAG(std::string, server, "", "fedcl-server address, host:port.");
ABSL_FLAG(std::string, tls_ca, "", "PEM root certificate of the server (empty: plaintext).");
ABSL_FLAG(std::string, tls_server_name, "localhost", "Name on the server's certificate.");
ABSL_FLAG(std::string, token_file, "", "File holding this client's bearer token.");
ABSL_FLAG(uint64_t, client_id, 0, "This device's client id.");
ABSL_FLAG(std::string, module, "head", "The server's module this device learns.");
ABSL_FLAG(std::string, storage_dir, "", "Directory of the device state and the ledger.");
ABSL_FLAG(std::string, stop_file, "", "Stop cleanly once this file exists.");
ABSL_FLAG(int64_t, first_index, 0, "Coordinate of the module that step 0 moves.");
ABSL_FLAG(int64_t, max_steps, 1000, "Steps this device may learn (coordinates it owns).");
ABSL_FLAG(int, think_ms, 20, "Up to this long between learning and submitting (drawn per step).");
ABSL_FLAG(int, max_seconds, 600, "Give up (exit 3) after this long.");

namespace fedcl::testing {
namespace {

constexpr int kExitBadFlags = 2, kExitOutOfTime = 3, kExitLocalFailure = 4;
constexpr char kMethod[] = "chaos";

// Records each submission in the ledger before it leaves and each answer when it arrives; every
// other call passes through.
class LedgerPort final : public device::ForwardingPort {
 public:
  LedgerPort(device::FederationPort& inner, LedgerWriter& ledger)
      : ForwardingPort(inner), ledger_(ledger) {}

  absl::StatusOr<fl::SubmitResult> SubmitUpdate(fl::ClientId client, int64_t round,
                                                const fl::LocalUpdate& update,
                                                int64_t chunk_bytes) override {
    LedgerSend send;
    send.round = round;
    send.samples = update.num_samples;
    for (const fl::ModuleUpdate& m : update.modules) {
      for (size_t i = 0; i < m.values.size(); ++i)
        if (m.values[i] != 0.0f) send.nonzero[static_cast<int64_t>(i)] = m.values[i];
    }
    // The ledger must know of an update before the server can: a failure to record stops here.
    if (absl::Status s = ledger_.Send(send); !s.ok()) return absl::InternalError(s.message());
    absl::StatusOr<fl::SubmitResult> answer =
        inner().SubmitUpdate(client, round, update, chunk_bytes);
    LedgerAnswer a;
    a.round = round;
    if (answer.ok()) {
      a.duplicate = answer->duplicate;
      a.weight = answer->weight;
    } else {
      a.kind = device::IsTransient(answer.status()) ? LedgerAnswer::Kind::kError
                                                    : LedgerAnswer::Kind::kRefused;
      a.code = static_cast<int>(answer.status().code());
    }
    ledger_.Answer(a).IgnoreError();  // a lost record of an answer is a lost answer: resent
    return answer;
  }

 private:
  LedgerWriter& ledger_;
};

bool Exists(const std::string& path) {
  struct stat st;
  return !path.empty() && ::stat(path.c_str(), &st) == 0;
}

void Fail(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "fedcl_chaos_device: %s: %s\n", what.c_str(), status.ToString().c_str());
}

// Repeats `call` every 20 ms until it succeeds or `deadline` passes (the server may be down).
template <typename Call>
auto UntilOk(absl::Time deadline, Call call) -> decltype(call()) {
  while (true) {
    auto result = call();
    if (result.ok() || absl::Now() >= deadline) return result;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

class ChaosDevice {
 public:
  ChaosDevice(device::FederationPort& port, LedgerWriter& ledger, int64_t next_step)
      : port_(port),
        ledger_(ledger),
        next_step_(next_step),
        store_(base::FileSystem::Default(), absl::GetFlag(FLAGS_storage_dir)),
        client_(absl::GetFlag(FLAGS_client_id)),
        rng_(client_ * 1000003 + static_cast<uint64_t>(next_step)) {}

  int Run(absl::Time deadline);

 private:
  // The module's layout and the session over it, restored from the state file if there is one.
  absl::Status Prepare(absl::Time deadline);
  absl::Status Save();
  // One step of learning for `round`, recorded first.
  absl::Status Learn(int64_t round);

  device::FederationPort& port_;
  LedgerWriter& ledger_;
  int64_t next_step_;
  proto::DeviceStateStore store_;
  const uint64_t client_;
  std::mt19937_64 rng_;
  std::mutex mu_;
  std::unique_ptr<StepTrainer> trainer_;
  std::unique_ptr<device::DeviceSession> session_;
};

absl::Status ChaosDevice::Save() {
  v1::DeviceState state;
  state.set_format_version(proto::kDeviceStateFormatVersion);
  state.set_client_id(client_);
  state.set_method(kMethod);
  proto::SessionStateToProto(session_->ExportStateLocked(), &state);
  return store_.Save(state);
}

absl::Status ChaosDevice::Prepare(absl::Time deadline) {
  const std::string module = absl::GetFlag(FLAGS_module);
  absl::StatusOr<device::JoinResult> joined =
      UntilOk(deadline, [&] { return port_.Join(client_, "fedcl-chaos-device"); });
  if (!joined.ok()) return joined.status();
  // The layout comes from the server's current version of the module (restored state then
  // replaces its values).
  absl::StatusOr<device::DownloadedModule> layout = UntilOk(deadline, [&] {
    absl::StatusOr<fl::WorkAssignment> work = port_.GetWork(client_, {});
    if (!work.ok()) return absl::StatusOr<device::DownloadedModule>(work.status());
    for (const fl::ModuleInfo& info : work->modules)
      if (info.spec.name == module) return port_.DownloadModule(client_, module, info.version);
    return absl::StatusOr<device::DownloadedModule>(
        absl::NotFoundError(absl::StrCat("the server has no module '", module, "'")));
  });
  if (!layout.ok()) return layout.status();
  layout->values.set_name(module);
  trainer_ = std::make_unique<StepTrainer>(std::move(layout->values));
  device::SessionOptions options;
  options.client_id = client_;
  options.software = "fedcl-chaos-device";
  options.unsent = device::SessionOptions::Unsent::kKeep;
  device::SessionEnvironment env;
  env.port = &port_;
  env.mu = &mu_;
  env.save = [this] { return Save(); };
  session_ = std::make_unique<device::DeviceSession>(options, *trainer_, env);
  absl::StatusOr<proto::DeviceStateStore::Loaded> loaded = store_.Load(client_, kMethod);
  if (!loaded.ok()) return loaded.status();
  if (loaded->set_aside) return absl::DataLossError("the device state was unreadable");
  if (loaded->state.has_value()) {
    absl::StatusOr<device::SessionState> state = proto::SessionStateFromProto(*loaded->state);
    if (!state.ok()) return state.status();
    std::lock_guard<std::mutex> lock(mu_);
    if (absl::Status s = session_->RestoreStateLocked(*state); !s.ok()) return s;
  }
  return session_->Joined(*joined);
}

absl::Status ChaosDevice::Learn(int64_t round) {
  if (next_step_ >= absl::GetFlag(FLAGS_max_steps)) {
    return absl::ResourceExhaustedError("this device has used every coordinate it owns");
  }
  LedgerStep step;
  step.step = next_step_++;
  step.round = round;
  step.index = absl::GetFlag(FLAGS_first_index) + step.step;
  const int magnitude = 1 + static_cast<int>(step.step % 5);
  step.value = static_cast<float>((step.step % 2 == 0 ? 1 : -1) * magnitude) / 64.0f;
  if (step.index >= trainer_->num_values()) {
    return absl::ResourceExhaustedError("the module has no coordinate for this step");
  }
  // Recorded before it happens: a step in the ledger may have been lost with a kill, a step in
  // an update is always in the ledger.
  if (absl::Status s = ledger_.Learn(step); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  trainer_->Learn(step.index, step.value);
  session_->AfterLearnLocked(/*samples=*/1, /*loss=*/0.5);
  return absl::OkStatus();
}

int ChaosDevice::Run(absl::Time deadline) {
  if (absl::Status s = Prepare(deadline); !s.ok()) {
    Fail("preparing", s);
    return absl::Now() >= deadline ? kExitOutOfTime : kExitLocalFailure;
  }
  const std::string stop_file = absl::GetFlag(FLAGS_stop_file);
  const int think_ms = absl::GetFlag(FLAGS_think_ms);
  int64_t learned_for = -1;  // the round this process last learned for
  while (absl::Now() < deadline) {
    const bool stopping = Exists(stop_file);
    // Begin first resolves an update whose answer was lost: after it, nothing is in flight.
    absl::StatusOr<device::RoundWork> work = session_->Begin();
    if (!work.ok()) {
      absl::SleepFor(absl::Milliseconds(20));  // the server is down or restarting
      continue;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping && !session_->InFlightLocked()) {
        if (absl::Status s = ledger_.Done(); !s.ok()) return kExitLocalFailure;
        return 0;
      }
    }
    if (!work->train) {
      absl::SleepFor(std::min(work->retry_after, absl::Milliseconds(20)));
      continue;
    }
    if (learned_for != work->round) {
      if (absl::Status s = Learn(work->round); !s.ok()) {
        Fail("learning", s);
        return absl::IsResourceExhausted(s) ? kExitOutOfTime : kExitLocalFailure;
      }
      learned_for = work->round;
      // "Training" takes a while, so that kills land between learning and submitting too.
      absl::SleepFor(absl::Milliseconds(std::uniform_int_distribution<int>(0, think_ms)(rng_)));
    }
    absl::StatusOr<device::SubmitOutcome> outcome = session_->Submit(work->round);
    if (!outcome.ok()) absl::SleepFor(absl::Milliseconds(20));  // resolved by the next Begin
  }
  Fail("running", absl::DeadlineExceededError("out of time"));
  return kExitOutOfTime;
}

std::string ReadToken(const std::string& path) {
  absl::StatusOr<std::string> text = base::FileSystem::Default().ReadFile(path);
  return text.ok() ? std::string(absl::StripAsciiWhitespace(*text)) : std::string();
}

int Main(int argc, char** argv) {
  if (!base::ParseCommandLine(argc, argv, "fedcl_chaos_device",
                              "A device for the chaos test: learns one step per round and keeps a "
                              "ledger of what it sends and what the server answers.",
                              "chaos_device")) {
    return kExitBadFlags;
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_max_seconds));
  const std::string dir = absl::GetFlag(FLAGS_storage_dir);
  if (dir.empty() || absl::GetFlag(FLAGS_server).empty()) {
    std::fprintf(stderr, "fedcl_chaos_device: --server and --storage_dir are required\n");
    return kExitBadFlags;
  }
  ::mkdir(dir.c_str(), 0755);
  const std::string ledger_path = dir + "/ledger.log";
  absl::StatusOr<LedgerContents> before = ReadLedger(ledger_path);
  absl::StatusOr<LedgerWriter> ledger = LedgerWriter::Open(ledger_path);
  if (!before.ok() || !ledger.ok() || !ledger->Start().ok()) {
    Fail("the ledger", before.ok() ? ledger.status() : before.status());
    return kExitLocalFailure;
  }
  proto::GrpcPortOptions options;
  options.target = absl::GetFlag(FLAGS_server);
  options.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  if (!options.tls_ca_file.empty()) options.tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
  options.token = ReadToken(absl::GetFlag(FLAGS_token_file));
  options.call_timeout = absl::Seconds(5);
  // A restarted server is found again within a few hundred milliseconds.
  options.reconnect_backoff_initial = absl::Milliseconds(20);
  options.reconnect_backoff_max = absl::Milliseconds(200);
  absl::StatusOr<std::unique_ptr<proto::GrpcPort>> grpc =
      proto::GrpcPort::Create(options, base::FileSystem::Default());
  if (!grpc.ok()) {
    Fail("the port", grpc.status());
    return kExitBadFlags;
  }
  LedgerPort port(**grpc, *ledger);
  // Step numbers are never reused: a step recorded and then lost with a kill keeps its coordinate.
  ChaosDevice device(port, *ledger, static_cast<int64_t>(before->steps.size()));
  return device.Run(deadline);
}

}  // namespace
}  // namespace fedcl::testing

int main(int argc, char** argv) { return fedcl::testing::Main(argc, argv); }
