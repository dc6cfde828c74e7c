#include "tests/integration/lossy_link_proxy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"

namespace fedcl::testing {
namespace {

constexpr size_t kFrameHeaderBytes = 9;
constexpr size_t kClientPrefaceBytes = 24;  // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
constexpr uint8_t kData = 0x0, kHeaders = 0x1;
constexpr int kPollMs = 100;

struct FrameHeader {
  size_t length = 0;
  uint8_t type = 0;
  uint32_t stream = 0;
};

FrameHeader ParseFrameHeader(const std::string& bytes) {
  const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
  FrameHeader h;
  h.length = (size_t{b[0]} << 16) | (size_t{b[1]} << 8) | size_t{b[2]};
  h.type = b[3];
  h.stream = ((uint32_t{b[5]} << 24) | (uint32_t{b[6]} << 16) | (uint32_t{b[7]} << 8) | b[8]) &
             0x7fffffffu;
  return h;
}

sockaddr_in Loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  return a;
}

// Writes all of `data`; false if the peer is gone or the proxy stops. Sends time out every
// kPollMs (SO_SNDTIMEO), so a peer that stops reading cannot hold the thread forever.
bool SendAll(int fd, const char* data, size_t size, const std::atomic<bool>& stopping) {
  while (size > 0) {
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (stopping.load()) return false;
      continue;
    }
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

void SetSendTimeout(int fd) {
  timeval tv{0, kPollMs * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

// Closes `fd` with a reset rather than an orderly shutdown: the peer's call fails at once.
void Reset(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
  ::close(fd);
}

}  // namespace

absl::StatusOr<std::unique_ptr<LossyLinkProxy>> LossyLinkProxy::Start(int target_port,
                                                                      int64_t min_upload_bytes) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in address = Loopback(0);
  socklen_t length = sizeof(address);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(fd, 16) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const std::string error = std::strerror(errno);
    ::close(fd);
    return absl::InternalError(absl::StrCat("listening on 127.0.0.1:0: ", error));
  }
  return std::unique_ptr<LossyLinkProxy>(
      new LossyLinkProxy(fd, ntohs(address.sin_port), target_port, min_upload_bytes));
}

LossyLinkProxy::LossyLinkProxy(int listen_fd, int port, int target_port, int64_t min_upload_bytes)
    : listen_fd_(listen_fd),
      port_(port),
      target_port_(target_port),
      min_upload_bytes_(min_upload_bytes),
      acceptor_([this] { AcceptLoop(); }) {}

LossyLinkProxy::~LossyLinkProxy() {
  stopping_.store(true);
  acceptor_.join();
  std::vector<std::thread> relays;
  {
    absl::MutexLock lock(&mu_);
    relays.swap(relays_);
  }
  for (std::thread& t : relays) t.join();
  ::close(listen_fd_);
}

std::string LossyLinkProxy::address() const { return absl::StrCat("127.0.0.1:", port_); }

bool LossyLinkProxy::Claim(std::atomic<int>& left) {
  int n = left.load();
  while (n > 0 && !left.compare_exchange_weak(n, n - 1)) {
  }
  return n > 0;
}

void LossyLinkProxy::AcceptLoop() {
  while (!stopping_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, kPollMs) <= 0) continue;
    const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    connections_.fetch_add(1);
    absl::MutexLock lock(&mu_);
    relays_.emplace_back([this, client] { Relay(client); });
  }
}

void LossyLinkProxy::Relay(int client) {
  const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const sockaddr_in target = Loopback(target_port_);
  if (server < 0 ||
      ::connect(server, reinterpret_cast<const sockaddr*>(&target), sizeof(target)) != 0) {
    if (server >= 0) ::close(server);
    Reset(client);
    return;
  }
  SetSendTimeout(client);
  SetSendTimeout(server);
  std::string upstream;    // client bytes relayed, not yet parsed into whole frames
  std::string downstream;  // server bytes held until their frame is whole
  size_t preface_left = kClientPrefaceBytes;
  std::map<uint32_t, int64_t> sent_data;      // DATA bytes per client stream
  std::map<uint32_t, int64_t> received_data;  // DATA bytes per server stream
  const int connection = next_connection_.fetch_add(1) + 1;
  char buffer[65536];
  bool open = true;
  bool graceful = false;  // a download cut: closed, not reset
  while (open && !stopping_.load()) {
    pollfd p[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
    if (::poll(p, 2, kPollMs) <= 0) continue;
    if (p[0].revents != 0) {
      const ssize_t n = ::read(client, buffer, sizeof(buffer));
      open = n > 0 && SendAll(server, buffer, static_cast<size_t>(n), stopping_);
      if (open) upstream.append(buffer, static_cast<size_t>(n));
      const size_t preface = std::min(preface_left, upstream.size());
      upstream.erase(0, preface);
      preface_left -= preface;
      while (upstream.size() >= kFrameHeaderBytes) {
        const FrameHeader h = ParseFrameHeader(upstream);
        if (upstream.size() < kFrameHeaderBytes + h.length) break;
        if (h.type == kData) sent_data[h.stream] += static_cast<int64_t>(h.length);
        upstream.erase(0, kFrameHeaderBytes + h.length);
      }
    }
    if (open && p[1].revents != 0) {
      const ssize_t n = ::read(server, buffer, sizeof(buffer));
      open = n > 0;
      if (open) downstream.append(buffer, static_cast<size_t>(n));
      while (open && downstream.size() >= kFrameHeaderBytes) {
        const FrameHeader h = ParseFrameHeader(downstream);
        if (downstream.size() < kFrameHeaderBytes + h.length) break;
        const auto sent = sent_data.find(h.stream);
        if (h.type == kHeaders && sent != sent_data.end() && sent->second >= min_upload_bytes_ &&
            Claim(to_drop_)) {
          dropped_.fetch_add(1);  // the reply to an upload: cut both ways instead
          open = false;
          break;
        }
        if (h.type == kData) {
          int64_t& received = received_data[h.stream];
          if (received + static_cast<int64_t>(h.length) > cut_after_bytes_.load() &&
              to_cut_.load() > 0 && Claim(to_cut_)) {
            cut_.fetch_add(1);  // a download past its cut: the link goes down mid-stream
            graceful = true;
            open = false;
            break;
          }
          received += static_cast<int64_t>(h.length);
          server_data_bytes_.fetch_add(static_cast<int64_t>(h.length));
          const uint64_t key = (uint64_t{static_cast<uint32_t>(connection)} << 32) | h.stream;
          if (last_stream_key_.exchange(key) != key) last_stream_bytes_.store(0);
          last_stream_bytes_.fetch_add(static_cast<int64_t>(h.length));
        }
        open = SendAll(client, downstream.data(), kFrameHeaderBytes + h.length, stopping_);
        downstream.erase(0, kFrameHeaderBytes + h.length);
      }
    }
  }
  if (graceful) {
    // What was relayed stays readable (a reset would make the client's kernel discard what its
    // socket buffer still holds): the client reads up to the cut, then the end of the stream.
    ::shutdown(client, SHUT_RDWR);
    ::close(client);
  } else {
    Reset(client);
  }
  Reset(server);
}

}  // namespace fedcl::testing
