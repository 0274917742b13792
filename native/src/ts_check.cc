#include "ts_check.h"

#include <string.h>

#include <algorithm>

namespace dmx {

void TsChecker::Reset() {
  packets_ = sync_errors_ = tei_packets_ = cc_gaps_total_ = 0;
  last_cc_.fill(-1);
  cc_gaps_.fill(0);
  phase_ = 0;
}

void TsChecker::Packet(const uint8_t h[4]) {
  packets_++;
  if (h[0] != 0x47) {
    sync_errors_++;
    return;
  }
  uint16_t pid = static_cast<uint16_t>(((h[1] & 0x1f) << 8) | h[2]);
  if (h[1] & 0x80) tei_packets_++;
  if (pid == 0x1fff) return;  // null packets carry no meaningful CC
  uint8_t afc = (h[3] >> 4) & 0x3;
  int8_t cc = static_cast<int8_t>(h[3] & 0x0f);
  int8_t last = last_cc_[pid];
  // ISO 13818-1 2.4.3.3: CC increments only with a payload; a packet
  // without payload repeats it, and one duplicate is allowed.
  bool has_payload = (afc & 0x1) != 0;
  if (last >= 0) {
    int8_t expected = has_payload ? static_cast<int8_t>((last + 1) & 0x0f) : last;
    if (cc != expected && !(has_payload && cc == last)) {
      cc_gaps_[pid]++;
      cc_gaps_total_++;
    }
  }
  last_cc_[pid] = cc;
}

void TsChecker::Feed(const uint8_t* data, size_t length) {
  size_t pos = 0;
  if (phase_ != 0) {
    // Finish the packet begun in the previous buffer: complete its header,
    // then skip its remaining bytes.
    while (phase_ < 4 && pos < length) partial_[phase_++] = data[pos++];
    if (phase_ < 4) return;
    size_t take = std::min(kPacket - phase_, length - pos);
    pos += take;
    phase_ += take;
    if (phase_ < kPacket) return;
    Packet(partial_);
    phase_ = 0;
  }
  while (length - pos >= kPacket) {
    Packet(data + pos);
    pos += kPacket;
  }
  if (pos < length) {
    size_t tail = length - pos;
    memcpy(partial_, data + pos, std::min<size_t>(tail, 4));
    phase_ = tail;
  }
}

}  // namespace dmx
