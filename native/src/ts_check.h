// Transport-stream health read straight from the mapped demux buffers (no
// copy): sync bytes, transport_error_indicator and continuity-counter gaps
// per PID. The kernel drops data silently when no buffer is queued, so CC
// gaps are one of the two ways the agent sees loss (kernel-facts.md).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <array>

namespace dmx {

class TsChecker {
 public:
  static constexpr size_t kPacket = 188;
  static constexpr uint16_t kPids = 8192;

  TsChecker() { Reset(); }
  void Reset();
  // Feeds one dequeued buffer. Packets may straddle buffers (sizes that are
  // not multiples of 188); the checker carries the phase across calls.
  void Feed(const uint8_t* data, size_t length);

  uint64_t packets() const { return packets_; }
  uint64_t sync_errors() const { return sync_errors_; }
  uint64_t tei_packets() const { return tei_packets_; }
  uint64_t cc_gaps() const { return cc_gaps_total_; }
  uint64_t cc_gaps(uint16_t pid) const { return cc_gaps_[pid]; }

 private:
  void Packet(const uint8_t header[4]);

  uint64_t packets_ = 0, sync_errors_ = 0, tei_packets_ = 0, cc_gaps_total_ = 0;
  std::array<int8_t, kPids> last_cc_;  // -1: not seen yet
  std::array<uint64_t, kPids> cc_gaps_;
  size_t phase_ = 0;        // bytes of the current packet already consumed
  uint8_t partial_[4] = {};  // header bytes seen before a buffer boundary
};

}  // namespace dmx
