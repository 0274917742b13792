// A synthetic multiplex: PAT and one PMT per program (every 100 ms, valid
// CRC), per program a video stream with PCR in its adaptation fields
// (every 30 ms) and PES packets per 40 ms frame, audio and data streams
// with bounded PES packets, null packets for the rest of the rate. Each
// stream gets its share of the packet slots; continuity counters and the
// 27 MHz clock behind PCR and PTS are exact for the configured rate.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <vector>

#include "sim_sys.h"
#include "ts_source.h"

namespace dmx {
namespace sim {

class SyntheticTsSource : public TsSource {
 public:
  SyntheticTsSource(const std::vector<SimProgramConfig>& programs,
                    uint64_t bitrate);

  uint64_t RateBps() const override { return bitrate_; }
  void Generate(size_t n, std::vector<uint8_t>* out) override;
  void SetBitrate(uint64_t bits_per_second) override;
  uint16_t DefaultFaultPid() const override;

 private:
  struct Stream {
    uint16_t pid = 0;
    SimStreamConfig::Type type = SimStreamConfig::Type::kVideo;
    double share = 0;
    double credit = 0;
    uint8_t cc = 0;
    bool carries_pcr = false;
    uint64_t next_pcr = 0;  // 27 MHz clock
    uint64_t next_pes = 0;  // video: next frame start
    size_t pes_left = 0;    // audio/data: packets left in the PES
    uint8_t fill = 0;
  };
  struct Program {
    uint16_t number = 0;
    uint16_t pmt_pid = 0;
    std::vector<uint8_t> pmt;  // the section
    uint8_t cc = 0;
    uint64_t next_pmt = 0;
  };

  void AdvanceClock();
  void QueuePsi();
  void EmitStream(Stream* s, uint8_t* p);
  void FillPayload(Stream* s, uint8_t* p, size_t n);
  void WritePesHeader(Stream* s, uint8_t* p, uint16_t pes_length) const;

  uint64_t bitrate_;
  uint64_t clock_;  // 27 MHz time of the packet being made
  uint64_t clock_rem_ = 0;
  std::vector<Stream> streams_;
  std::vector<Program> programs_;
  std::vector<uint8_t> pat_;
  uint8_t pat_cc_ = 0;
  uint64_t next_pat_;
  std::vector<uint8_t> psi_queue_;  // PSI packets waiting for a slot
  size_t psi_pos_ = 0;
};

}  // namespace sim
}  // namespace dmx
