// The DVB demux/DVR memory-mapped queue: drivers/media/dvb-core/dvb_vb2.c
// together with the part of videobuf2-core.c it uses (one plane, MMAP only,
// a capture queue of min_buffers_needed = 1).
//
// Two layers are kept apart on purpose, because the kernel's behaviour
// after errors comes from their disagreement:
//  - the dvb_vb2_ctx state (INIT/REQBUFS/STREAMON, buf_siz, flags, count),
//  - the vb2 queue (streaming, buffers and their states, done list).
// A DMX_REQBUFS rejected with EBUSY resets the ctx state to NONE while the
// vb2 queue keeps streaming: the stream is "dead" (data goes to the ring
// buffer, DQBUF finds nothing) until a QBUF succeeds again.
//
// Not thread safe: the owning adapter's mutex guards every call.
#pragma once

#include <atomic>
#include <sys/ioctl.h>  // before dmx.h, which needs _IOR

#include <linux/dvb/dmx.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vector>

#include "memfd_buffer.h"

namespace dmx {
namespace sim {

class DvbVb2Ctx {
 public:
  static constexpr uint32_t kMaxSize = 4096 * 188;  // DVB_V2_MAX_SIZE
  static constexpr unsigned kMaxFrame = 32;         // VB2_MAX_FRAME (6.1)

  // dvb_vb2_init(): a fresh context and queue. `exportable`: the queue's
  // allocator has get_dmabuf (vmalloc does; without it DMX_EXPBUF is EINVAL).
  // `alloc_failures`: allocations still to fail (fault injection), may be null.
  void Init(bool nonblocking, bool exportable, std::atomic<uint32_t>* alloc_failures = nullptr);
  // Consumes one injected allocation failure, if any is left.
  bool TakeAllocFailure();
  // The release path of dmxdev: stream off when streaming, then
  // dvb_vb2_release(). The sim also frees its buffers when the kernel would
  // leak them (ctx state lost its INIT bit after a failed REQBUFS).
  void Release();
  // The queue was set up by Init() at least once. The DVR's context is
  // initialised only by an O_RDWR open.
  bool initialised() const { return initialised_; }

  bool IsStreaming() const { return (state_ & kStreamOn) != 0; }
  // The vb2 queue streams but the ctx does not: a dead stream.
  bool Dead() const { return vb2_streaming_ && !IsStreaming(); }
  bool nonblocking() const { return nonblocking_; }

  int Reqbufs(struct dmx_requestbuffers* req);
  int Querybuf(struct dmx_buffer* b) const;
  int Expbuf(struct dmx_exportbuffer* e) const;
  // DMX_QBUF in dmxdev.c: dvb_vb2_qbuf(), then dvb_vb2_stream_on() when the
  // ctx is not streaming.
  int QbufAndStreamOn(struct dmx_buffer* b);
  // dvb_vb2_dqbuf() without sleeping: -EAGAIN when nothing is done.
  int Dqbuf(struct dmx_buffer* b);
  // The condition a blocking DQBUF sleeps on (__vb2_wait_for_done_vb).
  bool DqbufReady() const { return !vb2_streaming_ || !done_.empty(); }
  // vb2_mmap(), VM_SHARED and VM_READ checked. 0 or a negative errno.
  int Mmap(size_t length, int prot, int flags, off_t offset, void** out) const;
  // vb2_core_poll() for a capture queue that streams.
  short PollMask(short events) const;
  // dvb_vb2_fill_buffer(): copies what fits into queued buffers, completes
  // full ones (and the current one when `flush`), moves the feed's flags
  // into the ctx. Returns the bytes copied; the rest was dropped.
  size_t Fill(const uint8_t* src, size_t len, uint32_t* feed_flags,
              bool flush);

  unsigned num_buffers() const { return static_cast<unsigned>(bufs_.size()); }

 private:
  enum : unsigned { kNone = 0, kInit = 1, kReqbufs = 2, kStreamOn = 4 };
  enum class BufState { kDequeued, kQueued, kActive, kDone, kError };
  struct Buffer {
    MemfdBuffer mem;
    uint32_t length = 0;  // vb->planes[0].length: the requested size
    uint32_t offset = 0;  // vb->planes[0].m.offset
    uint32_t bytesused = 0;
    BufState state = BufState::kDequeued;
    bool prepared = false;
  };

  int CoreReqbufs(unsigned* count);
  void FreeBuffers();
  void Cancel();  // __vb2_queue_cancel()
  int StreamOn();
  void EnqueueInDriver(unsigned index);
  void BufferDone(unsigned index, BufState state);
  void FillUser(unsigned index, struct dmx_buffer* b) const;

  // dvb_vb2_ctx
  bool initialised_ = false;
  unsigned state_ = kNone;
  bool nonblocking_ = false;
  bool exportable_ = true;
  std::atomic<uint32_t>* alloc_failures_ = nullptr;
  uint32_t buf_siz_ = 0;
  uint32_t buf_cnt_ = 0;
  uint32_t flags_ = 0;
  uint32_t count_ = 0;
  int cur_ = -1;  // ctx->buf: the buffer being filled, head of dvb_q_
  uint32_t remain_ = 0;
  uint32_t fill_offset_ = 0;
  std::vector<unsigned> dvb_q_;  // driver list, fill order

  // vb2_queue
  bool memory_mmap_ = false;  // q->memory: MMAP or UNKNOWN
  bool vb2_streaming_ = false;
  bool start_streaming_called_ = false;
  std::vector<Buffer> bufs_;
  std::vector<unsigned> queued_;  // q->queued_list order
  std::vector<unsigned> done_;    // q->done_list order
};

}  // namespace sim
}  // namespace dmx
