// One videobuf2 queue behind a V4L2 node, single-planar:
// videobuf2-core.c with the videobuf2-v4l2.c layer, for MMAP, USERPTR and
// DMABUF memory. The driver (vim2m, in m2m_decoder.cc) plugs in through
// V4l2Queue::Driver exactly where vb2_ops would.
//
// The DMABUF import path is reproduced in detail because the agent lives
// on it: bytesused is checked against the plane length the queue knows
// (the format's sizeimage at REQBUFS, or what the last successful import
// set), the dmabuf must be at least the REQBUFS sizeimage, a user length
// larger than the dmabuf is EFAULT, a dma-contig queue refuses memory that
// is not physically contiguous with EFAULT, and a failed import releases
// the buffer's previous attachment (its plane length becomes 0).
//
// Not thread safe: the decoder's mutex guards every call.
#pragma once

#include <linux/videodev2.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vector>

#include "memfd_buffer.h"

namespace dmx {
namespace sim {

class V4l2Queue {
 public:
  enum class BufState { kDequeued, kQueued, kActive, kDone, kError };

  struct Buffer {
    unsigned index = 0;
    BufState state = BufState::kDequeued;
    bool prepared = false;
    // vb->planes[0]
    uint32_t length = 0;
    uint32_t min_length = 0;
    uint32_t bytesused = 0;
    uint32_t mem_offset = 0;   // MMAP cookie
    int32_t m_fd = 0;          // DMABUF: the fd last queued
    unsigned long userptr = 0; // USERPTR
    MemfdBuffer mem;           // MMAP memory
    bool attached = false;     // DMABUF mem_priv
    DmabufInfo dbuf;
    DmabufMapping map;         // dbuf_mapped
    // vb2_v4l2_buffer
    uint32_t flags = 0;
    uint32_t field = V4L2_FIELD_NONE;
    uint32_t sequence = 0;
    struct timeval timestamp = {};
    struct v4l2_timecode timecode = {};

    // The buffer's memory as the driver sees it (vb2_plane_vaddr), or null.
    uint8_t* vaddr() const;
    size_t vsize() const;
    bool writable() const;
  };

  class Driver {
   public:
    virtual ~Driver() = default;
    // queue_setup: may lower *count; sets the plane size.
    virtual int QueueSetup(V4l2Queue& q, unsigned* count, unsigned* size) = 0;
    // buf_out_validate (OUTPUT only) and buf_prepare.
    virtual int BufOutValidate(V4l2Queue& q, Buffer& b) = 0;
    virtual int BufPrepare(V4l2Queue& q, Buffer& b) = 0;
    // buf_queue: the buffer now belongs to the driver.
    virtual void BufQueue(V4l2Queue& q, unsigned index) = 0;
    virtual void StartStreaming(V4l2Queue& q) = 0;
    // stop_streaming: give back every buffer with BufferDone(kError).
    virtual void StopStreaming(V4l2Queue& q) = 0;
  };

  // `io_modes`: the memory types the queue takes, as
  // V4L2_BUF_CAP_SUPPORTS_{MMAP,USERPTR,DMABUF} bits. `contiguous`: the
  // allocator is videobuf2-dma-contig, so an imported dmabuf must be one
  // physically contiguous chunk.
  V4l2Queue(uint32_t type, Driver* driver, uint32_t io_modes,
            bool supports_requests, bool contiguous);
  ~V4l2Queue();
  V4l2Queue(const V4l2Queue&) = delete;
  V4l2Queue& operator=(const V4l2Queue&) = delete;

  uint32_t type() const { return type_; }
  bool is_output() const { return is_output_; }
  unsigned num_buffers() const { return static_cast<unsigned>(bufs_.size()); }
  uint32_t memory() const { return memory_; }
  bool busy() const { return !bufs_.empty(); }  // vb2_is_busy()
  bool streaming() const { return streaming_; }
  bool queued_empty() const { return queued_.empty(); }
  bool done_empty() const { return done_.empty(); }
  bool last_buffer_dequeued() const { return last_buffer_dequeued_; }
  Buffer& buffer(unsigned index) { return bufs_[index]; }

  int Reqbufs(struct v4l2_requestbuffers* req);
  int Querybuf(struct v4l2_buffer* b) const;
  // Returns the errno of a failed import separately in *import_failed.
  int Qbuf(struct v4l2_buffer* b, bool* import_failed);
  // vb2_dqbuf() without sleeping: -EAGAIN when nothing is done.
  int Dqbuf(struct v4l2_buffer* b);
  // The condition a blocking DQBUF sleeps on.
  bool DqbufReady() const {
    return !streaming_ || last_buffer_dequeued_ || !done_.empty();
  }
  // Another thread sleeps in DQBUF on this queue (EBUSY for a second one).
  bool waiting_in_dqbuf = false;
  int Streamon(uint32_t type);
  int Streamoff(uint32_t type);
  int Expbuf(struct v4l2_exportbuffer* e) const;
  // vb2_mmap() with the offset already relative to this queue.
  int Mmap(size_t length, int prot, int flags, off_t offset, void** out) const;
  // vb2_buffer_done(), from the driver.
  void BufferDone(unsigned index, BufState state);
  // vb2_queue_release(): cancel and free everything.
  void Release();

 private:
  struct Staged {  // vbuf->planes as filled from the user's v4l2_buffer
    uint32_t length = 0;
    uint32_t bytesused = 0;
    int32_t fd = 0;
    unsigned long userptr = 0;
  };
  int Prepare(Buffer& vb, const Staged& st);
  int PrepareDmabuf(Buffer& vb, const Staged& st);
  void PutDmabuf(Buffer& vb);
  void Cancel();
  void FreeBuffers();
  void EnqueueInDriver(unsigned index);
  void FillUser(const Buffer& vb, struct v4l2_buffer* b) const;

  const uint32_t type_;
  const bool is_output_;
  Driver* const driver_;
  const uint32_t io_modes_;
  const uint32_t caps_;  // V4L2_BUF_CAP_* reported by REQBUFS
  const bool contiguous_;
  uint32_t memory_ = 0;  // 0: VB2_MEMORY_UNKNOWN
  bool streaming_ = false;
  bool start_streaming_called_ = false;
  bool waiting_for_buffers_ = false;
  bool last_buffer_dequeued_ = false;
  std::vector<Buffer> bufs_;
  std::vector<unsigned> queued_;
  std::vector<unsigned> done_;
};

}  // namespace sim
}  // namespace dmx
