// The demux and DVR character devices of one adapter:
// drivers/media/dvb-core/dmxdev.c. Each open demux fd is a filter (section
// or PES) with its own ring buffer (read()) and memory-mapped queue
// (DMX_REQBUFS...); the DVR has one ring buffer and one queue per adapter.
//
// Locking follows the kernel because its effects are visible: the
// adapter-wide dmxdev->mutex (a ModelMutex here) is taken by every demux
// and DVR ioctl, open, mmap and release, and a blocking DMX_DQBUF sleeps
// holding it; a filter's own mutex is taken by read() and the filter
// ioctls. Every method runs with the adapter's instance mutex held (`lock`)
// and may wait on the instance's condition variable.
#pragma once

#include <atomic>
#include <sys/ioctl.h>  // before dmx.h, which needs _IOR

#include <linux/dvb/dmx.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "dvb_demux.h"
#include "dvb_ringbuffer.h"
#include "dvb_vb2.h"
#include "sim_file.h"

namespace dmx {

struct SimAdapterStats;

namespace sim {

// One open demux fd (struct dmxdev_filter).
struct DmxdevFilter {
  enum class State { kFree, kAllocated, kSet, kGo, kDone, kTimedOut };
  enum class Type { kNone, kSection, kPes };
  struct PesFeed {
    uint16_t pid;
    SwDemux::Feed* ts = nullptr;  // null until started
  };

  std::string path;
  State state = State::kAllocated;
  Type type = Type::kNone;
  struct dmx_sct_filter_params sec = {};
  struct dmx_pes_filter_params pes = {};
  std::vector<PesFeed> feeds;  // newest first, as list_add()
  SwDemux::Feed* sec_feed = nullptr;
  SwDemux::SectionFilter* sec_filter = nullptr;
  DvbRingBuffer buffer;
  DvbVb2Ctx vb2;
  ModelMutex mutex;  // dmxdevfilter->mutex
  int todo = 0;      // dvb_dmxdev_read_sec() state
  uint8_t secheader[3] = {};
  uint64_t timeout_at_ns = 0;  // the section filter timer, 0 when off
  uint64_t bytes_delivered = 0;
  uint64_t bytes_dropped_no_buffer = 0;
};

class Dmxdev : public DemuxCallbacks {
 public:
  // `mmap_enabled`: CONFIG_DVB_MMAP. `exportable`: the queues' allocator
  // can export DMABUFs.
  // The next `n` vb2 buffer allocations on this adapter fail.
  void FailAllocations(uint32_t n) { alloc_failures_ += n; }

  Dmxdev(SimInstance* instance, bool mmap_enabled, bool exportable,
         bool tscheck, std::string dvr_path);
  ~Dmxdev() override;

  // Demux fds (dvb_demux_*).
  int DemuxOpen(std::unique_lock<std::mutex>& lock, int flags,
                const std::string& path, DmxdevFilter** out);
  void DemuxRelease(std::unique_lock<std::mutex>& lock, DmxdevFilter* f);
  int DemuxIoctl(std::unique_lock<std::mutex>& lock, const SimFile* file,
                 DmxdevFilter* f, unsigned long cmd, void* arg);
  ssize_t DemuxRead(std::unique_lock<std::mutex>& lock, const SimFile* file,
                    DmxdevFilter* f, uint8_t* buf, size_t count);
  int DemuxMmap(std::unique_lock<std::mutex>& lock, const SimFile* file,
                DmxdevFilter* f, size_t length, int prot, int flags,
                off_t offset, void** out);
  short DemuxPoll(const DmxdevFilter* f, short events) const;

  // The DVR fd (dvb_dvr_*); `flags` are the file's open flags.
  int DvrOpen(std::unique_lock<std::mutex>& lock, int flags);
  void DvrRelease(std::unique_lock<std::mutex>& lock, int flags);
  int DvrIoctl(std::unique_lock<std::mutex>& lock, const SimFile* file,
               unsigned long cmd, void* arg);
  ssize_t DvrRead(std::unique_lock<std::mutex>& lock, const SimFile* file,
                  uint8_t* buf, size_t count);
  int DvrMmap(std::unique_lock<std::mutex>& lock, const SimFile* file,
              size_t length, int prot, int flags, off_t offset, void** out);
  short DvrPoll(int file_flags, short events) const;

  // Received packets, from the producer thread.
  void FeedPackets(const uint8_t* buf, size_t count) {
    demux_.FeedPackets(buf, count);
  }
  // vidtv's mux runs while any feed is started.
  bool AnyFeedStarted() const { return demux_.started_feeds() > 0; }
  // Fires the section timers due by `now_ns`; returns the next deadline
  // (0: none).
  uint64_t ProcessTimeouts(uint64_t now_ns);
  void AppendStats(SimAdapterStats* out) const;

  // DemuxCallbacks
  void TsCallback(void* owner, const uint8_t* data, size_t len,
                  uint32_t* buffer_flags) override;
  void SectionCallback(void* owner, const uint8_t* data, size_t len,
                       uint32_t* buffer_flags) override;

 private:
  int FilterStart(DmxdevFilter* f);
  int FilterStop(DmxdevFilter* f);
  void FilterReset(DmxdevFilter* f);
  void StopPesFeeds(DmxdevFilter* f);
  void FeedRestart(DmxdevFilter* f);
  int StartPesFeed(DmxdevFilter* f, DmxdevFilter::PesFeed* feed);
  int SetFilter(DmxdevFilter* f, const struct dmx_sct_filter_params* p);
  int SetPesFilter(DmxdevFilter* f, const struct dmx_pes_filter_params* p);
  int AddPid(DmxdevFilter* f, uint16_t pid);
  int RemovePid(DmxdevFilter* f, uint16_t pid);
  int SetBufferSize(DmxdevFilter* f, unsigned long size);
  // The five memory-mapped ioctls on either queue; DQBUF may sleep.
  int Vb2Ioctl(std::unique_lock<std::mutex>& lock, const SimFile* file,
               DvbVb2Ctx* ctx, unsigned long cmd, void* arg);
  // dvb_dmxdev_buffer_read()
  ssize_t BufferRead(std::unique_lock<std::mutex>& lock, const SimFile* file,
                     DvbRingBuffer* src, bool nonblocking, uint8_t* buf,
                     size_t count);
  ssize_t ReadSection(std::unique_lock<std::mutex>& lock, const SimFile* file,
                      DmxdevFilter* f, uint8_t* buf, size_t count);

  SimInstance* instance_;
  const bool mmap_enabled_;
  const bool exportable_;
  // Buffer allocations still to fail (SimFault kAllocFail), shared by every
  // vb2 context of the adapter.
  std::atomic<uint32_t> alloc_failures_{0};
  const std::string dvr_path_;
  SwDemux demux_;
  ModelMutex mutex_;  // dmxdev->mutex
  // One flag per adapter that every demux or DVR open overwrites.
  bool may_do_mmap_ = false;
  std::vector<std::unique_ptr<DmxdevFilter>> filters_;  // open demux fds
  int dvr_readers_ = 1;  // dvbdev->readers of the DVR node
  DvbRingBuffer dvr_buffer_;
  DvbVb2Ctx dvr_vb2_;
  uint64_t dvr_delivered_ = 0;
  uint64_t dvr_dropped_ = 0;
  uint64_t total_delivered_ = 0;  // every filter and the DVR, ever
  uint64_t total_dropped_ = 0;
};

}  // namespace sim
}  // namespace dmx
