// A .ts file replayed in a loop at its own rate. The file is mapped
// read-only (no fd is kept) and scanned once: packets are found by
// resynchronising on 0x47 (a sync byte with another one 188 bytes on), and
// the PCRs of the first PID that carries any split it into segments, each
// played at the rate its two PCRs imply. Packets outside any segment, and
// files without usable PCRs, play at the file's average rate or the
// configured fallback. Continuity counters are rewritten across the loop
// point so that looping itself is not a discontinuity.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <memory>
#include <string>
#include <vector>

#include "ts_source.h"

namespace dmx {
namespace sim {

class FileTsSource : public TsSource {
 public:
  // Throws std::invalid_argument when the file cannot be read or holds no
  // transport packets.
  FileTsSource(const std::string& path, uint64_t fallback_bitrate);
  ~FileTsSource() override;
  FileTsSource(const FileTsSource&) = delete;
  FileTsSource& operator=(const FileTsSource&) = delete;

  uint64_t RateBps() const override;
  size_t PacketsAtCurrentRate() const override;
  void Generate(size_t n, std::vector<uint8_t>* out) override;
  void SetBitrate(uint64_t bits_per_second) override {
    override_rate_ = bits_per_second;
  }
  uint16_t DefaultFaultPid() const override { return default_pid_; }

 private:
  struct Segment {
    uint64_t begin;  // packet ordinals within one loop
    uint64_t end;
    uint64_t rate;
  };
  size_t NextPacket(size_t pos) const;
  const Segment* SegmentAt(uint64_t ordinal) const;
  void Scan(uint64_t fallback_bitrate);

  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  size_t pos_ = 0;
  uint64_t ordinal_ = 0;
  uint64_t packets_per_loop_ = 0;
  std::vector<Segment> segments_;
  uint64_t average_rate_ = 0;
  uint64_t override_rate_ = 0;
  uint16_t default_pid_ = 0;
  // Continuity across the loop point.
  std::vector<uint8_t> cc_offset_;
  std::vector<int8_t> last_cc_;
  std::vector<uint8_t> need_offset_;
};

}  // namespace sim
}  // namespace dmx
