// What the pump hands dequeued demux buffers to (pump.cc). One sink per pump:
// a V4L2 decoder's OUTPUT queue (decoder_sink.cc), an external consumer over
// a Unix socket (consumer_sink.cc), or nothing (the pump requeues at once).
//
// All methods are called on the pump thread only, except where noted.
#pragma once

#include <poll.h>
#include <stdint.h>

#include <functional>
#include <string>
#include <vector>

#include "sys_error.h"

namespace dmx {

// One demux buffer as the pump hands it over. The dmabuf fd stays owned by
// the demux pool; a sink that passes it on (SCM_RIGHTS, V4L2 import) never
// closes it.
struct SinkBuffer {
  uint32_t index = 0;
  uint32_t bytesused = 0;
  uint32_t flags = 0;      // DMX_BUFFER_FLAG_* as dequeued
  uint32_t sequence = 0;   // dmx_buffer.count as dequeued
  uint32_t length = 0;     // dmx_buffer.length (the requested size)
  int dmabuf_fd = -1;
  uint64_t dmabuf_size = 0;  // page-aligned size of the dmabuf (lseek END)
  uint64_t dequeued_ns = 0;  // CLOCK_MONOTONIC at DQBUF
};

// Where the sink reports back to the pump.
class SinkHost {
 public:
  virtual ~SinkHost() = default;
  // The sink is done with demux buffer `index`: the pump requeues it.
  virtual void Returned(uint32_t index) = 0;
  // A syscall failed inside the sink; the pump counts it and posts it to JS.
  virtual void Error(const SysError& error) = 0;
  // A sink-level state change worth telling JS about ("consumer-connected",
  // "consumer-disconnected", "decoder-gone", "source-change", ...).
  virtual void Note(const std::string& what, const std::string& detail) = 0;
};

enum class SubmitResult {
  kTaken,     // the sink holds the buffer until it calls host->Returned()
  kDeclined,  // not taken (no consumer connected, no free slot, import
              // failed): the pump requeues it at once and counts the reason
};

class Sink {
 public:
  virtual ~Sink() = default;
  // "decoder", "consumer" or "discard"; used in the ownership ledger.
  virtual const char* Kind() const = 0;
  // Called once when the pump starts, before any other call.
  virtual void Attach(SinkHost* host) = 0;
  // Appends the fds the pump thread must poll for this sink.
  virtual void AddPollFds(std::vector<struct pollfd>* fds) = 0;
  // Called with the revents of the fds AddPollFds appended, in that order.
  virtual void OnPoll(const struct pollfd* fds, size_t count) = 0;
  // Offers a dequeued buffer.
  virtual SubmitResult Submit(const SinkBuffer& buffer) = 0;
  // Milliseconds until the sink next needs OnPoll without readiness
  // (timeouts); -1 for none.
  virtual int NextTimeoutMs() { return -1; }
  // On pump stop: take back every buffer the sink still holds, calling
  // host->Returned() for each, and leave the sink idle but reusable.
  virtual void RecoverAll() = 0;
};

}  // namespace dmx
