#include "ts_packet.h"

#include <string.h>

namespace dmx {
namespace sim {

size_t TsPayloadOffset(const uint8_t* p) {
  if (!TsHasPayload(p)) return 0;
  if (TsHasAdaptation(p)) {
    if (p[4] > 183) return 0;
    return 5 + p[4];
  }
  return 4;
}

bool TsReadPcr(const uint8_t* p, uint64_t* pcr) {
  if (!TsHasAdaptation(p) || p[4] < 7 || !(p[5] & 0x10)) return false;
  uint64_t base = (static_cast<uint64_t>(p[6]) << 25) |
                  (static_cast<uint64_t>(p[7]) << 17) |
                  (static_cast<uint64_t>(p[8]) << 9) |
                  (static_cast<uint64_t>(p[9]) << 1) | (p[10] >> 7);
  uint64_t ext = (static_cast<uint64_t>(p[10] & 0x01) << 8) | p[11];
  *pcr = base * 300 + ext;
  return true;
}

namespace {

struct CrcTable {
  uint32_t t[256];
  CrcTable() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i << 24;
      for (int k = 0; k < 8; ++k)
        c = (c & 0x80000000u) ? (c << 1) ^ 0x04C11DB7u : (c << 1);
      t[i] = c;
    }
  }
};

void PutSectionHeader(std::vector<uint8_t>* s, uint8_t table_id,
                      uint16_t extension, uint8_t version,
                      size_t section_length) {
  s->push_back(table_id);
  s->push_back(static_cast<uint8_t>(0xB0 | ((section_length >> 8) & 0x0F)));
  s->push_back(static_cast<uint8_t>(section_length & 0xFF));
  s->push_back(static_cast<uint8_t>(extension >> 8));
  s->push_back(static_cast<uint8_t>(extension & 0xFF));
  s->push_back(static_cast<uint8_t>(0xC1 | ((version & 0x1F) << 1)));
  s->push_back(0);  // section_number
  s->push_back(0);  // last_section_number
}

void PutCrc(std::vector<uint8_t>* s) {
  uint32_t crc = Crc32Mpeg(s->data(), s->size());
  for (int shift = 24; shift >= 0; shift -= 8)
    s->push_back(static_cast<uint8_t>(crc >> shift));
}

}  // namespace

uint32_t Crc32Mpeg(const uint8_t* data, size_t len, uint32_t crc) {
  static const CrcTable table;
  for (size_t i = 0; i < len; ++i)
    crc = (crc << 8) ^ table.t[((crc >> 24) ^ data[i]) & 0xFF];
  return crc;
}

void PacketizeSection(const std::vector<uint8_t>& section, uint16_t pid,
                      uint8_t* cc, std::vector<uint8_t>* out) {
  size_t pos = 0;
  bool first = true;
  while (first || pos < section.size()) {
    size_t base = out->size();
    out->resize(base + kTsPacketSize, 0xFF);
    uint8_t* p = out->data() + base;
    p[0] = kTsSync;
    p[1] = static_cast<uint8_t>((first ? 0x40 : 0x00) | ((pid >> 8) & 0x1F));
    p[2] = static_cast<uint8_t>(pid & 0xFF);
    p[3] = static_cast<uint8_t>(0x10 | (*cc & 0x0F));
    *cc = static_cast<uint8_t>((*cc + 1) & 0x0F);
    size_t at = 4;
    if (first) p[at++] = 0;  // pointer_field
    size_t n = kTsPacketSize - at;
    if (n > section.size() - pos) n = section.size() - pos;
    memcpy(p + at, section.data() + pos, n);
    pos += n;
    first = false;
  }
}

std::vector<uint8_t> BuildPat(
    uint16_t transport_stream_id,
    const std::vector<std::pair<uint16_t, uint16_t>>& program_to_pmt_pid,
    uint8_t version) {
  std::vector<uint8_t> s;
  PutSectionHeader(&s, 0x00, transport_stream_id, version,
                   5 + 4 * program_to_pmt_pid.size() + 4);
  for (const auto& e : program_to_pmt_pid) {
    s.push_back(static_cast<uint8_t>(e.first >> 8));
    s.push_back(static_cast<uint8_t>(e.first & 0xFF));
    s.push_back(static_cast<uint8_t>(0xE0 | ((e.second >> 8) & 0x1F)));
    s.push_back(static_cast<uint8_t>(e.second & 0xFF));
  }
  PutCrc(&s);
  return s;
}

std::vector<uint8_t> BuildPmt(uint16_t program_number, uint16_t pcr_pid,
                              const std::vector<PmtStream>& streams,
                              uint8_t version) {
  std::vector<uint8_t> s;
  PutSectionHeader(&s, 0x02, program_number, version,
                   9 + 5 * streams.size() + 4);
  s.push_back(static_cast<uint8_t>(0xE0 | ((pcr_pid >> 8) & 0x1F)));
  s.push_back(static_cast<uint8_t>(pcr_pid & 0xFF));
  s.push_back(0xF0);  // program_info_length = 0
  s.push_back(0x00);
  for (const PmtStream& e : streams) {
    s.push_back(e.stream_type);
    s.push_back(static_cast<uint8_t>(0xE0 | ((e.pid >> 8) & 0x1F)));
    s.push_back(static_cast<uint8_t>(e.pid & 0xFF));
    s.push_back(0xF0);  // ES_info_length = 0
    s.push_back(0x00);
  }
  PutCrc(&s);
  return s;
}

}  // namespace sim
}  // namespace dmx
