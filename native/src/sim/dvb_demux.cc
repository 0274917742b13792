#include "dvb_demux.h"

#include <errno.h>
#include <linux/dvb/dmx.h>
#include <string.h>

#include <algorithm>

#include "ts_packet.h"

namespace dmx {
namespace sim {

namespace {

constexpr int kFeedNum = 256;    // vidtv: demux.feednum
constexpr int kFilterNum = 256;  // vidtv: demux.filternum
constexpr int kMaskMax = 18;     // DVB_DEMUX_MASK_MAX
constexpr size_t kMaxSectionSize = 4096;                    // DMX_MAX_SECTION_SIZE
constexpr size_t kMaxSecfeedSize = kMaxSectionSize + 188;   // DMX_MAX_SECFEED_SIZE
constexpr uint16_t kAllPids = 0x2000;

// payload() in dvb_demux.c: the payload length, 0 for none or corrupt.
size_t PayloadCount(const uint8_t* tsp) {
  if (!(tsp[3] & 0x10)) return 0;
  if (tsp[3] & 0x20) {
    if (tsp[4] > 183) return 0;
    return 184 - 1 - tsp[4];
  }
  return 184;
}

}  // namespace

struct SwDemux::SectionFilter {
  void* owner = nullptr;
  uint8_t value[kMaskMax] = {};
  uint8_t mask[kMaskMax] = {};
  uint8_t mode[kMaskMax] = {};
  uint8_t maskandmode[kMaskMax] = {};
  uint8_t maskandnotmode[kMaskMax] = {};
  bool doneq = false;
};

struct SwDemux::Feed {
  enum class Type { kTs, kSection };
  Type type = Type::kTs;
  void* owner = nullptr;  // TS feeds: the dmxdev filter
  uint16_t pid = 0xFFFF;
  int ts_type = 0;
  int pes_type = DMX_PES_OTHER;
  bool is_filtering = false;
  uint32_t buffer_flags = 0;
  // Fresh (zeroed) feed memory, as with init_on_alloc: the first packet is
  // in sequence when its CC is 1.
  uint8_t cc = 0;
  uint16_t peslen = 0xFFFA;
  // Section feeds.
  bool check_crc = false;
  bool pusi_seen = false;
  std::vector<std::unique_ptr<SectionFilter>> filters;  // newest first
  uint8_t secbuf_base[kMaxSecfeedSize + kMaskMax] = {};
  size_t tsfeedp = 0;
  size_t secbufp = 0;
  size_t seclen = 0;
};

SwDemux::SwDemux(DemuxCallbacks* callbacks, bool tscheck)
    : callbacks_(callbacks), tscheck_(tscheck) {
  for (uint16_t& p : pids_) p = 0xFFFF;
}

SwDemux::~SwDemux() = default;

bool SwDemux::FeedInList(const Feed* feed) const {
  return std::find(feed_list_.begin(), feed_list_.end(), feed) !=
         feed_list_.end();
}

int SwDemux::StartTsFeed(void* owner, uint16_t pid, int ts_type,
                         int pes_type, Feed** out) {
  // dvbdmx_allocate_ts_feed(): one feed and one filter from the pools.
  if (feeds_.size() >= static_cast<size_t>(kFeedNum)) return -EBUSY;
  if (filters_in_use_ >= kFilterNum) return -EBUSY;
  auto owned = std::make_unique<Feed>();
  Feed* feed = owned.get();
  feed->type = Feed::Type::kTs;
  feed->owner = owner;
  feeds_.push_back(std::move(owned));
  ++filters_in_use_;
  // dmx_ts_feed_set()
  int r = 0;
  if (pid > kAllPids) {
    r = -EINVAL;
  } else if (ts_type & kTsDecoder) {
    if (pes_type >= DMX_PES_OTHER) {
      r = -EINVAL;
    } else if (pesfilter_[pes_type] && pesfilter_[pes_type] != feed) {
      r = -EINVAL;
    } else {
      pesfilter_[pes_type] = feed;
      pids_[pes_type] = pid;
    }
  }
  if (r != 0) {
    ReleaseTsFeed(feed);
    return r;
  }
  feed_list_.insert(feed_list_.begin(), feed);  // list_add()
  feed->pid = pid;
  feed->ts_type = ts_type;
  feed->pes_type = pes_type;
  // dmx_ts_feed_start_filtering() -> vidtv_start_feed()
  feed->is_filtering = true;
  ++started_feeds_;
  *out = feed;
  return 0;
}

void SwDemux::ReleaseTsFeed(Feed* feed) {
  if (feed->is_filtering) {
    feed->is_filtering = false;
    --started_feeds_;
  }
  auto it = std::find(feed_list_.begin(), feed_list_.end(), feed);
  if (it != feed_list_.end()) feed_list_.erase(it);
  if ((feed->ts_type & kTsDecoder) && feed->pes_type < DMX_PES_OTHER &&
      pesfilter_[feed->pes_type] == feed)
    pesfilter_[feed->pes_type] = nullptr;  // pids[] stay, as in the kernel
  --filters_in_use_;
  feeds_.erase(std::find_if(feeds_.begin(), feeds_.end(),
                            [feed](const std::unique_ptr<Feed>& f) {
                              return f.get() == feed;
                            }));
}

int SwDemux::AllocateSectionFeed(uint16_t pid, bool check_crc, Feed** out) {
  if (feeds_.size() >= static_cast<size_t>(kFeedNum)) return -EBUSY;
  // dmx_section_feed_set()
  if (pid > 0x1FFF) return -EINVAL;
  auto owned = std::make_unique<Feed>();
  Feed* feed = owned.get();
  feed->type = Feed::Type::kSection;
  feed->pid = pid;
  feed->check_crc = check_crc;
  feeds_.push_back(std::move(owned));
  feed_list_.insert(feed_list_.begin(), feed);
  *out = feed;
  return 0;
}

void SwDemux::ReleaseSectionFeed(Feed* feed) {
  StopSectionFeed(feed);
  filters_in_use_ -= static_cast<int>(feed->filters.size());
  auto it = std::find(feed_list_.begin(), feed_list_.end(), feed);
  if (it != feed_list_.end()) feed_list_.erase(it);
  feeds_.erase(std::find_if(feeds_.begin(), feeds_.end(),
                            [feed](const std::unique_ptr<Feed>& f) {
                              return f.get() == feed;
                            }));
}

int SwDemux::AllocateSectionFilter(Feed* feed, void* owner,
                                   const uint8_t* value, const uint8_t* mask,
                                   const uint8_t* mode, SectionFilter** out) {
  if (filters_in_use_ >= kFilterNum) return -EBUSY;
  auto f = std::make_unique<SectionFilter>();
  f->owner = owner;
  memcpy(f->value, value, kMaskMax);
  memcpy(f->mask, mask, kMaskMax);
  memcpy(f->mode, mode, kMaskMax);
  *out = f.get();
  feed->filters.insert(feed->filters.begin(), std::move(f));
  ++filters_in_use_;
  return 0;
}

void SwDemux::ReleaseSectionFilter(Feed* feed, SectionFilter* filter) {
  auto it = std::find_if(feed->filters.begin(), feed->filters.end(),
                         [filter](const std::unique_ptr<SectionFilter>& f) {
                           return f.get() == filter;
                         });
  if (it == feed->filters.end()) return;
  if (feed->is_filtering) StopSectionFeed(feed);
  feed->filters.erase(it);
  --filters_in_use_;
}

void SwDemux::PrepareSectionFilters(Feed* feed) {
  // prepare_secfilters()
  for (auto& f : feed->filters) {
    bool doneq = false;
    for (int i = 0; i < kMaskMax; ++i) {
      uint8_t mode = f->mode[i];
      uint8_t mask = f->mask[i];
      f->maskandmode[i] = mask & mode;
      f->maskandnotmode[i] = mask & static_cast<uint8_t>(~mode);
      doneq |= f->maskandnotmode[i] != 0;
    }
    f->doneq = doneq;
  }
}

int SwDemux::StartSectionFeed(Feed* feed) {
  // dmx_section_feed_start_filtering()
  if (feed->is_filtering) return -EBUSY;
  if (feed->filters.empty()) return -EINVAL;
  feed->tsfeedp = 0;
  feed->secbufp = 0;
  feed->seclen = 0;
  feed->pusi_seen = false;
  PrepareSectionFilters(feed);
  feed->is_filtering = true;
  ++started_feeds_;
  return 0;
}

void SwDemux::StopSectionFeed(Feed* feed) {
  if (!feed->is_filtering) return;
  feed->is_filtering = false;
  --started_feeds_;
}

bool SwDemux::SectionFeedFiltering(const Feed* feed) const {
  return feed->is_filtering;
}

void SwDemux::GetPesPids(uint16_t pids[5]) const {
  memcpy(pids, pids_, 5 * sizeof(uint16_t));
}

void SwDemux::FeedPackets(const uint8_t* buf, size_t count) {
  // dvb_dmx_swfilter_packets()
  for (size_t i = 0; i < count; ++i, buf += kTsPacketSize)
    if (buf[0] == kTsSync) Packet(buf);
}

void SwDemux::Packet(const uint8_t* buf) {
  // dvb_dmx_swfilter_packet()
  uint16_t pid = TsPid(buf);
  if (buf[1] & 0x80) {
    for (Feed* f : feed_list_)
      if (f->pid == pid || f->pid == kAllPids)
        f->buffer_flags |= DMX_BUFFER_FLAG_TEI;
    // dvb_demux_feed_err_pkts = 1: the packet is still delivered.
  } else if (tscheck_ && pid < 0x1FFF) {
    if (buf[3] & 0x10)
      cnt_storage_[pid] = static_cast<uint8_t>((cnt_storage_[pid] + 1) & 0x0F);
    if ((buf[3] & 0x0F) != cnt_storage_[pid]) {
      for (Feed* f : feed_list_)
        if (f->pid == pid || f->pid == kAllPids)
          f->buffer_flags |= DMX_BUFFER_PKT_COUNTER_MISMATCH;
      cnt_storage_[pid] = buf[3] & 0x0F;
    }
  }
  int dvr_done = 0;
  for (Feed* f : feed_list_) {
    if (f->pid != pid && f->pid != kAllPids) continue;
    // Each packet goes to the DVR once, even if several feeds ask for it.
    bool dvr_feed = f->type == Feed::Type::kTs && f->is_filtering &&
                    (f->ts_type & (kTsPacket | kTsDemux)) == kTsPacket;
    if (dvr_feed && dvr_done++) continue;
    if (f->pid == pid)
      PacketType(f, buf);
    else
      callbacks_->TsCallback(f->owner, buf, kTsPacketSize, &f->buffer_flags);
  }
}

void SwDemux::PacketType(Feed* feed, const uint8_t* buf) {
  // dvb_dmx_swfilter_packet_type()
  if (feed->type == Feed::Type::kTs) {
    if (!feed->is_filtering) return;
    if (feed->ts_type & kTsPacket) {
      if (feed->ts_type & kTsPayloadOnly)
        Payload(feed, buf);
      else
        callbacks_->TsCallback(feed->owner, buf, kTsPacketSize,
                               &feed->buffer_flags);
    }
    return;
  }
  if (!feed->is_filtering) return;
  if (SectionPacket(feed, buf) < 0) feed->seclen = feed->secbufp = 0;
}

void SwDemux::Payload(Feed* feed, const uint8_t* buf) {
  // dvb_dmx_swfilter_payload(): the only TS path with a CC check.
  size_t count = PayloadCount(buf);
  if (count == 0) return;
  size_t p = 188 - count;
  uint8_t cc = buf[3] & 0x0F;
  if (((feed->cc + 1) & 0x0F) != cc)
    feed->buffer_flags |= DMX_BUFFER_FLAG_DISCONTINUITY_DETECTED;
  feed->cc = cc;
  if (buf[1] & 0x40) feed->peslen = 0xFFFA;
  feed->peslen = static_cast<uint16_t>(feed->peslen + count);
  callbacks_->TsCallback(feed->owner, buf + p, count, &feed->buffer_flags);
}

void SwDemux::SectionNew(Feed* feed) {
  // dvb_dmx_swfilter_section_new()
  if (feed->secbufp < feed->tsfeedp) {
    size_t n = feed->tsfeedp - feed->secbufp;
    const uint8_t* secbuf = feed->secbuf_base + feed->secbufp;
    if (secbuf[0] != 0xFF || secbuf[n - 1] != 0xFF)
      feed->buffer_flags |= DMX_BUFFER_FLAG_DISCONTINUITY_DETECTED;
  }
  feed->tsfeedp = feed->secbufp = feed->seclen = 0;
}

void SwDemux::SectionCopyDump(Feed* feed, const uint8_t* buf, size_t len) {
  // dvb_dmx_swfilter_section_copy_dump()
  if (feed->tsfeedp >= kMaxSecfeedSize) return;
  if (feed->tsfeedp + len > kMaxSecfeedSize) {
    feed->buffer_flags |= DMX_BUFFER_FLAG_DISCONTINUITY_DETECTED;
    len = kMaxSecfeedSize - feed->tsfeedp;
  }
  if (len == 0) return;
  memcpy(feed->secbuf_base + feed->tsfeedp, buf, len);
  feed->tsfeedp += len;
  size_t limit = feed->tsfeedp;
  while (feed->secbufp + 2 < limit) {
    const uint8_t* secbuf = feed->secbuf_base + feed->secbufp;
    size_t seclen = 3 + ((secbuf[1] & 0x0F) << 8) + secbuf[2];
    if (seclen > kMaxSectionSize || seclen + feed->secbufp > limit) return;
    feed->seclen = seclen;
    if (feed->pusi_seen)
      SectionFeedOut(feed);
    else
      feed->buffer_flags |= DMX_BUFFER_FLAG_DISCONTINUITY_DETECTED;
    feed->secbufp += seclen;
  }
}

int SwDemux::SectionPacket(Feed* feed, const uint8_t* buf) {
  // dvb_dmx_swfilter_section_packet()
  size_t count = PayloadCount(buf);
  if (count == 0) return -1;
  size_t p = 188 - count;
  uint8_t cc = buf[3] & 0x0F;
  bool ccok = ((feed->cc + 1) & 0x0F) == cc;
  bool dc_i = (buf[3] & 0x20) && buf[4] > 0 && (buf[5] & 0x80);
  if (!ccok || dc_i) {
    feed->buffer_flags |= dc_i ? DMX_BUFFER_FLAG_DISCONTINUITY_INDICATOR
                               : DMX_BUFFER_FLAG_DISCONTINUITY_DETECTED;
    feed->pusi_seen = false;
    SectionNew(feed);
  }
  feed->cc = cc;
  if (buf[1] & 0x40) {
    if (count > 1 && buf[p] < count) {
      const uint8_t* before = buf + p + 1;
      size_t before_len = buf[p];
      const uint8_t* after = before + before_len;
      size_t after_len = count - 1 - before_len;
      SectionCopyDump(feed, before, before_len);
      feed->pusi_seen = true;
      SectionNew(feed);
      SectionCopyDump(feed, after, after_len);
    } else {
      feed->buffer_flags |= DMX_BUFFER_FLAG_DISCONTINUITY_DETECTED;
    }
  } else {
    SectionCopyDump(feed, buf + p, count);
  }
  return 0;
}

void SwDemux::SectionFeedOut(Feed* feed) {
  // dvb_dmx_swfilter_section_feed()
  if (!feed->is_filtering || feed->filters.empty()) return;
  const uint8_t* secbuf = feed->secbuf_base + feed->secbufp;
  if (feed->check_crc) {
    bool syntax = (secbuf[1] & 0x80) != 0;
    if (syntax && Crc32Mpeg(secbuf, feed->seclen) != 0) {
      feed->buffer_flags |= DMX_BUFFER_FLAG_HAD_CRC32_DISCARD;
      return;
    }
  }
  // dvb_dmx_swfilter_sectionfilter() for each filter, newest first. A
  // callback cannot change the filter list (it only fills buffers).
  for (auto& f : feed->filters) {
    if (!feed->is_filtering) break;
    uint8_t neq = 0;
    bool match = true;
    for (int i = 0; i < kMaskMax; ++i) {
      uint8_t x = f->value[i] ^ secbuf[i];
      if (f->maskandmode[i] & x) {
        match = false;
        break;
      }
      neq |= f->maskandnotmode[i] & x;
    }
    if (!match || (f->doneq && !neq)) continue;
    callbacks_->SectionCallback(f->owner, secbuf, feed->seclen,
                                &feed->buffer_flags);
  }
  feed->seclen = 0;
}

}  // namespace sim
}  // namespace dmx
