#include "ts_synthetic.h"

#include <string.h>

#include <algorithm>

#include "ts_packet.h"

namespace dmx {
namespace sim {

namespace {

constexpr uint64_t kPsiInterval = kPcrHz / 10;        // 100 ms
constexpr uint64_t kPcrInterval = kPcrHz * 3 / 100;   // 30 ms
constexpr uint64_t kVideoFrame = kPcrHz / 25;         // 40 ms
constexpr double kAudioFrameSeconds = 0.024;          // 1152 samples at 48 kHz
constexpr double kDataFrameSeconds = 0.1;
constexpr double kMaxCredit = 4.0;  // bounds catch-up after PSI slots
constexpr uint64_t kStartClock = kPcrHz * 10;
constexpr uint64_t kPtsDelay = kPtsHz * 7 / 10;  // PTS runs 700 ms ahead

// The next deadline of a periodic event that just fired at `now`.
uint64_t NextTick(uint64_t deadline, uint64_t interval, uint64_t now) {
  deadline += interval;
  return deadline > now ? deadline : now + interval;
}

uint8_t StreamId(SimStreamConfig::Type t) {
  switch (t) {
    case SimStreamConfig::Type::kVideo: return 0xE0;
    case SimStreamConfig::Type::kAudio: return 0xC0;
    default: return 0xBD;  // private_stream_1
  }
}

uint8_t StreamType(SimStreamConfig::Type t) {
  switch (t) {
    case SimStreamConfig::Type::kVideo: return 0x1B;  // H.264
    case SimStreamConfig::Type::kAudio: return 0x0F;  // AAC ADTS
    default: return 0x06;                             // PES private data
  }
}

void WritePcr(uint8_t* p, uint64_t clock) {
  uint64_t base = (clock / 300) & ((1ull << 33) - 1);
  uint64_t ext = clock % 300;
  p[0] = static_cast<uint8_t>(base >> 25);
  p[1] = static_cast<uint8_t>(base >> 17);
  p[2] = static_cast<uint8_t>(base >> 9);
  p[3] = static_cast<uint8_t>(base >> 1);
  p[4] = static_cast<uint8_t>(((base & 1) << 7) | 0x7E | ((ext >> 8) & 1));
  p[5] = static_cast<uint8_t>(ext & 0xFF);
}

}  // namespace

SyntheticTsSource::SyntheticTsSource(
    const std::vector<SimProgramConfig>& programs, uint64_t bitrate)
    : bitrate_(bitrate), clock_(kStartClock), next_pat_(kStartClock) {
  std::vector<std::pair<uint16_t, uint16_t>> pat_entries;
  size_t k = 0;
  for (const SimProgramConfig& pc : programs) {
    Program prog;
    prog.number = pc.number;
    prog.pmt_pid = pc.pmt_pid;
    // Stagger the PMTs after the PAT.
    prog.next_pmt = kStartClock + kPsiInterval * (k + 1) / (programs.size() + 1);
    ++k;
    uint16_t pcr_pid = pc.streams.front().pid;
    for (const SimStreamConfig& sc : pc.streams) {
      if (sc.type == SimStreamConfig::Type::kVideo) {
        pcr_pid = sc.pid;
        break;
      }
    }
    std::vector<PmtStream> es;
    for (const SimStreamConfig& sc : pc.streams) {
      Stream s;
      s.pid = sc.pid;
      s.type = sc.type;
      s.share = sc.share;
      s.carries_pcr = sc.pid == pcr_pid;
      s.next_pcr = kStartClock;
      s.next_pes = kStartClock;
      streams_.push_back(s);
      es.push_back({StreamType(sc.type), sc.pid});
    }
    prog.pmt = BuildPmt(pc.number, pcr_pid, es, 0);
    pat_entries.emplace_back(pc.number, pc.pmt_pid);
    programs_.push_back(std::move(prog));
  }
  pat_ = BuildPat(1, pat_entries, 0);
}

void SyntheticTsSource::SetBitrate(uint64_t bits_per_second) {
  bitrate_ = bits_per_second;
  clock_ += clock_rem_ / bitrate_;
  clock_rem_ %= bitrate_;
}

uint16_t SyntheticTsSource::DefaultFaultPid() const {
  return streams_.empty() ? kPatPid : streams_.front().pid;
}

void SyntheticTsSource::AdvanceClock() {
  // One packet lasts 1504 bits; keep the remainder so the clock is exact.
  clock_rem_ += uint64_t{1504} * kPcrHz;
  clock_ += clock_rem_ / bitrate_;
  clock_rem_ %= bitrate_;
}

void SyntheticTsSource::QueuePsi() {
  if (psi_pos_ == psi_queue_.size()) {
    psi_queue_.clear();
    psi_pos_ = 0;
  }
  if (clock_ >= next_pat_) {
    PacketizeSection(pat_, kPatPid, &pat_cc_, &psi_queue_);
    next_pat_ = NextTick(next_pat_, kPsiInterval, clock_);
  }
  for (Program& prog : programs_) {
    if (clock_ >= prog.next_pmt) {
      PacketizeSection(prog.pmt, prog.pmt_pid, &prog.cc, &psi_queue_);
      prog.next_pmt = NextTick(prog.next_pmt, kPsiInterval, clock_);
    }
  }
}

void SyntheticTsSource::Generate(size_t n, std::vector<uint8_t>* out) {
  size_t base = out->size();
  out->resize(base + n * kTsPacketSize);
  for (size_t i = 0; i < n; ++i) {
    uint8_t* p = out->data() + base + i * kTsPacketSize;
    AdvanceClock();
    QueuePsi();
    for (Stream& s : streams_)
      s.credit = std::min(s.credit + s.share, kMaxCredit);
    if (psi_pos_ < psi_queue_.size()) {
      memcpy(p, psi_queue_.data() + psi_pos_, kTsPacketSize);
      psi_pos_ += kTsPacketSize;
      continue;
    }
    Stream* best = nullptr;
    for (Stream& s : streams_)
      if (s.credit >= 1.0 && (!best || s.credit > best->credit)) best = &s;
    if (best) {
      best->credit -= 1.0;
      EmitStream(best, p);
      continue;
    }
    // Null packet.
    p[0] = kTsSync;
    p[1] = 0x1F;
    p[2] = 0xFF;
    p[3] = 0x10;
    memset(p + 4, 0xFF, kTsPacketSize - 4);
  }
}

void SyntheticTsSource::FillPayload(Stream* s, uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; ++i) p[i] = s->fill++;
}

void SyntheticTsSource::WritePesHeader(Stream* s, uint8_t* p,
                                       uint16_t pes_length) const {
  uint64_t pts = (clock_ / 300 + kPtsDelay) & ((1ull << 33) - 1);
  p[0] = 0x00;
  p[1] = 0x00;
  p[2] = 0x01;
  p[3] = StreamId(s->type);
  p[4] = static_cast<uint8_t>(pes_length >> 8);
  p[5] = static_cast<uint8_t>(pes_length & 0xFF);
  p[6] = 0x80;  // '10', not scrambled
  p[7] = 0x80;  // PTS only
  p[8] = 0x05;  // PES_header_data_length
  p[9] = static_cast<uint8_t>(0x21 | ((pts >> 29) & 0x0E));
  p[10] = static_cast<uint8_t>(pts >> 22);
  p[11] = static_cast<uint8_t>(0x01 | ((pts >> 14) & 0xFE));
  p[12] = static_cast<uint8_t>(pts >> 7);
  p[13] = static_cast<uint8_t>(0x01 | ((pts << 1) & 0xFE));
}

void SyntheticTsSource::EmitStream(Stream* s, uint8_t* p) {
  p[0] = kTsSync;
  p[1] = static_cast<uint8_t>((s->pid >> 8) & 0x1F);
  p[2] = static_cast<uint8_t>(s->pid & 0xFF);
  bool pcr_due = s->carries_pcr && clock_ >= s->next_pcr;
  if (pcr_due) s->next_pcr = NextTick(s->next_pcr, kPcrInterval, clock_);

  if (s->type == SimStreamConfig::Type::kVideo) {
    bool start = clock_ >= s->next_pes;
    if (start) s->next_pes = NextTick(s->next_pes, kVideoFrame, clock_);
    size_t at = 4;
    if (pcr_due) {
      p[3] = static_cast<uint8_t>(0x30 | s->cc);
      p[4] = 7;
      p[5] = static_cast<uint8_t>(0x10 | (start ? 0x40 : 0));  // PCR, RAI
      WritePcr(p + 6, clock_);
      at = 12;
    } else {
      p[3] = static_cast<uint8_t>(0x10 | s->cc);
    }
    s->cc = static_cast<uint8_t>((s->cc + 1) & 0x0F);
    if (start) {
      p[1] |= 0x40;
      WritePesHeader(s, p + at, 0);  // unbounded video PES
      static const uint8_t kAud[] = {0x00, 0x00, 0x00, 0x01, 0x09, 0xF0};
      memcpy(p + at + 14, kAud, sizeof(kAud));
      at += 14 + sizeof(kAud);
    }
    FillPayload(s, p + at, kTsPacketSize - at);
    return;
  }

  if (pcr_due) {
    // An adaptation-only packet carries the PCR so that the bounded PES
    // keep whole packets; the CC does not advance without payload.
    p[3] = static_cast<uint8_t>(0x20 | s->cc);
    p[4] = 183;
    p[5] = 0x10;
    WritePcr(p + 6, clock_);
    memset(p + 12, 0xFF, kTsPacketSize - 12);
    return;
  }
  p[3] = static_cast<uint8_t>(0x10 | s->cc);
  s->cc = static_cast<uint8_t>((s->cc + 1) & 0x0F);
  size_t at = 4;
  if (s->pes_left == 0) {
    double seconds = s->type == SimStreamConfig::Type::kAudio
                         ? kAudioFrameSeconds
                         : kDataFrameSeconds;
    double bytes = s->share * static_cast<double>(bitrate_) / 8.0 * seconds;
    size_t packets = static_cast<size_t>(bytes / 184.0 + 0.5);
    packets = std::min<size_t>(std::max<size_t>(packets, 1), 356);
    s->pes_left = packets;
    p[1] |= 0x40;
    WritePesHeader(s, p + at, static_cast<uint16_t>(packets * 184 - 6));
    at += 14;
    if (s->type == SimStreamConfig::Type::kAudio) {
      static const uint8_t kAdts[] = {0xFF, 0xF1, 0x50, 0x80};
      memcpy(p + at, kAdts, sizeof(kAdts));
      at += sizeof(kAdts);
    }
  }
  --s->pes_left;
  FillPayload(s, p + at, kTsPacketSize - at);
}

}  // namespace sim
}  // namespace dmx
