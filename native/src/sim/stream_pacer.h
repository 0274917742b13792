// Real-time pacing of a packet stream: how many 188-byte packets are due
// at a CLOCK_MONOTONIC instant for a piecewise-constant bit rate. Counting
// from a base instant (not adding per-batch sleeps) keeps the rate exact on
// average however late the thread wakes.
#pragma once

#include <stdint.h>

#include "mul_div.h"

namespace dmx {
namespace sim {

class StreamPacer {
 public:
  static constexpr uint64_t kBitsPerPacket = 188 * 8;

  // Starts (or resumes after idling) at `now_ns`; nothing is owed.
  void Start(uint64_t now_ns, uint64_t rate_bps) {
    base_ns_ = now_ns;
    base_count_ = sent_;
    rate_ = rate_bps;
  }
  // A new rate from `now_ns` on; packets already owed stay owed.
  void SetRateNow(uint64_t now_ns, uint64_t rate_bps) {
    base_count_ = DueAt(now_ns);
    base_ns_ = now_ns > base_ns_ ? now_ns : base_ns_;
    rate_ = rate_bps;
  }
  // A new rate from packet `sent()` on, at the instant that packet was due
  // (the next PCR segment of a file).
  void SetRateAtSent(uint64_t rate_bps) {
    base_ns_ = TimeOfCount(sent_);
    base_count_ = sent_;
    rate_ = rate_bps;
  }

  uint64_t rate() const { return rate_; }
  uint64_t sent() const { return sent_; }
  void AddSent(uint64_t n) { sent_ += n; }

  // Packets due by `now_ns`, counted from the start.
  uint64_t DueAt(uint64_t now_ns) const {
    if (now_ns <= base_ns_ || rate_ == 0) return base_count_;
    return base_count_ + MulDivFloor(now_ns - base_ns_, rate_,
                                     kBitsPerPacket * 1000000000ull);
  }
  // The instant packet number `count` is due.
  uint64_t TimeOfCount(uint64_t count) const {
    if (count <= base_count_ || rate_ == 0) return base_ns_;
    return base_ns_ + MulDivCeil(count - base_count_,
                                 kBitsPerPacket * 1000000000ull, rate_);
  }

 private:
  uint64_t base_ns_ = 0;
  uint64_t base_count_ = 0;
  uint64_t rate_ = 0;
  uint64_t sent_ = 0;
};

}  // namespace sim
}  // namespace dmx
