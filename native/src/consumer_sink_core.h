// The external consumer sink: hands each demux buffer's dmabuf fd, with its
// metadata, to one player process over a Unix SOCK_SEQPACKET socket
// (SCM_RIGHTS) and gives the buffer back to the pump when the player sends
// RELEASE. Wire protocol: native/docs/consumer-protocol.md.
//
// This half is free of Napi so it can be linked and tested on its own; the JS
// class `ConsumerSink` wrapping it is in consumer_sink.{h,cc}.
//
// Threads:
//   - constructor, Listen(), Close(): JS thread;
//   - Attach/AddPollFds/OnPoll/Submit/NextTimeoutMs/RecoverAll: pump thread;
//   - Snapshot(), SetPoolCount(), socket_path(): any thread.
// One mutex guards all state. SinkHost callbacks are never made while it is
// held: they are collected in an Outbox and delivered after unlocking, so the
// pump may call back into the sink from Returned() without deadlock.
//
// Close() may run while the pump still runs (JS closed the sink first): the
// fds are closed at once, held buffers become "pending returns", and the next
// pump-thread call (NextTimeoutMs() then reports 0) hands them back with the
// "consumer-disconnected" note.
#pragma once

#include <stdint.h>
#include <sys/types.h>

#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "sink.h"
#include "sys_error.h"

namespace dmx {

struct ConsumerSinkOptions {
  // Filesystem path, or "@name" for a Linux abstract socket name.
  std::string socket_path;
  // 1..31 chars of [A-Za-z0-9._-]; sent in HELLO and every BUFFER.
  std::string stream_id;
  // Most buffers the player may hold at once. 0: pool count − 2 (at least
  // 1), the pool count from SetPoolCount() or else learned (see below).
  uint32_t max_in_flight = 0;
  // A player holding any buffer longer than this is disconnected. 0 turns
  // the timeout off (the JS class does not allow that).
  uint32_t hold_timeout_ms = 2000;
  // SO_SNDBUF for player connections; 0 keeps the kernel default. Not
  // exposed to JS: tests use it to provoke backpressure with a small pool.
  int send_buffer_bytes = 0;
};

struct ConsumerSinkStats {
  uint64_t connects = 0;               // players accepted
  uint64_t rejects = 0;                // second players turned away (REJECT)
  uint64_t disconnects = 0;            // accepted players gone, any reason
  uint64_t buffers_sent = 0;           // BUFFER messages sent (buffers taken)
  uint64_t bytes_sent = 0;             // sum of their bytesused
  uint64_t released = 0;               // valid RELEASEs of held buffers
  uint64_t late_releases = 0;          // RELEASEs of buffers reclaimed by RecoverAll
  uint64_t recovered_on_disconnect = 0;  // held buffers returned because the player left
  uint64_t recovered_on_stop = 0;      // held buffers returned by RecoverAll
  uint64_t timeouts = 0;               // players disconnected for holding too long
  uint64_t protocol_errors = 0;        // players disconnected for a protocol violation
  uint64_t backpressure = 0;           // Submit declined: socket full (EAGAIN)
  uint64_t declined_no_player = 0;     // Submit declined: nobody connected
  uint64_t declined_in_flight = 0;     // Submit declined: max in flight reached
  uint64_t send_errors = 0;            // sendmsg failures other than the above
  uint32_t held = 0;                   // buffers the player holds now
  uint32_t max_held = 0;               // high-water mark of `held`
  uint32_t max_in_flight = 0;          // effective limit; 0 = none (pool size unknown)
  uint32_t hold_timeout_ms = 0;
  uint32_t epoch = 0;                  // bumped by every RecoverAll
  bool listening = false;
  bool connected = false;
  pid_t peer_pid = 0;                  // SO_PEERCRED of the player (when connected)
  uid_t peer_uid = 0;
  gid_t peer_gid = 0;
};

class ConsumerSinkCore : public Sink {
 public:
  explicit ConsumerSinkCore(ConsumerSinkOptions options);
  ~ConsumerSinkCore() override;  // Close()

  ConsumerSinkCore(const ConsumerSinkCore&) = delete;
  ConsumerSinkCore& operator=(const ConsumerSinkCore&) = delete;

  // JS thread, once. Creates the listening socket (SOCK_SEQPACKET,
  // non-blocking, close-on-exec), binds and listens. A socket file left at
  // the path by a dead process is unlinked and the bind retried; a path where
  // something listens, or that is not a socket, fails with EADDRINUSE.
  // Returns false with *error set (syscall "socket", "bind" or "listen").
  bool Listen(SysError* error);

  // Any thread. Closes the player connection (best-effort GOODBYE) and the
  // listening socket, and unlinks the socket file this object created (only
  // if it is still the same inode). Idempotent. Held buffers are handed back
  // on the pump thread at its next call into the sink.
  void Close();

  // Any thread. The pump's pool size, for the default max-in-flight limit.
  // Without it the sink learns the size on each pump run: the kernel hands
  // buffers out FIFO and the pump queues the whole pool at start, so the
  // number of distinct indices offered before the first index comes round
  // again is the pool size. Until then (one pool cycle) there is no limit
  // but the hold timeout.
  void SetPoolCount(uint32_t count);

  ConsumerSinkStats Snapshot() const;  // any thread
  const std::string& socket_path() const { return options_.socket_path; }
  const std::string& stream_id() const { return options_.stream_id; }

  // Sink (pump thread).
  const char* Kind() const override { return "consumer"; }
  void Attach(SinkHost* host) override;
  void AddPollFds(std::vector<struct pollfd>* fds) override;
  void OnPoll(const struct pollfd* fds, size_t count) override;
  SubmitResult Submit(const SinkBuffer& buffer) override;
  int NextTimeoutMs() override;
  void RecoverAll() override;

 private:
  // Host calls gathered under the lock and made after it is released.
  struct Outbox {
    std::vector<uint32_t> returned;
    std::vector<SysError> errors;
    std::vector<std::pair<std::string, std::string>> notes;
  };
  struct Held {
    uint32_t sequence = 0;
    uint64_t sent_ns = 0;
  };
  struct Reclaimed {
    uint32_t epoch, index, sequence;
  };
  struct PollSlot {
    int fd;
    uint64_t generation;  // client generation when appended; 0 = listener
  };

  void Deliver(SinkHost* host, Outbox* out);
  void FlushPendingLocked(Outbox* out);
  void AcceptLocked(Outbox* out);
  void ReadClientLocked(Outbox* out);
  void HandleMessageLocked(const uint8_t* msg, size_t size, Outbox* out);
  void HandleReleaseLocked(uint32_t index, uint32_t sequence, uint32_t epoch, Outbox* out);
  void CheckTimeoutLocked(uint64_t now, Outbox* out);
  // Best-effort ERROR, then disconnect.
  void ProtocolErrorLocked(uint32_t code, uint32_t index, uint32_t sequence, uint32_t epoch,
                           const std::string& text, Outbox* out);
  void DisconnectLocked(const std::string& reason, Outbox* out);
  // Non-blocking control message (no fd); false when not sent.
  bool SendControlLocked(int fd, const uint8_t* msg, size_t size);
  uint32_t EffectiveMaxInFlightLocked() const;
  std::string PeerLocked() const;

  const ConsumerSinkOptions options_;

  mutable std::mutex mu_;
  SinkHost* host_ = nullptr;
  int listen_fd_ = -1;
  bool created_file_ = false;  // we bound a filesystem path: unlink on Close
  dev_t file_dev_ = 0;
  ino_t file_ino_ = 0;
  bool closed_ = false;
  uint64_t accept_paused_until_ns_ = 0;  // after EMFILE/ENFILE

  int client_fd_ = -1;
  uint64_t client_generation_ = 0;  // bumped per accepted player
  pid_t peer_pid_ = 0;
  uid_t peer_uid_ = 0;
  gid_t peer_gid_ = 0;
  bool in_backpressure_ = false;  // for one Note per episode
  bool in_flight_limited_ = false;

  uint32_t pool_count_ = 0;          // from SetPoolCount(); 0 = unknown
  uint32_t learned_pool_count_ = 0;  // this pump run's; 0 = still learning
  std::set<uint32_t> seen_indices_;  // while learning
  uint32_t epoch_ = 1;
  std::map<uint32_t, Held> held_;          // by demux buffer index
  std::deque<Reclaimed> reclaimed_;        // RecoverAll'd while connected
  std::vector<uint32_t> pending_returns_;  // held at Close(), not yet returned
  std::vector<std::pair<std::string, std::string>> pending_notes_;  // likewise
  std::vector<PollSlot> slots_;            // what AddPollFds appended last

  ConsumerSinkStats stats_;
};

// Wire constants shared with native/docs/consumer-protocol.md and
// test/consumer/reference-consumer.c. All integers little-endian.
namespace consumer_wire {
constexpr uint32_t kMagic = 0x43584D44;  // bytes "DMXC"
constexpr uint16_t kVersion = 1;
constexpr size_t kHeaderSize = 16;
constexpr size_t kStreamIdSize = 32;
constexpr size_t kMaxMessage = 256;

enum Type : uint16_t {
  kHello = 1,    // agent -> player, on connect
  kBuffer = 2,   // agent -> player, one dmabuf fd attached
  kRelease = 3,  // player -> agent
  kReject = 4,   // agent -> player, then close (another player is connected)
  kError = 5,    // agent -> player, then close (protocol error, hold timeout)
  kGoodbye = 6,  // either way, then close
};

enum Code : uint32_t {
  kNone = 0,
  kBusy = 1,
  kBadMessage = 2,
  kBadRelease = 3,
  kHoldTimeout = 4,
  kShutdown = 5,
};

constexpr size_t kHelloBody = 48;
constexpr size_t kBufferBody = 72;
constexpr size_t kReleaseBody = 16;
constexpr size_t kStatusBody = 112;  // REJECT, ERROR, GOODBYE
constexpr size_t kStatusText = 96;
}  // namespace consumer_wire

}  // namespace dmx
