#include "ts_faults.h"

#include <algorithm>

#include "ts_packet.h"

namespace dmx {
namespace sim {

FaultInjector::FaultInjector() : cc_shift_(0x2000, 0) {}

void FaultInjector::Inject(const SimFault& fault, uint16_t default_pid,
                           uint64_t now_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t duration = uint64_t{fault.duration_ms} * 1000000;
  switch (fault.kind) {
    case SimFault::Kind::kStall:
      stall_until_ns_ = std::max(stall_until_ns_, now_ns + duration);
      return;
    case SimFault::Kind::kBurst:
      burst_until_ns_ = now_ns + duration;
      burst_factor_ = fault.factor;
      return;
    case SimFault::Kind::kCcGap:
      pending_.push_back({fault.kind, fault.pid >= 0 ? fault.pid : default_pid,
                          fault.count});
      return;
    case SimFault::Kind::kCrcDiscard:
      pending_.push_back(
          {fault.kind, fault.pid >= 0 ? fault.pid : kPatPid, fault.count});
      return;
    case SimFault::Kind::kTei:
      pending_.push_back({fault.kind, fault.pid, fault.count});
      return;
    case SimFault::Kind::kAllocFail:
    case SimFault::Kind::kHang:
      // Not stream faults: DvbAdapter applies them to the allocator and to its ioctls.
      return;
  }
}

bool FaultInjector::StalledAt(uint64_t now_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  return now_ns < stall_until_ns_;
}

double FaultInjector::RateFactorAt(uint64_t now_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  return now_ns < burst_until_ns_ ? burst_factor_ : 1.0;
}

uint64_t FaultInjector::NextWindowEnd(uint64_t now_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t next = 0;
  for (uint64_t t : {stall_until_ns_, burst_until_ns_})
    if (t > now_ns && (!next || t < next)) next = t;
  return next;
}

size_t FaultInjector::Apply(uint8_t* packets, size_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t tei = 0;
  for (size_t i = 0; i < n; ++i) {
    uint8_t* p = packets + i * kTsPacketSize;
    uint16_t pid = TsPid(p);
    for (Pending& f : pending_) {
      if (f.left == 0) continue;
      switch (f.kind) {
        case SimFault::Kind::kCcGap:
          if (pid == f.pid && TsHasPayload(p)) {
            cc_shift_[pid] = static_cast<uint8_t>((cc_shift_[pid] + 1) & 0x0F);
            --f.left;
          }
          break;
        case SimFault::Kind::kTei:
          if (f.pid >= 0 ? pid == f.pid : pid != kNullPid) {
            p[1] |= 0x80;
            --f.left;
          }
          break;
        case SimFault::Kind::kCrcDiscard:
          if (pid == f.pid && TsPusi(p)) {
            size_t off = TsPayloadOffset(p);
            if (off == 0) break;
            // Past the pointer field: flip a byte of the section's body.
            size_t at = off + 1 + p[off] + 3;
            if (at >= kTsPacketSize) at = kTsPacketSize - 1;
            p[at] ^= 0x5A;
            --f.left;
          }
          break;
        default:
          break;
      }
    }
    if (cc_shift_[pid] && pid != kNullPid)
      TsSetCc(p, static_cast<uint8_t>(TsCc(p) + cc_shift_[pid]));
    if (TsTei(p)) ++tei;
  }
  pending_.erase(std::remove_if(pending_.begin(), pending_.end(),
                                [](const Pending& f) { return f.left == 0; }),
                 pending_.end());
  return tei;
}

}  // namespace sim
}  // namespace dmx
