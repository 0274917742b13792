#include "dvb_vb2.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>

#include <algorithm>

namespace dmx {
namespace sim {

void DvbVb2Ctx::Init(bool nonblocking, bool exportable, std::atomic<uint32_t>* alloc_failures) {
  // dvb_vb2_init() memsets a context the kernel may have leaked buffers in;
  // the sim frees them instead.
  FreeBuffers();
  initialised_ = true;
  state_ = kInit;
  nonblocking_ = nonblocking;
  exportable_ = exportable;
  alloc_failures_ = alloc_failures;
  buf_siz_ = 0;
  buf_cnt_ = 0;
  flags_ = 0;
  count_ = 0;
  memory_mmap_ = false;
  vb2_streaming_ = false;
  start_streaming_called_ = false;
}

void DvbVb2Ctx::Release() {
  // dvb_dmxdev_filter_free / dvb_dvr_release: stream off only when the ctx
  // streams, then dvb_vb2_release() frees the queue only while the state
  // has INIT. Whatever the kernel leaks, nobody can reach it again, so the
  // sim frees it.
  if (IsStreaming()) state_ &= ~kStreamOn;
  Cancel();
  FreeBuffers();
  memory_mmap_ = false;
  state_ = kNone;
}

void DvbVb2Ctx::FreeBuffers() {
  bufs_.clear();
  queued_.clear();
  done_.clear();
  dvb_q_.clear();
  cur_ = -1;
}

void DvbVb2Ctx::Cancel() {
  // __vb2_queue_cancel(): _stop_streaming() errors out the driver list
  // (only when start_streaming was called), then every buffer is back in
  // userspace's hands and the done list is dropped.
  if (start_streaming_called_) {
    dvb_q_.clear();
    cur_ = -1;
  }
  vb2_streaming_ = false;
  start_streaming_called_ = false;
  queued_.clear();
  done_.clear();
  for (Buffer& b : bufs_) {
    b.state = BufState::kDequeued;
    b.prepared = false;
  }
}

int DvbVb2Ctx::Reqbufs(struct dmx_requestbuffers* req) {
  // dvb_vb2_reqbufs(): clamp, store size and count in the ctx first (even
  // when vb2 then refuses), reset the ctx state on any error.
  uint32_t size = std::min<uint32_t>(req->size, kMaxSize);
  buf_siz_ = size;
  buf_cnt_ = req->count;
  unsigned count = req->count;
  int r = CoreReqbufs(&count);
  if (r != 0) {
    state_ = kNone;
    return r;
  }
  state_ |= kReqbufs;
  req->size = size;
  req->count = count;
  return 0;
}

bool DvbVb2Ctx::TakeAllocFailure() {
  if (alloc_failures_ == nullptr) return false;
  uint32_t left = alloc_failures_->load();
  while (left > 0 && !alloc_failures_->compare_exchange_weak(left, left - 1)) {
  }
  return left > 0;
}

int DvbVb2Ctx::CoreReqbufs(unsigned* count) {
  // vb2_core_reqbufs()
  if (vb2_streaming_) return -EBUSY;
  if (*count == 0 || !bufs_.empty()) {
    // Mapped or exported buffers are orphaned, not refused (6.1).
    Cancel();
    FreeBuffers();
    memory_mmap_ = false;
    if (*count == 0) return 0;
  }
  unsigned n = std::max(*count, 1u);  // min_buffers_needed = 1
  n = std::min(n, kMaxFrame);
  memory_mmap_ = true;
  // _queue_setup(): one plane of buf_siz; vb2 WARNs on a zero plane size.
  buf_cnt_ = n;
  if (buf_siz_ == 0) {
    memory_mmap_ = false;
    return -EINVAL;
  }
  size_t offset = 0;
  for (unsigned i = 0; i < n; ++i) {
    Buffer b;
    if (TakeAllocFailure() || b.mem.Allocate(buf_siz_) != 0) break;
    b.length = buf_siz_;
    // __setup_offsets(): each buffer starts at the page after the previous.
    b.offset = static_cast<uint32_t>(offset);
    offset = PageAlign(offset + b.length);
    bufs_.push_back(std::move(b));
  }
  if (bufs_.empty()) {
    memory_mmap_ = false;
    return -ENOMEM;
  }
  *count = static_cast<unsigned>(bufs_.size());
  return 0;
}

void DvbVb2Ctx::FillUser(unsigned index, struct dmx_buffer* b) const {
  // _fill_dmx_buffer(): flags and count keep what the caller passed.
  const Buffer& vb = bufs_[index];
  b->index = index;
  b->length = vb.length;
  b->bytesused = vb.bytesused;
  b->offset = vb.offset;
}

int DvbVb2Ctx::Querybuf(struct dmx_buffer* b) const {
  if (b->index >= bufs_.size()) return -EINVAL;
  FillUser(b->index, b);
  return 0;
}

int DvbVb2Ctx::Expbuf(struct dmx_exportbuffer* e) const {
  // vb2_core_expbuf()
  if (!memory_mmap_) return -EINVAL;
  if (!exportable_) return -EINVAL;  // !q->mem_ops->get_dmabuf
  if (e->flags & ~static_cast<uint32_t>(O_CLOEXEC | O_ACCMODE)) return -EINVAL;
  if (e->index >= bufs_.size()) return -EINVAL;
  int fd = bufs_[e->index].mem.Export(static_cast<int>(e->flags));
  if (fd < 0) return fd;
  e->fd = fd;
  return 0;
}

void DvbVb2Ctx::EnqueueInDriver(unsigned index) {
  // __enqueue_in_driver() -> _buffer_queue()
  bufs_[index].state = BufState::kActive;
  dvb_q_.push_back(index);
}

int DvbVb2Ctx::QbufAndStreamOn(struct dmx_buffer* b) {
  if (b->index >= bufs_.size()) return -EINVAL;
  unsigned i = b->index;
  Buffer& vb = bufs_[i];
  // vb2_core_qbuf()
  if (vb.state != BufState::kDequeued) return -EINVAL;
  if (!vb.prepared) {
    vb.bytesused = 0;  // _fill_vb2_buffer(), kept even if prepare fails
    // _buffer_prepare(): the ctx's size may have grown since REQBUFS (a
    // rejected REQBUFS overwrites it): "data will not fit into plane".
    if (vb.length < buf_siz_) return -EINVAL;
    vb.bytesused = buf_siz_;
    vb.prepared = true;
  }
  queued_.push_back(i);
  vb.state = BufState::kQueued;
  if (start_streaming_called_) EnqueueInDriver(i);
  FillUser(i, b);
  // dvb_demux_do_ioctl(DMX_QBUF): the first successful QBUF starts
  // streaming; after a dead stream it revives it (vb2 already streams).
  if (!IsStreaming()) {
    int r = StreamOn();
    if (r != 0) {
      state_ = kNone;
      return r;
    }
    state_ |= kStreamOn;
  }
  return 0;
}

int DvbVb2Ctx::StreamOn() {
  // vb2_core_streamon()
  if (vb2_streaming_) return 0;
  if (bufs_.empty()) return -EINVAL;
  if (!queued_.empty()) {
    for (unsigned i : queued_) EnqueueInDriver(i);
    start_streaming_called_ = true;
  }
  vb2_streaming_ = true;
  return 0;
}

int DvbVb2Ctx::Dqbuf(struct dmx_buffer* b) {
  // vb2_core_dqbuf() through __vb2_wait_for_done_vb(), then dvb_vb2_dqbuf()
  if (!vb2_streaming_) return -EINVAL;
  if (done_.empty()) return -EAGAIN;
  unsigned i = done_.front();
  done_.erase(done_.begin());
  Buffer& vb = bufs_[i];
  vb.prepared = false;
  FillUser(i, b);
  queued_.erase(std::find(queued_.begin(), queued_.end(), i));
  vb.state = BufState::kDequeued;
  b->count = count_++;
  b->flags = flags_;
  flags_ = 0;
  return 0;
}

int DvbVb2Ctx::Mmap(size_t length, int prot, int flags, off_t offset,
                    void** out) const {
  // vb2_mmap(): a shared, readable mapping of one whole buffer, chosen by
  // its offset cookie.
  if (!(flags & MAP_SHARED)) return -EINVAL;
  if (!(prot & PROT_READ)) return -EINVAL;
  if (!memory_mmap_) return -EINVAL;
  for (const Buffer& b : bufs_) {
    if (static_cast<off_t>(b.offset) != offset) continue;
    if (PageAlign(b.length) < length) return -EINVAL;
    return b.mem.MapForClient(length, prot, flags, out);
  }
  return -EINVAL;
}

short DvbVb2Ctx::PollMask(short events) const {
  // vb2_core_poll(): a capture queue answers only POLLIN/POLLRDNORM.
  if (!(events & (POLLIN | POLLRDNORM))) return 0;
  if (!vb2_streaming_) return POLLERR;
  return done_.empty() ? 0 : (POLLIN | POLLRDNORM);
}

void DvbVb2Ctx::BufferDone(unsigned index, BufState state) {
  bufs_[index].state = state;
  done_.push_back(index);
  dvb_q_.erase(std::find(dvb_q_.begin(), dvb_q_.end(), index));
}

size_t DvbVb2Ctx::Fill(const uint8_t* src, size_t len, uint32_t* feed_flags,
                       bool flush) {
  // dvb_vb2_fill_buffer()
  if (!src || len == 0) return 0;
  if (feed_flags && *feed_flags) {
    flags_ |= *feed_flags;
    *feed_flags = 0;
  }
  size_t todo = len;
  uint32_t ll = 0;
  while (todo) {
    if (cur_ < 0) {
      if (dvb_q_.empty()) break;  // "Buffer overflow!!!": silently dropped
      cur_ = static_cast<int>(dvb_q_.front());
      remain_ = bufs_[cur_].length;  // vb2_plane_size()
      fill_offset_ = 0;
    }
    if (!IsStreaming()) {
      BufferDone(static_cast<unsigned>(cur_), BufState::kError);
      cur_ = -1;
      break;
    }
    ll = static_cast<uint32_t>(std::min<size_t>(todo, remain_));
    memcpy(bufs_[cur_].mem.data() + fill_offset_, src, ll);
    src += ll;
    todo -= ll;
    remain_ -= ll;
    fill_offset_ += ll;
    if (remain_ == 0) {
      BufferDone(static_cast<unsigned>(cur_), BufState::kDone);
      cur_ = -1;
    }
  }
  if (flush && cur_ >= 0) {
    // The payload is the last chunk copied, not the buffer's fill level.
    bufs_[cur_].bytesused = ll;
    BufferDone(static_cast<unsigned>(cur_), BufState::kDone);
    cur_ = -1;
  }
  return len - todo;
}

}  // namespace sim
}  // namespace dmx
