// MPEG transport stream packet fields and PSI helpers (ISO/IEC 13818-1).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <vector>

namespace dmx {
namespace sim {

constexpr size_t kTsPacketSize = 188;
constexpr uint8_t kTsSync = 0x47;
constexpr uint16_t kNullPid = 0x1FFF;
constexpr uint16_t kPatPid = 0x0000;
constexpr uint64_t kPcrHz = 27000000;  // PCR ticks per second
constexpr uint64_t kPtsHz = 90000;

inline uint16_t TsPid(const uint8_t* p) {
  return static_cast<uint16_t>(((p[1] & 0x1F) << 8) | p[2]);
}
inline bool TsTei(const uint8_t* p) { return (p[1] & 0x80) != 0; }
inline bool TsPusi(const uint8_t* p) { return (p[1] & 0x40) != 0; }
inline uint8_t TsCc(const uint8_t* p) { return p[3] & 0x0F; }
inline bool TsHasPayload(const uint8_t* p) { return (p[3] & 0x10) != 0; }
inline bool TsHasAdaptation(const uint8_t* p) { return (p[3] & 0x20) != 0; }
inline void TsSetCc(uint8_t* p, uint8_t cc) {
  p[3] = static_cast<uint8_t>((p[3] & 0xF0) | (cc & 0x0F));
}
// Offset of the payload in the packet, or 0 when there is none (payload()
// in dvb_demux.c: an adaptation_field_length above 183 means none).
size_t TsPayloadOffset(const uint8_t* p);
// The PCR of the packet, when its adaptation field carries one.
bool TsReadPcr(const uint8_t* p, uint64_t* pcr);

// CRC-32/MPEG-2 (poly 0x04C11DB7, init ~0, no reflection, crc32_be in
// the kernel). A section including its CRC sums to 0.
uint32_t Crc32Mpeg(const uint8_t* data, size_t len, uint32_t crc = 0xFFFFFFFFu);

// Splits one PSI section into TS packets on `pid` (pointer field in the
// first, 0xFF stuffing in the last). `cc` is advanced per packet.
void PacketizeSection(const std::vector<uint8_t>& section, uint16_t pid,
                      uint8_t* cc, std::vector<uint8_t>* out);

// A complete PAT (table_id 0) with CRC.
std::vector<uint8_t> BuildPat(
    uint16_t transport_stream_id,
    const std::vector<std::pair<uint16_t, uint16_t>>& program_to_pmt_pid,
    uint8_t version);

struct PmtStream {
  uint8_t stream_type;
  uint16_t pid;
};
// A complete PMT (table_id 2) with CRC.
std::vector<uint8_t> BuildPmt(uint16_t program_number, uint16_t pcr_pid,
                              const std::vector<PmtStream>& streams,
                              uint8_t version);

}  // namespace sim
}  // namespace dmx
