#include "dmxdev.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>

#include <algorithm>
#include <new>

#include "sim_sys.h"

namespace dmx {
namespace sim {

namespace {

constexpr int kFilterNum = 256;  // vidtv: dmx_dev.filternum
constexpr size_t kDemuxRingSize = 8192;
constexpr size_t kDvrBufferSize = 10 * 188 * 1024;  // DVR_BUFFER_SIZE

bool IsMmapIoctl(unsigned long cmd) {
  return cmd == DMX_REQBUFS || cmd == DMX_QUERYBUF || cmd == DMX_EXPBUF ||
         cmd == DMX_QBUF || cmd == DMX_DQBUF;
}

short RingPollMask(const DvbRingBuffer& b) {
  short mask = 0;
  if (b.error()) mask |= POLLIN | POLLRDNORM | POLLPRI | POLLERR;
  if (!b.empty()) mask |= POLLIN | POLLRDNORM | POLLPRI;
  return mask;
}

}  // namespace

Dmxdev::Dmxdev(SimInstance* instance, bool mmap_enabled, bool exportable,
               bool tscheck, std::string dvr_path)
    : instance_(instance),
      mmap_enabled_(mmap_enabled),
      exportable_(exportable),
      dvr_path_(std::move(dvr_path)),
      demux_(this, tscheck) {
  dvr_buffer_.Init(kDemuxRingSize);  // dvb_dmxdev_init()
}

Dmxdev::~Dmxdev() = default;

// ---------------------------------------------------------------------------
// Demux fds

int Dmxdev::DemuxOpen(std::unique_lock<std::mutex>& lock, int flags,
                      const std::string& path, DmxdevFilter** out) {
  int r = mutex_.Lock(lock, *instance_, nullptr);
  if (r != 0) return r;
  ModelMutexGuard guard(mutex_, *instance_);
  if (filters_.size() >= static_cast<size_t>(kFilterNum)) return -EMFILE;
  // dvb_demux_open(): every demux open says "mmap is fine" again.
  may_do_mmap_ = mmap_enabled_;
  auto f = std::make_unique<DmxdevFilter>();
  f->path = path;
  f->buffer.Init(kDemuxRingSize);
  f->vb2.Init((flags & O_NONBLOCK) != 0, exportable_, &alloc_failures_);
  f->state = DmxdevFilter::State::kAllocated;
  *out = f.get();
  filters_.push_back(std::move(f));
  return 0;
}

void Dmxdev::DemuxRelease(std::unique_lock<std::mutex>& lock,
                          DmxdevFilter* f) {
  // dvb_dmxdev_filter_free(): uninterruptible locks.
  mutex_.LockUninterruptible(lock, *instance_);
  f->mutex.LockUninterruptible(lock, *instance_);
  f->vb2.Release();
  FilterStop(f);
  FilterReset(f);
  f->buffer.Free();
  f->state = DmxdevFilter::State::kFree;
  f->mutex.Unlock(*instance_);
  mutex_.Unlock(*instance_);
  filters_.erase(std::find_if(filters_.begin(), filters_.end(),
                              [f](const std::unique_ptr<DmxdevFilter>& p) {
                                return p.get() == f;
                              }));
}

int Dmxdev::DemuxIoctl(std::unique_lock<std::mutex>& lock,
                       const SimFile* file, DmxdevFilter* f,
                       unsigned long cmd, void* arg) {
  int r = mutex_.Lock(lock, *instance_, file);
  if (r != 0) return r;
  ModelMutexGuard guard(mutex_, *instance_);
  if (cmd == DMX_GET_PES_PIDS) {
    demux_.GetPesPids(static_cast<uint16_t*>(arg));
    return 0;
  }
  if (cmd == DMX_GET_STC) return -EINVAL;  // vidtv has no get_stc
  bool known = cmd == DMX_START || cmd == DMX_STOP || cmd == DMX_SET_FILTER ||
               cmd == DMX_SET_PES_FILTER || cmd == DMX_SET_BUFFER_SIZE ||
               cmd == DMX_ADD_PID || cmd == DMX_REMOVE_PID ||
               (mmap_enabled_ && IsMmapIoctl(cmd));
  if (!known) return -ENOTTY;
  r = f->mutex.Lock(lock, *instance_, file);
  if (r != 0) return r;
  ModelMutexGuard fguard(f->mutex, *instance_);
  switch (cmd) {
    case DMX_START:
      if (f->state < DmxdevFilter::State::kSet) return -EINVAL;
      return FilterStart(f);
    case DMX_STOP:
      return FilterStop(f);
    case DMX_SET_FILTER:
      return SetFilter(f, static_cast<const struct dmx_sct_filter_params*>(arg));
    case DMX_SET_PES_FILTER:
      return SetPesFilter(f,
                          static_cast<const struct dmx_pes_filter_params*>(arg));
    case DMX_SET_BUFFER_SIZE:
      return SetBufferSize(f, reinterpret_cast<unsigned long>(arg));
    case DMX_ADD_PID:
      return AddPid(f, *static_cast<const uint16_t*>(arg));
    case DMX_REMOVE_PID:
      return RemovePid(f, *static_cast<const uint16_t*>(arg));
    default:
      return Vb2Ioctl(lock, file, &f->vb2, cmd, arg);
  }
}

int Dmxdev::Vb2Ioctl(std::unique_lock<std::mutex>& lock, const SimFile* file,
                     DvbVb2Ctx* ctx, unsigned long cmd, void* arg) {
  switch (cmd) {
    case DMX_REQBUFS:
      return ctx->Reqbufs(static_cast<struct dmx_requestbuffers*>(arg));
    case DMX_QUERYBUF:
      return ctx->Querybuf(static_cast<struct dmx_buffer*>(arg));
    case DMX_EXPBUF:
      return ctx->Expbuf(static_cast<struct dmx_exportbuffer*>(arg));
    case DMX_QBUF:
      return ctx->QbufAndStreamOn(static_cast<struct dmx_buffer*>(arg));
    case DMX_DQBUF: {
      // dvb_usercopy() works on a copy and writes it back on success only.
      struct dmx_buffer b = *static_cast<struct dmx_buffer*>(arg);
      for (;;) {
        int r = ctx->Dqbuf(&b);
        if (r != -EAGAIN || ctx->nonblocking()) {
          if (r == 0) *static_cast<struct dmx_buffer*>(arg) = b;
          return r;
        }
        // Sleeps holding dmxdev->mutex (and the filter's): every other
        // ioctl and open on this adapter waits meanwhile.
        r = WaitLocked(lock, *instance_, file,
                       [ctx] { return ctx->DqbufReady(); });
        if (r != 0) return r;
      }
    }
    default:
      return -ENOTTY;
  }
}

int Dmxdev::SetFilter(DmxdevFilter* f,
                      const struct dmx_sct_filter_params* p) {
  // dvb_dmxdev_filter_set()
  FilterStop(f);
  f->feeds.clear();  // the kernel leaks a PES filter's pid list here
  f->type = DmxdevFilter::Type::kSection;
  f->sec = *p;
  for (int i = 0; i < DMX_FILTER_SIZE; ++i) f->sec.filter.mode[i] ^= 0xFF;
  f->state = DmxdevFilter::State::kSet;
  if (p->flags & DMX_IMMEDIATE_START) return FilterStart(f);
  return 0;
}

int Dmxdev::SetPesFilter(DmxdevFilter* f,
                         const struct dmx_pes_filter_params* p) {
  // dvb_dmxdev_pes_filter_set(): stop and reset happen before validation.
  FilterStop(f);
  FilterReset(f);
  if (static_cast<unsigned>(p->pes_type) > DMX_PES_OTHER) return -EINVAL;
  f->type = DmxdevFilter::Type::kPes;
  f->pes = *p;
  f->feeds.clear();
  f->state = DmxdevFilter::State::kSet;
  int r = AddPid(f, p->pid);
  if (r < 0) return r;
  if (p->flags & DMX_IMMEDIATE_START) return FilterStart(f);
  return 0;
}

int Dmxdev::AddPid(DmxdevFilter* f, uint16_t pid) {
  // dvb_dmxdev_add_pid()
  if (f->type != DmxdevFilter::Type::kPes ||
      f->state < DmxdevFilter::State::kSet)
    return -EINVAL;
  // Only DMX_OUT_TSDEMUX_TAP filters may have several PIDs.
  if (f->pes.output != DMX_OUT_TSDEMUX_TAP && !f->feeds.empty())
    return -EINVAL;
  f->feeds.insert(f->feeds.begin(), DmxdevFilter::PesFeed{pid, nullptr});
  if (f->state >= DmxdevFilter::State::kGo)
    return StartPesFeed(f, &f->feeds.front());
  return 0;
}

int Dmxdev::RemovePid(DmxdevFilter* f, uint16_t pid) {
  // dvb_dmxdev_remove_pid(): only started feeds are removed.
  if (f->type != DmxdevFilter::Type::kPes ||
      f->state < DmxdevFilter::State::kSet)
    return -EINVAL;
  for (auto it = f->feeds.begin(); it != f->feeds.end();) {
    if (it->pid == pid && it->ts) {
      demux_.ReleaseTsFeed(it->ts);
      it = f->feeds.erase(it);
    } else {
      ++it;
    }
  }
  return 0;
}

int Dmxdev::SetBufferSize(DmxdevFilter* f, unsigned long size) {
  // dvb_dmxdev_set_buffer_size()
  if (f->buffer.size() == size) return 0;
  if (size == 0) return -EINVAL;
  if (f->state >= DmxdevFilter::State::kGo) return -EBUSY;
  try {
    f->buffer.Resize(size);
  } catch (const std::bad_alloc&) {
    return -ENOMEM;
  }
  return 0;
}

int Dmxdev::StartPesFeed(DmxdevFilter* f, DmxdevFilter::PesFeed* feed) {
  // dvb_dmxdev_start_feed()
  int ts_pes = f->pes.pes_type;
  int ts_type = ts_pes < DMX_PES_OTHER ? kTsDecoder : 0;
  switch (f->pes.output) {
    case DMX_OUT_TS_TAP:
      ts_type |= kTsPacket;
      break;
    case DMX_OUT_TSDEMUX_TAP:
      ts_type |= kTsPacket | kTsDemux;
      break;
    case DMX_OUT_TAP:
      ts_type |= kTsPacket | kTsDemux | kTsPayloadOnly;
      break;
    default:
      break;  // DMX_OUT_DECODER: no callback at all
  }
  return demux_.StartTsFeed(f, feed->pid, ts_type, ts_pes, &feed->ts);
}

void Dmxdev::StopPesFeeds(DmxdevFilter* f) {
  for (DmxdevFilter::PesFeed& feed : f->feeds) {
    if (feed.ts) demux_.ReleaseTsFeed(feed.ts);
    feed.ts = nullptr;
  }
}

int Dmxdev::FilterStart(DmxdevFilter* f) {
  // dvb_dmxdev_filter_start()
  if (f->state < DmxdevFilter::State::kSet) return -EINVAL;
  if (f->state >= DmxdevFilter::State::kGo) FilterStop(f);
  if (!f->buffer.has_data()) {
    try {
      f->buffer.Allocate();
    } catch (const std::bad_alloc&) {
      return -ENOMEM;
    }
  }
  f->buffer.Flush();
  if (f->type == DmxdevFilter::Type::kSection) {
    SwDemux::Feed* feed = nullptr;
    // A PID's section feed is shared by every started section filter.
    for (const auto& g : filters_) {
      if (g.get() != f && g->state >= DmxdevFilter::State::kGo &&
          g->type == DmxdevFilter::Type::kSection && g->sec.pid == f->sec.pid) {
        feed = g->sec_feed;
        break;
      }
    }
    if (!feed) {
      int r = demux_.AllocateSectionFeed(
          f->sec.pid, (f->sec.flags & DMX_CHECK_CRC) != 0, &feed);
      if (r < 0) return r;
    } else {
      // Joining a running feed stops it; the start below resets it.
      demux_.StopSectionFeed(feed);
    }
    f->sec_feed = feed;
    // The user's byte 0 is the table_id; bytes 1..15 match from section
    // byte 3 on, skipping the section length.
    uint8_t value[18] = {}, mask[18] = {}, mode[18] = {};
    value[0] = f->sec.filter.filter[0];
    mask[0] = f->sec.filter.mask[0];
    mode[0] = f->sec.filter.mode[0];
    memcpy(value + 3, f->sec.filter.filter + 1, DMX_FILTER_SIZE - 1);
    memcpy(mask + 3, f->sec.filter.mask + 1, DMX_FILTER_SIZE - 1);
    memcpy(mode + 3, f->sec.filter.mode + 1, DMX_FILTER_SIZE - 1);
    int r = demux_.AllocateSectionFilter(feed, f, value, mask, mode,
                                         &f->sec_filter);
    if (r < 0) {
      FeedRestart(f);
      f->sec_feed = nullptr;
      return r;
    }
    f->todo = 0;
    r = demux_.StartSectionFeed(feed);
    if (r < 0) return r;
    // dvb_dmxdev_filter_timer()
    f->timeout_at_ns =
        f->sec.timeout ? MonotonicNs() + uint64_t{f->sec.timeout} * 1000000 : 0;
  } else if (f->type == DmxdevFilter::Type::kPes) {
    for (DmxdevFilter::PesFeed& feed : f->feeds) {
      int r = StartPesFeed(f, &feed);
      if (r < 0) {
        // The kernel calls dvb_dmxdev_filter_stop() here, which does
        // nothing in state SET and leaves the feeds already started
        // running; the sim stops them.
        StopPesFeeds(f);
        return r;
      }
    }
  } else {
    return -EINVAL;
  }
  f->state = DmxdevFilter::State::kGo;
  instance_->ChangedLocked();
  return 0;
}

void Dmxdev::FeedRestart(DmxdevFilter* f) {
  // dvb_dmxdev_feed_restart(): hand the feed to another started filter of
  // the same PID, or release it.
  for (const auto& g : filters_) {
    if (g.get() != f && g->state >= DmxdevFilter::State::kGo &&
        g->type == DmxdevFilter::Type::kSection && g->sec.pid == f->sec.pid) {
      g->state = DmxdevFilter::State::kGo;
      demux_.StartSectionFeed(g->sec_feed);
      return;
    }
  }
  demux_.ReleaseSectionFeed(f->sec_feed);
}

int Dmxdev::FilterStop(DmxdevFilter* f) {
  // dvb_dmxdev_filter_stop()
  if (f->state < DmxdevFilter::State::kGo) return 0;
  if (f->type == DmxdevFilter::Type::kSection) {
    if (f->sec_feed) {
      f->state = DmxdevFilter::State::kSet;
      f->timeout_at_ns = 0;
      demux_.StopSectionFeed(f->sec_feed);
      if (f->sec_filter) demux_.ReleaseSectionFilter(f->sec_feed, f->sec_filter);
      f->sec_filter = nullptr;
      FeedRestart(f);
      f->sec_feed = nullptr;
    }
  } else if (f->type == DmxdevFilter::Type::kPes) {
    f->state = DmxdevFilter::State::kSet;
    StopPesFeeds(f);
  } else {
    return f->state == DmxdevFilter::State::kAllocated ? 0 : -EINVAL;
  }
  f->buffer.Flush();
  return 0;
}

void Dmxdev::FilterReset(DmxdevFilter* f) {
  // dvb_dmxdev_filter_reset()
  if (f->state < DmxdevFilter::State::kSet) return;
  if (f->type == DmxdevFilter::Type::kPes) f->feeds.clear();
  f->type = DmxdevFilter::Type::kNone;
  f->state = DmxdevFilter::State::kAllocated;
}

ssize_t Dmxdev::BufferRead(std::unique_lock<std::mutex>& lock,
                           const SimFile* file, DvbRingBuffer* src,
                           bool nonblocking, uint8_t* buf, size_t count) {
  // dvb_dmxdev_buffer_read()
  if (!src->has_data()) return 0;
  if (src->error()) {
    int e = src->error();
    src->Flush();
    return e;
  }
  size_t todo = count;
  ssize_t ret = 0;
  while (todo > 0) {
    if (nonblocking && src->empty()) {
      ret = -EWOULDBLOCK;
      break;
    }
    int r = WaitLocked(lock, *instance_, file, [src] {
      return !src->has_data() || !src->empty() || src->error() != 0;
    });
    if (r != 0) {
      ret = r;
      break;
    }
    if (!src->has_data()) break;
    if (src->error()) {
      ret = src->error();
      src->Flush();
      break;
    }
    size_t n = src->Read(buf, todo);
    buf += n;
    todo -= n;
    ret = static_cast<ssize_t>(n);
  }
  return (count - todo) ? static_cast<ssize_t>(count - todo) : ret;
}

ssize_t Dmxdev::ReadSection(std::unique_lock<std::mutex>& lock,
                            const SimFile* file, DmxdevFilter* f,
                            uint8_t* buf, size_t count) {
  // dvb_dmxdev_read_sec(): the first read of a section returns its 3-byte
  // header, later ones never run past the section's end.
  bool nb = file->NonblockingNow();
  ssize_t done = 0;
  if (f->todo <= 0) {
    size_t hcount = static_cast<size_t>(3 + f->todo);
    if (hcount > count) hcount = count;
    ssize_t result = BufferRead(lock, file, &f->buffer, nb, buf, hcount);
    if (result < 0) {
      f->todo = 0;
      return result;
    }
    memcpy(f->secheader - f->todo, buf, static_cast<size_t>(result));
    buf += result;
    done = result;
    count -= static_cast<size_t>(result);
    f->todo -= static_cast<int>(result);
    if (f->todo > -3) return done;
    f->todo = ((f->secheader[1] << 8) | f->secheader[2]) & 0xFFF;
    if (!count) return done;
  }
  if (count > static_cast<size_t>(f->todo)) count = static_cast<size_t>(f->todo);
  ssize_t result = BufferRead(lock, file, &f->buffer, nb, buf, count);
  if (result < 0) return result;
  f->todo -= static_cast<int>(result);
  return result + done;
}

ssize_t Dmxdev::DemuxRead(std::unique_lock<std::mutex>& lock,
                          const SimFile* file, DmxdevFilter* f, uint8_t* buf,
                          size_t count) {
  // dvb_demux_read(): the filter mutex only, kept while sleeping.
  int r = f->mutex.Lock(lock, *instance_, file);
  if (r != 0) return r;
  ModelMutexGuard guard(f->mutex, *instance_);
  if (f->type == DmxdevFilter::Type::kSection)
    return ReadSection(lock, file, f, buf, count);
  return BufferRead(lock, file, &f->buffer, file->NonblockingNow(), buf,
                    count);
}

int Dmxdev::DemuxMmap(std::unique_lock<std::mutex>& lock, const SimFile* file,
                      DmxdevFilter* f, size_t length, int prot, int flags,
                      off_t offset, void** out) {
  // dvb_demux_mmap()
  if (!mmap_enabled_) return -ENODEV;  // no .mmap without CONFIG_DVB_MMAP
  if (!may_do_mmap_) return -ENOTTY;
  int r = mutex_.Lock(lock, *instance_, file);
  if (r != 0) return r;
  ModelMutexGuard guard(mutex_, *instance_);
  r = f->mutex.Lock(lock, *instance_, file);
  if (r != 0) return r;
  ModelMutexGuard fguard(f->mutex, *instance_);
  return f->vb2.Mmap(length, prot, flags, offset, out);
}

short Dmxdev::DemuxPoll(const DmxdevFilter* f, short events) const {
  // dvb_demux_poll(): vb2 once the queue streams, else the ring buffer.
  if (f->vb2.IsStreaming()) return f->vb2.PollMask(events);
  if (f->state != DmxdevFilter::State::kGo &&
      f->state != DmxdevFilter::State::kDone &&
      f->state != DmxdevFilter::State::kTimedOut)
    return 0;
  return RingPollMask(f->buffer);
}

// ---------------------------------------------------------------------------
// DVR

int Dmxdev::DvrOpen(std::unique_lock<std::mutex>& lock, int flags) {
  // dvb_dvr_open()
  int r = mutex_.Lock(lock, *instance_, nullptr);
  if (r != 0) return r;
  ModelMutexGuard guard(mutex_, *instance_);
  // Cleared by every DVR open, even one that fails below.
  may_do_mmap_ = false;
  bool need_ringbuffer = false;
  int acc = flags & O_ACCMODE;
  if (acc == O_RDONLY) {
    need_ringbuffer = true;
  } else if (acc == O_RDWR) {
    if (!mmap_enabled_) return -EOPNOTSUPP;
    may_do_mmap_ = true;
    need_ringbuffer = true;
  }
  if (need_ringbuffer) {
    if (dvr_readers_ == 0) return -EBUSY;
    try {
      dvr_buffer_.Init(kDvrBufferSize);
      dvr_buffer_.Allocate();
    } catch (const std::bad_alloc&) {
      return -ENOMEM;
    }
    if (may_do_mmap_) dvr_vb2_.Init((flags & O_NONBLOCK) != 0, exportable_, &alloc_failures_);
    --dvr_readers_;
  }
  // O_WRONLY feeds the demux from memory; vidtv has no DMX_MEMORY_FE.
  if (acc == O_WRONLY) return -EINVAL;
  return 0;
}

void Dmxdev::DvrRelease(std::unique_lock<std::mutex>& lock, int flags) {
  // dvb_dvr_release(): looks at the adapter's flag as it is now. After a
  // later O_RDONLY open attempt cleared it, an O_RDWR DVR is not released:
  // its queue keeps running and the node stays busy for readers.
  mutex_.LockUninterruptible(lock, *instance_);
  if ((flags & O_ACCMODE) == O_RDONLY || may_do_mmap_) {
    if (may_do_mmap_) dvr_vb2_.Release();
    ++dvr_readers_;
    dvr_buffer_.Free();
  }
  mutex_.Unlock(*instance_);
}

int Dmxdev::DvrIoctl(std::unique_lock<std::mutex>& lock, const SimFile* file,
                     unsigned long cmd, void* arg) {
  // dvb_dvr_do_ioctl()
  int r = mutex_.Lock(lock, *instance_, file);
  if (r != 0) return r;
  ModelMutexGuard guard(mutex_, *instance_);
  if (cmd == DMX_SET_BUFFER_SIZE) {
    unsigned long size = reinterpret_cast<unsigned long>(arg);
    if (dvr_buffer_.size() == size) return 0;
    if (size == 0) return -EINVAL;
    try {
      dvr_buffer_.Resize(size);
    } catch (const std::bad_alloc&) {
      return -ENOMEM;
    }
    return 0;
  }
  if (!mmap_enabled_ || !IsMmapIoctl(cmd)) return -ENOTTY;
  // The DVR's queue is set up only by an O_RDWR open. On an adapter whose
  // DVR was never opened so, the kernel dereferences a queue without ops
  // (an oops); the sim answers EINVAL.
  if (!dvr_vb2_.initialised()) return -EINVAL;
  return Vb2Ioctl(lock, file, &dvr_vb2_, cmd, arg);
}

ssize_t Dmxdev::DvrRead(std::unique_lock<std::mutex>& lock,
                        const SimFile* file, uint8_t* buf, size_t count) {
  // dvb_dvr_read(): no mutex at all.
  return BufferRead(lock, file, &dvr_buffer_, file->NonblockingNow(), buf,
                    count);
}

int Dmxdev::DvrMmap(std::unique_lock<std::mutex>& lock, const SimFile* file,
                    size_t length, int prot, int flags, off_t offset,
                    void** out) {
  // dvb_dvr_mmap()
  if (!mmap_enabled_) return -ENODEV;
  if (!may_do_mmap_) return -ENOTTY;
  int r = mutex_.Lock(lock, *instance_, file);
  if (r != 0) return r;
  ModelMutexGuard guard(mutex_, *instance_);
  if (!dvr_vb2_.initialised()) return -EINVAL;
  return dvr_vb2_.Mmap(length, prot, flags, offset, out);
}

short Dmxdev::DvrPoll(int file_flags, short events) const {
  // dvb_dvr_poll()
  if (dvr_vb2_.IsStreaming()) return dvr_vb2_.PollMask(events);
  if ((file_flags & O_ACCMODE) == O_RDONLY || may_do_mmap_)
    return RingPollMask(dvr_buffer_);
  return POLLOUT | POLLWRNORM | POLLPRI;
}

// ---------------------------------------------------------------------------
// Data

void Dmxdev::TsCallback(void* owner, const uint8_t* data, size_t len,
                        uint32_t* buffer_flags) {
  // dvb_dmxdev_ts_callback()
  DmxdevFilter* f = static_cast<DmxdevFilter*>(owner);
  if (f->pes.output == DMX_OUT_DECODER) return;
  bool own = f->pes.output == DMX_OUT_TAP ||
             f->pes.output == DMX_OUT_TSDEMUX_TAP;
  DvbRingBuffer* buffer = own ? &f->buffer : &dvr_buffer_;
  DvbVb2Ctx* ctx = own ? &f->vb2 : &dvr_vb2_;
  uint64_t delivered = 0;
  uint64_t dropped = 0;
  if (ctx->IsStreaming()) {
    size_t n = ctx->Fill(data, len, buffer_flags, false);
    delivered = n;
    dropped = len - n;
  } else {
    if (buffer->error()) return;
    ssize_t r = buffer->Write(data, len);
    if (r < 0)
      buffer->set_error(static_cast<int>(r));
    else
      delivered = static_cast<uint64_t>(r);
  }
  f->bytes_delivered += delivered;
  f->bytes_dropped_no_buffer += dropped;
  total_delivered_ += delivered;
  total_dropped_ += dropped;
  if (!own) {
    dvr_delivered_ += delivered;
    dvr_dropped_ += dropped;
  }
}

void Dmxdev::SectionCallback(void* owner, const uint8_t* data, size_t len,
                             uint32_t* buffer_flags) {
  // dvb_dmxdev_section_callback(): sections complete a buffer each.
  DmxdevFilter* f = static_cast<DmxdevFilter*>(owner);
  if (!f->vb2.IsStreaming() && f->buffer.error()) return;
  if (f->state != DmxdevFilter::State::kGo) return;
  f->timeout_at_ns = 0;  // del_timer(): the timeout covers the first section
  if (f->vb2.IsStreaming()) {
    size_t n = f->vb2.Fill(data, len, buffer_flags, true);
    f->bytes_delivered += n;
    f->bytes_dropped_no_buffer += len - n;
    total_delivered_ += n;
    total_dropped_ += len - n;
  } else {
    ssize_t r = f->buffer.Write(data, len);
    if (r < 0) {
      f->buffer.set_error(static_cast<int>(r));
    } else {
      f->bytes_delivered += static_cast<uint64_t>(r);
      total_delivered_ += static_cast<uint64_t>(r);
    }
  }
  if (f->sec.flags & DMX_ONESHOT) f->state = DmxdevFilter::State::kDone;
}

uint64_t Dmxdev::ProcessTimeouts(uint64_t now_ns) {
  // dvb_dmxdev_filter_timeout()
  uint64_t next = 0;
  bool fired = false;
  for (const auto& f : filters_) {
    if (!f->timeout_at_ns) continue;
    if (f->timeout_at_ns <= now_ns) {
      f->timeout_at_ns = 0;
      f->buffer.set_error(-ETIMEDOUT);
      f->state = DmxdevFilter::State::kTimedOut;
      fired = true;
    } else if (!next || f->timeout_at_ns < next) {
      next = f->timeout_at_ns;
    }
  }
  if (fired) instance_->ChangedLocked();
  return next;
}

void Dmxdev::AppendStats(SimAdapterStats* out) const {
  out->bytes_delivered = total_delivered_;
  out->bytes_dropped_no_buffer = total_dropped_;
  for (const auto& f : filters_) {
    SimFilterStats s;
    s.path = f->path;
    if (f->type == DmxdevFilter::Type::kSection)
      s.pid = f->sec.pid;
    else if (f->type == DmxdevFilter::Type::kPes)
      s.pid = f->pes.pid;
    s.bytes_delivered = f->bytes_delivered;
    s.bytes_dropped_no_buffer = f->bytes_dropped_no_buffer;
    s.streaming = f->vb2.IsStreaming();
    s.dead = f->vb2.Dead();
    out->filters.push_back(std::move(s));
  }
  if (dvr_readers_ == 0 || dvr_vb2_.IsStreaming() || dvr_vb2_.Dead()) {
    SimFilterStats s;
    s.path = dvr_path_;
    s.pid = 0x2000;
    s.bytes_delivered = dvr_delivered_;
    s.bytes_dropped_no_buffer = dvr_dropped_;
    s.streaming = dvr_vb2_.IsStreaming();
    s.dead = dvr_vb2_.Dead();
    out->filters.push_back(std::move(s));
  }
}

}  // namespace sim
}  // namespace dmx
