// The software demux: drivers/media/dvb-core/dvb_demux.c, the layer below
// dmxdev. It holds the feeds (one per PID and output, TS or section), runs
// every received packet through them and hands the result to dmxdev's
// callbacks: whole packets or payloads for TS feeds, complete sections for
// section feeds. The per-feed buffer_flags it sets (TEI, discontinuity,
// CRC discard) travel with the next callback, which is how the kernel gets
// them onto the next dequeued buffer.
//
// Note what dvb_demux.c does NOT do, and so neither does this: TS-packet
// feeds (DMX_OUT_TS_TAP, DMX_OUT_TSDEMUX_TAP) get no continuity check; only
// payload feeds (DMX_OUT_TAP) and section feeds flag
// DMX_BUFFER_FLAG_DISCONTINUITY_DETECTED. DMX_BUFFER_PKT_COUNTER_MISMATCH
// needs the dvb_demux_tscheck module parameter.
//
// Not thread safe: the owning adapter's mutex guards every call.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <memory>
#include <vector>

namespace dmx {
namespace sim {

// dvb_demux_feed.ts_type bits (include/media/demux.h).
enum : int {
  kTsPacket = 1,
  kTsPayloadOnly = 2,
  kTsDecoder = 4,
  kTsDemux = 8,
};

// dmxdev's side of the demux callbacks; `owner` is what the feed was
// started for (a dmxdev filter).
class DemuxCallbacks {
 public:
  virtual ~DemuxCallbacks() = default;
  virtual void TsCallback(void* owner, const uint8_t* data, size_t len,
                          uint32_t* buffer_flags) = 0;
  virtual void SectionCallback(void* owner, const uint8_t* data, size_t len,
                               uint32_t* buffer_flags) = 0;
};

class SwDemux {
 public:
  struct Feed;
  struct SectionFilter;

  SwDemux(DemuxCallbacks* callbacks, bool tscheck);
  ~SwDemux();
  SwDemux(const SwDemux&) = delete;
  SwDemux& operator=(const SwDemux&) = delete;

  // dvb_dmxdev_start_feed(): allocate_ts_feed, set, start_filtering.
  // -EBUSY when the feed pool (256) is exhausted, -EINVAL for a PID above
  // 0x2000 or a decoder PES type already taken.
  int StartTsFeed(void* owner, uint16_t pid, int ts_type, int pes_type,
                  Feed** out);
  // stop_filtering + release_ts_feed.
  void ReleaseTsFeed(Feed* feed);

  // allocate_section_feed + set: -EBUSY, -EINVAL (PID above 0x1fff).
  int AllocateSectionFeed(uint16_t pid, bool check_crc, Feed** out);
  void ReleaseSectionFeed(Feed* feed);
  // allocate_filter on a section feed: -EBUSY when the filter pool is out.
  // value/mask/mode are the 18-byte dvb_demux filter arrays.
  int AllocateSectionFilter(Feed* feed, void* owner, const uint8_t* value,
                            const uint8_t* mask, const uint8_t* mode,
                            SectionFilter** out);
  void ReleaseSectionFilter(Feed* feed, SectionFilter* filter);
  // start_filtering (resets reassembly) / stop_filtering.
  int StartSectionFeed(Feed* feed);
  void StopSectionFeed(Feed* feed);
  bool SectionFeedFiltering(const Feed* feed) const;

  // dvb_dmx_swfilter_packets(): `count` packets of 188 bytes.
  void FeedPackets(const uint8_t* buf, size_t count);

  // vidtv counts started feeds (nfeeds) and runs its mux only while > 0.
  int started_feeds() const { return started_feeds_; }
  // DMX_GET_PES_PIDS
  void GetPesPids(uint16_t pids[5]) const;

 private:
  void Packet(const uint8_t* buf);
  void PacketType(Feed* feed, const uint8_t* buf);
  void Payload(Feed* feed, const uint8_t* buf);
  int SectionPacket(Feed* feed, const uint8_t* buf);
  void SectionNew(Feed* feed);
  void SectionCopyDump(Feed* feed, const uint8_t* buf, size_t len);
  void SectionFeedOut(Feed* feed);
  void PrepareSectionFilters(Feed* feed);
  bool FeedInList(const Feed* feed) const;

  DemuxCallbacks* callbacks_;
  const bool tscheck_;
  std::vector<Feed*> feed_list_;  // demux->feed_list, newest first
  std::vector<std::unique_ptr<Feed>> feeds_;  // owned, allocated ones
  int filters_in_use_ = 0;        // demux->filter pool (256)
  int started_feeds_ = 0;
  Feed* pesfilter_[20] = {};      // demux->pesfilter[DMX_PES_OTHER]
  uint16_t pids_[20];
  uint8_t cnt_storage_[0x2000] = {};  // dvb_demux_tscheck
};

}  // namespace sim
}  // namespace dmx
