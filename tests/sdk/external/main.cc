// Uses the installed SDK the way an application does: an offline device in a temporary storage
// directory, an error path, the stats, and the C API from C++; then, given a server address and
// its backbone (`app SERVER BACKBONE`), a device that learns and syncs until the server has
// acknowledged its update. Exits 0 and prints "ok" when every check holds.
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "fedcl/client.h"
#include "fedcl/fedcl_c.h"

namespace {

int failures = 0;

void Check(bool condition, const std::string& what) {
  if (!condition) {
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
    ++failures;
  }
}

}  // namespace

// Learns a few batches of a toy task and syncs until an update is acknowledged (30 s at most).
void SyncWithServer(const std::string& dir, const char* server, const char* backbone) {
  fedcl::ClientOptions options;
  options.storage_dir = dir + "/online";
  options.server_address = server;
  options.client_id = 1;
  absl::StatusOr<std::unique_ptr<fedcl::Client>> client = fedcl::Client::Create(options);
  Check(client.ok(), "an online client is created: " + client.status().ToString());
  if (!client.ok()) return;
  fedcl::Client& c = **client;
  absl::Status loaded = c.LoadBackbone(backbone);
  Check(loaded.ok(), "the server's backbone loads: " + loaded.ToString());
  if (!loaded.ok()) return;
  const int batch = 8;
  std::vector<float> pixels(static_cast<size_t>(batch * c.input_size()));
  std::vector<int32_t> labels(batch);
  for (int i = 0; i < batch; ++i) {
    labels[i] = i % c.num_classes();
    for (int64_t p = 0; p < c.input_size(); ++p)
      pixels[i * c.input_size() + p] = static_cast<float>((p * (i + 1)) % 7) / 7.0f;
  }
  for (int step = 0; step < 4; ++step) Check(c.Learn(pixels, labels).ok(), "learning a batch");
  bool submitted = false;
  for (int attempt = 0; attempt < 60 && !submitted; ++attempt) {
    absl::StatusOr<fedcl::SyncResult> synced = c.Sync();
    Check(synced.ok(), "sync: " + synced.status().ToString());
    if (!synced.ok()) return;
    submitted = synced->submitted;
    if (!submitted) ::usleep(500 * 1000);
  }
  Check(submitted, "the server acknowledged the update");
  Check(c.Stats().submissions == 1, "one submission is counted");
}

int main(int argc, char** argv) {
  char pattern[] = "/tmp/fedcl_external_app_XXXXXX";
  if (::mkdtemp(pattern) == nullptr) return 2;
  const std::string dir = pattern;

  // Without a storage directory the options are refused, with a message that names it.
  fedcl::ClientOptions bad;
  absl::StatusOr<std::unique_ptr<fedcl::Client>> refused = fedcl::Client::Create(bad);
  Check(absl::IsInvalidArgument(refused.status()), "missing storage_dir is InvalidArgument");
  Check(refused.status().message().find("storage_dir") != absl::string_view::npos,
        "the message names storage_dir: " + std::string(refused.status().message()));

  std::vector<std::string> messages;
  fedcl::ClientOptions options;
  options.storage_dir = dir + "/device";
  options.log = [&messages](fedcl::LogLevel, absl::string_view message) {
    messages.emplace_back(message);
  };
  absl::StatusOr<std::unique_ptr<fedcl::Client>> client = fedcl::Client::Create(options);
  Check(client.ok(), "an offline client is created: " + client.status().ToString());
  if (client.ok()) {
    fedcl::Client& c = **client;
    const fedcl::ClientStats stats = c.Stats();
    Check(!stats.backbone_loaded, "no backbone yet");
    Check(stats.last_round == -1, "no round yet");
    Check(stats.memory_budget_bytes == options.memory_budget_bytes, "the budget is reported");
    Check(c.input_size() == 0, "input_size is 0 without a backbone");
    const std::vector<float> pixels(784, 0.5f);
    const std::vector<int32_t> labels = {1};
    Check(absl::IsFailedPrecondition(c.Learn(pixels, labels).status()),
          "learning without a backbone is FailedPrecondition");
    Check(absl::IsFailedPrecondition(c.Sync().status()), "an offline device cannot sync");
    Check(!fedcl::SyncStageName(c.SyncStatus().stage).empty(), "stages have names");
    Check(c.Save().ok(), "Save works offline");
  }

  // The C API from the same library.
  Check(std::string(fedcl_version()).find('.') != std::string::npos, "fedcl_version");
  fedcl_client* handle = nullptr;
  fedcl_error* error = nullptr;
  Check(fedcl_client_create(nullptr, &handle, &error) == FEDCL_INVALID_ARGUMENT,
        "fedcl_client_create(NULL) is INVALID_ARGUMENT");
  Check(std::string(fedcl_error_message(error)).find("options") != std::string::npos,
        "the C error names the argument");
  fedcl_error_destroy(error);

  if (argc == 3) SyncWithServer(dir, argv[1], argv[2]);

  client = absl::InternalError("released");  // the client goes before its directory
  std::filesystem::remove_all(dir);
  if (failures == 0) std::printf("ok\n");
  return failures == 0 ? 0 : 1;
}
