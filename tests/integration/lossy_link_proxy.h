// A TCP relay on 127.0.0.1 between gRPC clients and a plaintext gRPC server that fails as a flaky
// link does, in two ways:
// - it loses the server's reply to an upload: the client's bytes all reach the server, the
//   server handles the call and answers, and the client sees its connection reset (UNAVAILABLE)
//   instead of the answer;
// - it cuts a download: once a stream has brought the client a given number of DATA bytes from
//   the server, the connection is closed before the next DATA frame, wherever that falls in a
//   gRPC message. Closed, not reset: a reset would make the client's kernel discard what its
//   socket buffer holds, so how much arrived would depend on how far the reader lagged; closed,
//   the client reads everything relayed, then the end of the connection.
//
//   auto proxy = LossyLinkProxy::Start(server_port, /*min_upload_bytes=*/4096);
//   ... connect the device to (*proxy)->address() ...
//   (*proxy)->DropNextReplies(1);
//   ... the device's next upload is kept by the server; the device sees UNAVAILABLE ...
//   (*proxy)->CutNextDownloads(2, /*after_bytes=*/256 << 10);
//   ... the next two streams reaching 256 KiB of server data are cut there ...
//
// How a reply is recognised. The relay reads the HTTP/2 framing (RFC 9113 §4.1: a 9-byte header
// of length, type, flags and stream id) in both directions; it needs no TLS and no HPACK. It
// counts the DATA bytes each client stream sends; a stream that sent at least `min_upload_bytes`
// is an upload (every other call of fedcl.v1 sends a few hundred bytes at most). The server's
// first HEADERS frame on an upload stream is the start of its reply: a gRPC server sends it only
// when the call ends, after the handler has decided (fedcl-server sends no early metadata). While
// replies are to be dropped, that frame is not relayed: the relay resets both connections
// instead, so nothing of the reply reaches the client, and the server has already kept the
// update. Every frame before it (SETTINGS, WINDOW_UPDATE, PING) is relayed, so the upload
// completes normally.
//
// Thread-safe. Each connection runs on a thread of its own; the destructor stops them all
// (every poll is bounded, so it returns within ~100 ms).
#ifndef FEDCL_TESTS_INTEGRATION_LOSSY_LINK_PROXY_H_
#define FEDCL_TESTS_INTEGRATION_LOSSY_LINK_PROXY_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace fedcl::testing {

class LossyLinkProxy {
 public:
  // Listens on 127.0.0.1:0 and relays every connection to 127.0.0.1:`target_port`. Internal
  // (naming the call) if the listening socket cannot be set up.
  static absl::StatusOr<std::unique_ptr<LossyLinkProxy>> Start(int target_port,
                                                               int64_t min_upload_bytes);
  ~LossyLinkProxy();
  LossyLinkProxy(const LossyLinkProxy&) = delete;
  LossyLinkProxy& operator=(const LossyLinkProxy&) = delete;

  // "127.0.0.1:<port>", for the client to connect to.
  std::string address() const;
  // The next `n` replies to uploads are dropped (added to any not dropped yet).
  void DropNextReplies(int n) { to_drop_.fetch_add(n); }
  // The next `n` streams that bring the client more than `after_bytes` of DATA are cut there
  // (replacing any cuts not made yet).
  void CutNextDownloads(int n, int64_t after_bytes) {
    cut_after_bytes_.store(after_bytes);
    to_cut_.store(n);
  }
  // Replies dropped so far, downloads cut, and connections accepted.
  int replies_dropped() const { return dropped_.load(); }
  int downloads_cut() const { return cut_.load(); }
  int connections() const { return connections_.load(); }
  // DATA bytes relayed from the server to clients so far (HTTP/2 frame payloads), and of them
  // those of the last stream that carried any (one call at a time).
  int64_t server_data_bytes() const { return server_data_bytes_.load(); }
  int64_t last_stream_data_bytes() const { return last_stream_bytes_.load(); }

 private:
  LossyLinkProxy(int listen_fd, int port, int target_port, int64_t min_upload_bytes);
  void AcceptLoop();
  void Relay(int client_fd);
  // Claims one reply to drop, or one download to cut; false if none is to be.
  static bool Claim(std::atomic<int>& left);

  const int listen_fd_;
  const int port_;
  const int target_port_;
  const int64_t min_upload_bytes_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> to_drop_{0};
  std::atomic<int> dropped_{0};
  std::atomic<int> to_cut_{0};
  std::atomic<int64_t> cut_after_bytes_{0};
  std::atomic<int> cut_{0};
  std::atomic<int64_t> server_data_bytes_{0};
  std::atomic<int> next_connection_{0};
  std::atomic<uint64_t> last_stream_key_{0};  // connection << 32 | stream
  std::atomic<int64_t> last_stream_bytes_{0};
  std::atomic<int> connections_{0};
  absl::Mutex mu_;
  std::vector<std::thread> relays_ ABSL_GUARDED_BY(mu_);
  std::thread acceptor_;
};

}  // namespace fedcl::testing

#endif  // FEDCL_TESTS_INTEGRATION_LOSSY_LINK_PROXY_H_
