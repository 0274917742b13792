#include "ts_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

#include "mul_div.h"
#include "ts_packet.h"

namespace dmx {
namespace sim {

namespace {

constexpr uint64_t kPcrWrap = (1ull << 33) * 300;
constexpr uint64_t kMinRate = 10000;          // plausible segment rates
constexpr uint64_t kMaxRate = 1000000000;
constexpr uint64_t kDefaultRate = 8000000;

uint64_t RateOf(uint64_t packets, uint64_t ticks) {
  return MulDivFloor(packets, 1504 * kPcrHz, ticks);
}

}  // namespace

FileTsSource::FileTsSource(const std::string& path,
                           uint64_t fallback_bitrate) {
  int fd;
  do {
    fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0)
    throw std::invalid_argument("cannot open " + path + ": " + strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    throw std::invalid_argument(path + " is not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ < kTsPacketSize) {
    close(fd);
    throw std::invalid_argument(path + " holds no transport stream packets");
  }
  void* p = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
  int err = errno;
  close(fd);
  if (p == MAP_FAILED)
    throw std::invalid_argument("cannot map " + path + ": " + strerror(err));
  data_ = static_cast<const uint8_t*>(p);
  Scan(fallback_bitrate);
  if (packets_per_loop_ == 0) {
    munmap(const_cast<uint8_t*>(data_), size_);
    data_ = nullptr;
    throw std::invalid_argument(path + " holds no transport stream packets");
  }
  cc_offset_.assign(0x2000, 0);
  last_cc_.assign(0x2000, -1);
  need_offset_.assign(0x2000, 0);
}

FileTsSource::~FileTsSource() {
  if (data_) munmap(const_cast<uint8_t*>(data_), size_);
}

size_t FileTsSource::NextPacket(size_t pos) const {
  // A sync byte counts when another follows one packet later, or when no
  // further whole packet fits.
  while (pos + kTsPacketSize <= size_) {
    if (data_[pos] == kTsSync &&
        (pos + 2 * kTsPacketSize > size_ || data_[pos + kTsPacketSize] == kTsSync))
      return pos;
    ++pos;
  }
  return size_;
}

void FileTsSource::Scan(uint64_t fallback_bitrate) {
  int pcr_pid = -1;
  int first_es_pid = -1;
  std::vector<std::pair<uint64_t, uint64_t>> pcrs;  // ordinal, PCR
  uint64_t ordinal = 0;
  for (size_t pos = NextPacket(0); pos < size_;
       pos = NextPacket(pos + kTsPacketSize), ++ordinal) {
    const uint8_t* p = data_ + pos;
    uint16_t pid = TsPid(p);
    if (first_es_pid < 0 && pid >= 0x20 && pid != kNullPid) first_es_pid = pid;
    uint64_t pcr;
    if (TsReadPcr(p, &pcr)) {
      if (pcr_pid < 0) pcr_pid = pid;
      if (pid == pcr_pid) pcrs.emplace_back(ordinal, pcr);
    }
  }
  packets_per_loop_ = ordinal;
  default_pid_ = static_cast<uint16_t>(
      pcr_pid >= 0 ? pcr_pid : (first_es_pid >= 0 ? first_es_pid : kPatPid));
  uint64_t total_packets = 0;
  uint64_t total_ticks = 0;
  for (size_t i = 1; i < pcrs.size(); ++i) {
    uint64_t packets = pcrs[i].first - pcrs[i - 1].first;
    uint64_t ticks = (pcrs[i].second + kPcrWrap - pcrs[i - 1].second) % kPcrWrap;
    if (packets == 0 || ticks == 0) continue;
    uint64_t rate = RateOf(packets, ticks);
    if (rate < kMinRate || rate > kMaxRate) continue;  // a PCR jump
    segments_.push_back({pcrs[i - 1].first, pcrs[i].first, rate});
    total_packets += packets;
    total_ticks += ticks;
  }
  if (total_ticks)
    average_rate_ = RateOf(total_packets, total_ticks);
  else
    average_rate_ = fallback_bitrate ? fallback_bitrate : kDefaultRate;
}

const FileTsSource::Segment* FileTsSource::SegmentAt(uint64_t ordinal) const {
  auto it = std::upper_bound(
      segments_.begin(), segments_.end(), ordinal,
      [](uint64_t o, const Segment& s) { return o < s.begin; });
  if (it == segments_.begin()) return nullptr;
  --it;
  return ordinal < it->end ? &*it : nullptr;
}

uint64_t FileTsSource::RateBps() const {
  if (override_rate_) return override_rate_;
  const Segment* s = SegmentAt(ordinal_ % packets_per_loop_);
  return s ? s->rate : average_rate_;
}

size_t FileTsSource::PacketsAtCurrentRate() const {
  if (override_rate_) return SIZE_MAX;
  uint64_t o = ordinal_ % packets_per_loop_;
  if (const Segment* s = SegmentAt(o)) return static_cast<size_t>(s->end - o);
  auto next = std::upper_bound(
      segments_.begin(), segments_.end(), o,
      [](uint64_t v, const Segment& s) { return v < s.begin; });
  uint64_t end = next == segments_.end() ? packets_per_loop_ : next->begin;
  return static_cast<size_t>(end - o);
}

void FileTsSource::Generate(size_t n, std::vector<uint8_t>* out) {
  size_t base = out->size();
  out->resize(base + n * kTsPacketSize);
  for (size_t i = 0; i < n; ++i) {
    if (ordinal_ >= packets_per_loop_) {
      // The loop point: each PID continues from its last counter.
      ordinal_ = 0;
      pos_ = 0;
      std::fill(need_offset_.begin(), need_offset_.end(), 1);
    }
    size_t pos = NextPacket(pos_);
    uint8_t* p = out->data() + base + i * kTsPacketSize;
    memcpy(p, data_ + pos, kTsPacketSize);
    pos_ = pos + kTsPacketSize;
    ++ordinal_;
    uint16_t pid = TsPid(p);
    if (pid == kNullPid) continue;
    uint8_t in_cc = TsCc(p);
    if (need_offset_[pid] && TsHasPayload(p)) {
      need_offset_[pid] = 0;
      if (last_cc_[pid] >= 0)
        cc_offset_[pid] = static_cast<uint8_t>((last_cc_[pid] + 1 - in_cc) & 0x0F);
    }
    uint8_t out_cc = static_cast<uint8_t>((in_cc + cc_offset_[pid]) & 0x0F);
    TsSetCc(p, out_cc);
    if (TsHasPayload(p)) last_cc_[pid] = static_cast<int8_t>(out_cc);
  }
}

}  // namespace sim
}  // namespace dmx
