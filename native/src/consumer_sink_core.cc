// ConsumerSinkCore: see consumer_sink_core.h and
// native/docs/consumer-protocol.md. Plain libc socket calls (sockets are not
// devices, so no Sys here).
#include "consumer_sink_core.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <utility>

namespace dmx {

namespace w = consumer_wire;

namespace {

constexpr uint64_t kNsPerMs = 1000000;
// After EMFILE/ENFILE on accept the listener stays readable; stop polling it
// for a while instead of spinning.
constexpr uint64_t kAcceptPauseNs = 100 * kNsPerMs;
constexpr int kMaxAcceptsPerPoll = 8;
// Bounds the work one OnPoll does for a flooding player; the rest is read on
// the next poll.
constexpr int kMaxReadsPerPoll = 256;
// RELEASEs still accepted for buffers RecoverAll reclaimed (see the doc).
constexpr size_t kMaxReclaimed = 256;
// Pool-size learning gives up (and takes what it saw) past this many indices.
constexpr size_t kMaxLearnedPool = 1024;

uint64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// Little-endian encoding by hand: set-top boxes are not all little-endian
// and the wire format is.
void PutU16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void PutU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint16_t GetU16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
uint32_t GetU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

void PutHeader(uint8_t* p, uint16_t type, size_t body) {
  PutU32(p, w::kMagic);
  PutU16(p + 4, w::kVersion);
  PutU16(p + 6, type);
  PutU32(p + 8, static_cast<uint32_t>(body));
  PutU32(p + 12, 0);
}

// Copies at most size - 1 bytes so the field always ends in NUL.
void PutText(uint8_t* p, size_t size, const std::string& s) {
  memset(p, 0, size);
  memcpy(p, s.data(), std::min(s.size(), size - 1));
}

// REJECT, ERROR and GOODBYE share one body layout.
size_t BuildStatus(uint8_t* p, uint16_t type, uint32_t code, uint32_t index, uint32_t sequence,
                   uint32_t epoch, const std::string& text) {
  PutHeader(p, type, w::kStatusBody);
  uint8_t* b = p + w::kHeaderSize;
  PutU32(b, code);
  PutU32(b + 4, index);
  PutU32(b + 8, sequence);
  PutU32(b + 12, epoch);
  PutText(b + 16, w::kStatusText, text);
  return w::kHeaderSize + w::kStatusBody;
}

bool IsAbstract(const std::string& path) { return !path.empty() && path[0] == '@'; }

// false (EINVAL / ENAMETOOLONG in *err) when the name does not fit.
bool MakeAddress(const std::string& path, struct sockaddr_un* addr, socklen_t* len, int* err) {
  memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  if (path.empty() || path == "@" || path.find('\0') != std::string::npos) {
    *err = EINVAL;
    return false;
  }
  if (IsAbstract(path)) {
    // Abstract: sun_path[0] = 0, the name follows, no terminator; the length
    // is part of the name.
    size_t n = path.size() - 1;
    if (n > sizeof(addr->sun_path) - 1) {
      *err = ENAMETOOLONG;
      return false;
    }
    memcpy(addr->sun_path + 1, path.data() + 1, n);
    *len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    return true;
  }
  if (path.size() > sizeof(addr->sun_path) - 1) {
    *err = ENAMETOOLONG;
    return false;
  }
  memcpy(addr->sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + path.size() + 1);
  return true;
}

// Whether the socket file at `path` was left behind by a process that is
// gone: it must be a socket and refuse connections. A probe connect to a
// live ConsumerSink is seen by it as a player that connects and leaves.
bool IsStaleSocketFile(const std::string& path, const struct sockaddr_un& addr, socklen_t len,
                       std::string* why) {
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) return errno == ENOENT;  // vanished: retry bind
  if (!S_ISSOCK(st.st_mode)) {
    *why = "the path exists and is not a socket";
    return false;
  }
  int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (probe < 0) return false;
  int rc = connect(probe, reinterpret_cast<const struct sockaddr*>(&addr), len);
  int e = rc == 0 ? 0 : errno;
  close(probe);
  if (e == ECONNREFUSED || e == ENOENT) return true;
  *why = "a socket is already listening at this path";
  return false;
}

void CloseReceivedFds(struct msghdr* msg, bool* had_fds) {
  for (struct cmsghdr* c = CMSG_FIRSTHDR(msg); c != nullptr; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; ++i) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      close(fd);
      *had_fds = true;
    }
  }
}

// Closing a Unix socket with unread messages makes the peer's next recv fail
// with ECONNRESET ahead of whatever we sent last (an ERROR): read and drop
// them first (closing any fds), so the player reads our last word and then
// end of stream.
void DiscardQueued(int fd, int max_messages) {
  for (int i = 0; i < max_messages; ++i) {
    uint8_t buf[consumer_wire::kMaxMessage + 1];
    union {
      struct cmsghdr align;
      char space[CMSG_SPACE(sizeof(int) * 8)];
    } control;
    struct iovec iov = {buf, sizeof(buf)};
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.space;
    msg.msg_controllen = sizeof(control.space);
    ssize_t n = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == ECONNRESET || errno == EINTR)) continue;
    if (n <= 0) return;
    bool had_fds = false;
    CloseReceivedFds(&msg, &had_fds);
  }
}

}  // namespace

ConsumerSinkCore::ConsumerSinkCore(ConsumerSinkOptions options) : options_(std::move(options)) {
  stats_.hold_timeout_ms = options_.hold_timeout_ms;
}

ConsumerSinkCore::~ConsumerSinkCore() { Close(); }

bool ConsumerSinkCore::Listen(SysError* error) {
  std::lock_guard<std::mutex> lock(mu_);
  if (listen_fd_ >= 0) return true;
  const std::string& path = options_.socket_path;
  if (closed_) {
    *error = SysError(EBADF, "bind", "", path);
    error->detail = "the consumer sink is closed";
    return false;
  }
  struct sockaddr_un addr;
  socklen_t len = 0;
  int err = 0;
  if (!MakeAddress(path, &addr, &len, &err)) {
    *error = SysError(err, "bind", "", path);
    error->detail = "socket path empty or longer than 107 bytes";
    return false;
  }
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = SysError(errno, "socket", "", path);
    return false;
  }
  const struct sockaddr* sa = reinterpret_cast<const struct sockaddr*>(&addr);
  int rc = bind(fd, sa, len);
  if (rc != 0 && errno == EADDRINUSE && !IsAbstract(path)) {
    std::string why;
    if (IsStaleSocketFile(path, addr, len, &why)) {
      unlink(path.c_str());
      rc = bind(fd, sa, len);
    } else {
      *error = SysError(EADDRINUSE, "bind", "", path);
      error->detail = why;
      close(fd);
      return false;
    }
  }
  if (rc != 0) {
    *error = SysError(errno, "bind", "", path);
    if (error->err == EADDRINUSE) error->detail = "the abstract name is in use";
    close(fd);
    return false;
  }
  if (!IsAbstract(path)) {
    struct stat st;
    if (lstat(path.c_str(), &st) == 0) {
      created_file_ = true;
      file_dev_ = st.st_dev;
      file_ino_ = st.st_ino;
    }
  }
  // A small backlog: one player, plus room to tell a few others REJECT.
  if (listen(fd, 4) != 0) {
    *error = SysError(errno, "listen", "", path);
    close(fd);
    if (created_file_) unlink(path.c_str());
    created_file_ = false;
    return false;
  }
  listen_fd_ = fd;
  stats_.listening = true;
  return true;
}

void ConsumerSinkCore::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return;
  closed_ = true;
  if (client_fd_ >= 0) {
    uint8_t msg[w::kMaxMessage];
    size_t n = BuildStatus(msg, w::kGoodbye, w::kShutdown, 0, 0, epoch_, "consumer sink closed");
    SendControlLocked(client_fd_, msg, n);
    DiscardQueued(client_fd_, kMaxReadsPerPoll);
    close(client_fd_);
    client_fd_ = -1;
    ++client_generation_;
    ++stats_.disconnects;
    // Not on the pump thread: the returns (and the note) are made by its
    // next call into the sink.
    pending_notes_.emplace_back("consumer-disconnected",
                                PeerLocked() + ": consumer sink closed; " +
                                    std::to_string(held_.size()) + " held buffer(s) returned");
    for (const auto& h : held_) pending_returns_.push_back(h.first);
    stats_.recovered_on_disconnect += held_.size();
    held_.clear();
    reclaimed_.clear();
    peer_pid_ = 0;
    peer_uid_ = 0;
    peer_gid_ = 0;
  }
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    listen_fd_ = -1;
  }
  if (created_file_) {
    // Only unlink the file we created, not one a successor bound since.
    struct stat st;
    if (lstat(options_.socket_path.c_str(), &st) == 0 && st.st_dev == file_dev_ &&
        st.st_ino == file_ino_) {
      unlink(options_.socket_path.c_str());
    }
    created_file_ = false;
  }
  stats_.listening = false;
}

void ConsumerSinkCore::SetPoolCount(uint32_t count) {
  std::lock_guard<std::mutex> lock(mu_);
  pool_count_ = count;
}

uint32_t ConsumerSinkCore::EffectiveMaxInFlightLocked() const {
  if (options_.max_in_flight > 0) return options_.max_in_flight;
  uint32_t count = pool_count_ != 0 ? pool_count_ : learned_pool_count_;
  if (count == 0) return 0;
  return count > 3 ? count - 2 : 1;
}

ConsumerSinkStats ConsumerSinkCore::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  ConsumerSinkStats s = stats_;
  s.held = static_cast<uint32_t>(held_.size());
  s.max_in_flight = EffectiveMaxInFlightLocked();
  s.epoch = epoch_;
  s.connected = client_fd_ >= 0;
  s.peer_pid = peer_pid_;
  s.peer_uid = peer_uid_;
  s.peer_gid = peer_gid_;
  return s;
}

std::string ConsumerSinkCore::PeerLocked() const {
  return "pid " + std::to_string(peer_pid_) + " uid " + std::to_string(peer_uid_);
}

void ConsumerSinkCore::Attach(SinkHost* host) {
  std::lock_guard<std::mutex> lock(mu_);
  host_ = host;
}

void ConsumerSinkCore::Deliver(SinkHost* host, Outbox* out) {
  if (host == nullptr) return;
  for (uint32_t index : out->returned) host->Returned(index);
  for (const SysError& e : out->errors) host->Error(e);
  for (const auto& n : out->notes) host->Note(n.first, n.second);
}

void ConsumerSinkCore::FlushPendingLocked(Outbox* out) {
  out->returned.insert(out->returned.end(), pending_returns_.begin(), pending_returns_.end());
  pending_returns_.clear();
  out->notes.insert(out->notes.end(), pending_notes_.begin(), pending_notes_.end());
  pending_notes_.clear();
}

void ConsumerSinkCore::AddPollFds(std::vector<struct pollfd>* fds) {
  std::lock_guard<std::mutex> lock(mu_);
  slots_.clear();
  if (closed_) return;
  if (listen_fd_ >= 0 && NowNs() >= accept_paused_until_ns_) {
    fds->push_back({listen_fd_, POLLIN, 0});
    slots_.push_back({listen_fd_, 0});
  }
  if (client_fd_ >= 0) {
    fds->push_back({client_fd_, POLLIN, 0});
    slots_.push_back({client_fd_, client_generation_});
  }
}

void ConsumerSinkCore::OnPoll(const struct pollfd* fds, size_t count) {
  Outbox out;
  SinkHost* host;
  {
    std::lock_guard<std::mutex> lock(mu_);
    host = host_;
    FlushPendingLocked(&out);
    bool accept_ready = false;
    short client_revents = 0;
    // A slot is stale if the fd it names was closed (Close, disconnect in
    // Submit) since AddPollFds; its number may even belong to a new player.
    for (size_t i = 0; i < count && i < slots_.size(); ++i) {
      const PollSlot& slot = slots_[i];
      if (fds[i].fd != slot.fd || fds[i].revents == 0) continue;
      if (slot.generation == 0) {
        accept_ready = slot.fd == listen_fd_;
      } else if (slot.generation == client_generation_ && slot.fd == client_fd_) {
        client_revents = fds[i].revents;
      }
    }
    slots_.clear();
    // Read first: a player that sends RELEASEs and then hangs up is
    // credited with its releases before the hangup returns the rest.
    if (client_revents & (POLLIN | POLLHUP | POLLERR)) {
      ReadClientLocked(&out);
      if (client_fd_ >= 0 && (client_revents & (POLLHUP | POLLERR))) {
        DisconnectLocked((client_revents & POLLERR) ? "socket error" : "hangup", &out);
      }
    }
    if (accept_ready && !closed_) AcceptLocked(&out);
    CheckTimeoutLocked(NowNs(), &out);
  }
  Deliver(host, &out);
}

void ConsumerSinkCore::AcceptLocked(Outbox* out) {
  for (int i = 0; i < kMaxAcceptsPerPoll; ++i) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      if (e == EAGAIN || e == EWOULDBLOCK) return;
      if (e == EINTR || e == ECONNABORTED || e == EPROTO) continue;
      if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        accept_paused_until_ns_ = NowNs() + kAcceptPauseNs;
      }
      SysError err(e, "accept4", "", options_.socket_path);
      err.detail = "accepting a player connection";
      out->errors.push_back(std::move(err));
      return;
    }
    struct ucred cred;
    memset(&cred, 0, sizeof(cred));
    socklen_t cred_len = sizeof(cred);
    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cred_len);
    uint8_t msg[w::kMaxMessage];
    if (client_fd_ >= 0) {
      // One player at a time: tell the newcomer why, then hang up.
      std::string why = "another player is connected (pid " + std::to_string(peer_pid_) + ")";
      size_t n = BuildStatus(msg, w::kReject, w::kBusy, 0, 0, epoch_, why);
      SendControlLocked(fd, msg, n);
      close(fd);
      ++stats_.rejects;
      out->notes.emplace_back("consumer-rejected",
                              "pid " + std::to_string(cred.pid) + " uid " +
                                  std::to_string(cred.uid) + ": " + why);
      continue;
    }
    if (options_.send_buffer_bytes > 0) {
      int v = options_.send_buffer_bytes;
      setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
    }
    client_fd_ = fd;
    ++client_generation_;
    peer_pid_ = cred.pid;
    peer_uid_ = cred.uid;
    peer_gid_ = cred.gid;
    in_backpressure_ = false;
    in_flight_limited_ = false;
    reclaimed_.clear();
    ++stats_.connects;

    PutHeader(msg, w::kHello, w::kHelloBody);
    uint8_t* b = msg + w::kHeaderSize;
    PutText(b, w::kStreamIdSize, options_.stream_id);
    PutU32(b + 32, EffectiveMaxInFlightLocked());
    PutU32(b + 36, options_.hold_timeout_ms);
    PutU32(b + 40, static_cast<uint32_t>(getpid()));
    PutU32(b + 44, epoch_);
    // If this fails the player is already gone; the next poll sees the hangup.
    SendControlLocked(fd, msg, w::kHeaderSize + w::kHelloBody);
    out->notes.emplace_back("consumer-connected", PeerLocked());
  }
}

bool ConsumerSinkCore::SendControlLocked(int fd, const uint8_t* msg, size_t size) {
  ssize_t n;
  do {
    n = send(fd, msg, size, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(size);
}

void ConsumerSinkCore::ReadClientLocked(Outbox* out) {
  bool reset = false;
  for (int i = 0; i < kMaxReadsPerPoll && client_fd_ >= 0; ++i) {
    // One byte more than the largest message, so an oversized one shows as
    // MSG_TRUNC. Room for a few fds so a misbehaving player's fds can be
    // closed rather than leaked.
    uint8_t buf[w::kMaxMessage + 1];
    union {
      struct cmsghdr align;
      char space[CMSG_SPACE(sizeof(int) * 8)];
    } control;
    struct iovec iov = {buf, sizeof(buf)};
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.space;
    msg.msg_controllen = sizeof(control.space);
    ssize_t n = recvmsg(client_fd_, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      int e = errno;
      if (e == EAGAIN || e == EWOULDBLOCK) {
        if (reset) DisconnectLocked("connection reset by the player", out);
        return;
      }
      if (e == EINTR) continue;
      if (e == ECONNRESET && !reset) {
        // A player that closes with BUFFERs unread sets ECONNRESET on our
        // socket, and recvmsg reports it (once) before the messages still
        // queued: read on, so its last RELEASEs and GOODBYE count.
        reset = true;
        continue;
      }
      if (e != ECONNRESET) {
        SysError err(e, "recvmsg", "", options_.socket_path);
        err.detail = "reading from the player (" + PeerLocked() + ")";
        out->errors.push_back(std::move(err));
      }
      DisconnectLocked(std::string("recvmsg failed: ") + strerror(e), out);
      return;
    }
    bool had_fds = false;
    CloseReceivedFds(&msg, &had_fds);
    // SEQPACKET: 0 is end of stream (a zero-length message is not allowed,
    // so treating it as the end is right either way).
    if (n == 0) {
      DisconnectLocked(reset ? "connection reset by the player" : "closed by the player", out);
      return;
    }
    if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
      ProtocolErrorLocked(w::kBadMessage, 0, 0, 0,
                          "message longer than " + std::to_string(w::kMaxMessage) + " bytes", out);
      return;
    }
    if (had_fds) {
      ProtocolErrorLocked(w::kBadMessage, 0, 0, 0, "player sent file descriptors", out);
      return;
    }
    HandleMessageLocked(buf, static_cast<size_t>(n), out);
  }
}

void ConsumerSinkCore::HandleMessageLocked(const uint8_t* m, size_t size, Outbox* out) {
  if (size < w::kHeaderSize) {
    ProtocolErrorLocked(w::kBadMessage, 0, 0, 0,
                        "short message (" + std::to_string(size) + " bytes)", out);
    return;
  }
  uint32_t magic = GetU32(m);
  uint16_t version = GetU16(m + 4);
  uint16_t type = GetU16(m + 6);
  uint32_t length = GetU32(m + 8);
  if (magic != w::kMagic) {
    ProtocolErrorLocked(w::kBadMessage, 0, 0, 0, "bad magic", out);
    return;
  }
  if (version != w::kVersion) {
    ProtocolErrorLocked(w::kBadMessage, 0, 0, 0,
                        "unsupported protocol version " + std::to_string(version), out);
    return;
  }
  if (length != size - w::kHeaderSize) {
    ProtocolErrorLocked(w::kBadMessage, 0, 0, 0,
                        "length field " + std::to_string(length) + " but " +
                            std::to_string(size - w::kHeaderSize) + " body bytes",
                        out);
    return;
  }
  const uint8_t* b = m + w::kHeaderSize;
  switch (type) {
    case w::kRelease:
      if (length < w::kReleaseBody) {
        ProtocolErrorLocked(w::kBadMessage, 0, 0, 0, "RELEASE body too short", out);
        return;
      }
      HandleReleaseLocked(GetU32(b), GetU32(b + 4), GetU32(b + 8), out);
      return;
    case w::kGoodbye:
      // The player promises it no longer touches what it holds.
      DisconnectLocked("GOODBYE from the player", out);
      return;
    default:
      ProtocolErrorLocked(w::kBadMessage, 0, 0, 0,
                          "unexpected message type " + std::to_string(type), out);
      return;
  }
}

void ConsumerSinkCore::HandleReleaseLocked(uint32_t index, uint32_t sequence, uint32_t epoch,
                                           Outbox* out) {
  if (epoch == epoch_) {
    auto it = held_.find(index);
    if (it == held_.end()) {
      ProtocolErrorLocked(w::kBadRelease, index, sequence, epoch,
                          "RELEASE of buffer " + std::to_string(index) + " which the player does not hold",
                          out);
      return;
    }
    if (it->second.sequence != sequence) {
      ProtocolErrorLocked(w::kBadRelease, index, sequence, epoch,
                          "RELEASE of buffer " + std::to_string(index) + " with sequence " +
                              std::to_string(sequence) + ", held with sequence " +
                              std::to_string(it->second.sequence),
                          out);
      return;
    }
    held_.erase(it);
    ++stats_.released;
    in_flight_limited_ = false;
    out->returned.push_back(index);
    return;
  }
  // A buffer from before the last RecoverAll: already back with the pump.
  for (auto it = reclaimed_.begin(); it != reclaimed_.end(); ++it) {
    if (it->epoch == epoch && it->index == index && it->sequence == sequence) {
      reclaimed_.erase(it);
      ++stats_.late_releases;
      return;
    }
  }
  ProtocolErrorLocked(w::kBadRelease, index, sequence, epoch,
                      "RELEASE of buffer " + std::to_string(index) + " from epoch " +
                          std::to_string(epoch) + " which the player does not hold (epoch is " +
                          std::to_string(epoch_) + ")",
                      out);
}

void ConsumerSinkCore::ProtocolErrorLocked(uint32_t code, uint32_t index, uint32_t sequence,
                                           uint32_t epoch, const std::string& text, Outbox* out) {
  ++stats_.protocol_errors;
  uint8_t msg[w::kMaxMessage];
  size_t n = BuildStatus(msg, w::kError, code, index, sequence, epoch, text);
  SendControlLocked(client_fd_, msg, n);
  out->notes.emplace_back("consumer-protocol-error", PeerLocked() + ": " + text);
  DisconnectLocked("protocol error: " + text, out);
}

void ConsumerSinkCore::DisconnectLocked(const std::string& reason, Outbox* out) {
  if (client_fd_ < 0) return;
  std::string detail = PeerLocked() + ": " + reason + "; " + std::to_string(held_.size()) +
                       " held buffer(s) returned";
  DiscardQueued(client_fd_, kMaxReadsPerPoll);
  close(client_fd_);
  client_fd_ = -1;
  ++client_generation_;
  ++stats_.disconnects;
  for (const auto& h : held_) out->returned.push_back(h.first);
  stats_.recovered_on_disconnect += held_.size();
  held_.clear();
  reclaimed_.clear();
  peer_pid_ = 0;
  peer_uid_ = 0;
  peer_gid_ = 0;
  in_backpressure_ = false;
  in_flight_limited_ = false;
  out->notes.emplace_back("consumer-disconnected", detail);
}

void ConsumerSinkCore::CheckTimeoutLocked(uint64_t now, Outbox* out) {
  if (options_.hold_timeout_ms == 0) return;
  const uint64_t limit = options_.hold_timeout_ms * kNsPerMs;
  auto expired = [&]() {
    if (client_fd_ < 0 || held_.empty()) return held_.end();
    auto oldest = held_.begin();
    for (auto it = held_.begin(); it != held_.end(); ++it) {
      if (it->second.sent_ns < oldest->second.sent_ns) oldest = it;
    }
    return now - oldest->second.sent_ns >= limit ? oldest : held_.end();
  };
  if (expired() == held_.end()) return;
  // The RELEASE may already be waiting in the socket (the pump was busy):
  // read before blaming the player.
  ReadClientLocked(out);
  auto oldest = expired();
  if (oldest == held_.end()) return;
  uint64_t age = now - oldest->second.sent_ns;
  ++stats_.timeouts;
  std::string text = "buffer " + std::to_string(oldest->first) + " held for " +
                     std::to_string(age / kNsPerMs) + " ms (limit " +
                     std::to_string(options_.hold_timeout_ms) + " ms)";
  uint8_t msg[w::kMaxMessage];
  size_t n = BuildStatus(msg, w::kError, w::kHoldTimeout, oldest->first, oldest->second.sequence,
                         epoch_, text);
  SendControlLocked(client_fd_, msg, n);
  out->notes.emplace_back("consumer-timeout", PeerLocked() + ": " + text);
  DisconnectLocked("hold timeout", out);
}

int ConsumerSinkCore::NextTimeoutMs() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!pending_returns_.empty() || !pending_notes_.empty()) return 0;
  uint64_t now = NowNs();
  uint64_t deadline = UINT64_MAX;
  if (client_fd_ >= 0 && !held_.empty() && options_.hold_timeout_ms != 0) {
    uint64_t oldest = UINT64_MAX;
    for (const auto& h : held_) oldest = std::min(oldest, h.second.sent_ns);
    deadline = oldest + options_.hold_timeout_ms * kNsPerMs;
  }
  if (listen_fd_ >= 0 && accept_paused_until_ns_ > now) {
    deadline = std::min(deadline, accept_paused_until_ns_);
  }
  if (deadline == UINT64_MAX) return -1;
  if (deadline <= now) return 0;
  // Round up so the pump never wakes just before the deadline and spins.
  uint64_t ms = (deadline - now + kNsPerMs - 1) / kNsPerMs;
  return ms > static_cast<uint64_t>(INT_MAX) ? INT_MAX : static_cast<int>(ms);
}

SubmitResult ConsumerSinkCore::Submit(const SinkBuffer& buffer) {
  Outbox out;
  SinkHost* host;
  SubmitResult result = SubmitResult::kDeclined;
  {
    std::lock_guard<std::mutex> lock(mu_);
    host = host_;
    FlushPendingLocked(&out);
    uint64_t now = NowNs();
    CheckTimeoutLocked(now, &out);
    if (pool_count_ == 0 && learned_pool_count_ == 0) {
      if (seen_indices_.count(buffer.index) != 0 || seen_indices_.size() >= kMaxLearnedPool) {
        learned_pool_count_ = static_cast<uint32_t>(seen_indices_.size());
        seen_indices_.clear();
      } else {
        seen_indices_.insert(buffer.index);
      }
    }
    uint32_t limit = EffectiveMaxInFlightLocked();
    // At the limit, RELEASEs not yet read may free a slot: read them first
    // rather than drop this buffer.
    if (client_fd_ >= 0 && limit != 0 && held_.size() >= limit) ReadClientLocked(&out);
    if (closed_ || client_fd_ < 0) {
      ++stats_.declined_no_player;
    } else if (held_.count(buffer.index) != 0) {
      // A pump bug: it offers a buffer the player still holds.
      ++stats_.send_errors;
      SysError err(EBUSY, "sendmsg", "", options_.socket_path);
      err.Arg("index", buffer.index).Arg("sequence", buffer.sequence);
      err.detail = "buffer offered while the player still holds it";
      out.errors.push_back(std::move(err));
    } else if (limit != 0 && held_.size() >= limit) {
      ++stats_.declined_in_flight;
      if (!in_flight_limited_) {
        in_flight_limited_ = true;
        out.notes.emplace_back("consumer-in-flight-limit",
                               PeerLocked() + " holds " + std::to_string(held_.size()) +
                                   " buffer(s), the limit");
      }
    } else {
      uint8_t m[w::kHeaderSize + w::kBufferBody];
      PutHeader(m, w::kBuffer, w::kBufferBody);
      uint8_t* b = m + w::kHeaderSize;
      PutText(b, w::kStreamIdSize, options_.stream_id);
      PutU32(b + 32, buffer.index);
      PutU32(b + 36, buffer.bytesused);
      PutU32(b + 40, buffer.flags);
      PutU32(b + 44, buffer.sequence);
      PutU32(b + 48, buffer.length);
      PutU32(b + 52, epoch_);
      PutU64(b + 56, buffer.dmabuf_size);
      PutU64(b + 64, buffer.dequeued_ns);

      struct iovec iov = {m, sizeof(m)};
      union {
        struct cmsghdr align;
        char space[CMSG_SPACE(sizeof(int))];
      } control;
      memset(&control, 0, sizeof(control));
      struct msghdr msg;
      memset(&msg, 0, sizeof(msg));
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control.space;
      msg.msg_controllen = sizeof(control.space);
      struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(c), &buffer.dmabuf_fd, sizeof(int));

      ssize_t n;
      do {
        n = sendmsg(client_fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      } while (n < 0 && errno == EINTR);
      int e = n < 0 ? errno : 0;
      if (n == static_cast<ssize_t>(sizeof(m))) {
        held_[buffer.index] = Held{buffer.sequence, now};
        ++stats_.buffers_sent;
        stats_.bytes_sent += buffer.bytesused;
        stats_.max_held = std::max(stats_.max_held, static_cast<uint32_t>(held_.size()));
        in_backpressure_ = false;
        result = SubmitResult::kTaken;
      } else if (e == EAGAIN || e == EWOULDBLOCK || e == ETOOMANYREFS) {
        // The player is not reading (socket buffer full) or too many fds
        // are in flight to it: drop this buffer, keep the player.
        ++stats_.backpressure;
        if (!in_backpressure_) {
          in_backpressure_ = true;
          out.notes.emplace_back("consumer-backpressure",
                                 PeerLocked() + ": socket full (" + strerror(e) + ")");
        }
      } else if (e == EPIPE || e == ECONNRESET || e == ENOTCONN) {
        // The player hung up. Read what it sent before (RELEASEs, GOODBYE)
        // so they count as such; the read ends in EOF and the disconnect.
        ++stats_.declined_no_player;
        ReadClientLocked(&out);
        DisconnectLocked(std::string("sendmsg: ") + strerror(e), &out);
      } else {
        ++stats_.send_errors;
        SysError err(n < 0 ? e : EIO, "sendmsg", "", options_.socket_path);
        err.Arg("index", buffer.index)
            .Arg("bytesused", buffer.bytesused)
            .Arg("dmabufFd", buffer.dmabuf_fd)
            .Arg("dmabufSize", static_cast<int64_t>(buffer.dmabuf_size));
        err.detail = n < 0 ? "sending a BUFFER to the player" : "short send of a BUFFER";
        out.errors.push_back(std::move(err));
      }
    }
  }
  Deliver(host, &out);
  return result;
}

void ConsumerSinkCore::RecoverAll() {
  Outbox out;
  SinkHost* host;
  {
    std::lock_guard<std::mutex> lock(mu_);
    host = host_;
    FlushPendingLocked(&out);
    for (const auto& h : held_) {
      out.returned.push_back(h.first);
      // The player is not told; its later RELEASE of these is accepted.
      if (client_fd_ >= 0) {
        reclaimed_.push_back(Reclaimed{epoch_, h.first, h.second.sequence});
        if (reclaimed_.size() > kMaxReclaimed) reclaimed_.pop_front();
      }
    }
    stats_.recovered_on_stop += held_.size();
    held_.clear();
    ++epoch_;
    // The next run may use another pool (a resize reopens the demux).
    learned_pool_count_ = 0;
    seen_indices_.clear();
    in_backpressure_ = false;
    in_flight_limited_ = false;
  }
  Deliver(host, &out);
}

}  // namespace dmx
