// Faults injected into an adapter's stream on demand (sim.injectFault),
// effective from the next packets the producer delivers:
//  - cc-gap:      the next `count` payload packets of a PID each skip one
//                 continuity counter value (the shift persists, so each is
//                 one discontinuity);
//  - tei:         the next `count` packets (of a PID, or any non-null one)
//                 carry transport_error_indicator;
//  - crc-discard: the next `count` sections starting on a PID get a
//                 corrupted byte, so a section filter with DMX_CHECK_CRC
//                 discards them;
//  - stall:       nothing reaches the demux for a while (packets are lost,
//                 as with a signal loss);
//  - burst:       the rate is multiplied for a while.
// Thread safe: injected from the JS thread, applied by the producer.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <mutex>
#include <vector>

#include "sim_sys.h"

namespace dmx {
namespace sim {

class FaultInjector {
 public:
  FaultInjector();
  // `default_pid`: the source's PID for cc-gap when none is given.
  void Inject(const SimFault& fault, uint16_t default_pid, uint64_t now_ns);
  // Applies packet faults to `n` packets. Returns how many carry TEI.
  size_t Apply(uint8_t* packets, size_t n);
  bool StalledAt(uint64_t now_ns);
  double RateFactorAt(uint64_t now_ns);
  // When a stall or burst window ends (0: none pending).
  uint64_t NextWindowEnd(uint64_t now_ns);

 private:
  struct Pending {
    SimFault::Kind kind;
    int pid;  // -1: any
    uint32_t left;
  };
  std::mutex mu_;
  std::vector<Pending> pending_;
  std::vector<uint8_t> cc_shift_;  // per PID, persistent
  uint64_t stall_until_ns_ = 0;
  uint64_t burst_until_ns_ = 0;
  double burst_factor_ = 1.0;
};

}  // namespace sim
}  // namespace dmx
