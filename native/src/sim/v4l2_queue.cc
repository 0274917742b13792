#include "v4l2_queue.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>

#include <algorithm>

namespace dmx {
namespace sim {

namespace {

constexpr unsigned kMaxFrame = 32;  // VB2_MAX_FRAME

// V4L2_BUFFER_MASK_FLAGS: flags vb2 owns.
constexpr uint32_t kMaskFlags =
    V4L2_BUF_FLAG_MAPPED | V4L2_BUF_FLAG_QUEUED | V4L2_BUF_FLAG_DONE |
    V4L2_BUF_FLAG_ERROR | V4L2_BUF_FLAG_PREPARED | V4L2_BUF_FLAG_IN_REQUEST |
    V4L2_BUF_FLAG_REQUEST_FD | V4L2_BUF_FLAG_TIMESTAMP_MASK;
// V4L2_BUFFER_OUT_FLAGS
constexpr uint32_t kOutFlags = V4L2_BUF_FLAG_PFRAME | V4L2_BUF_FLAG_BFRAME |
                               V4L2_BUF_FLAG_KEYFRAME | V4L2_BUF_FLAG_TIMECODE |
                               V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF;

bool ValidMemory(uint32_t m) {
  return m == V4L2_MEMORY_MMAP || m == V4L2_MEMORY_USERPTR ||
         m == V4L2_MEMORY_DMABUF;
}

// The io_modes bit (V4L2_BUF_CAP_SUPPORTS_*) of a valid memory type.
uint32_t MemoryMode(uint32_t m) {
  switch (m) {
    case V4L2_MEMORY_MMAP: return V4L2_BUF_CAP_SUPPORTS_MMAP;
    case V4L2_MEMORY_USERPTR: return V4L2_BUF_CAP_SUPPORTS_USERPTR;
    case V4L2_MEMORY_DMABUF: return V4L2_BUF_CAP_SUPPORTS_DMABUF;
    default: return 0;
  }
}

// fill_buf_caps(): orphaned buffers always, the io_modes, requests when
// the driver supports them.
uint32_t BufCaps(uint32_t io_modes, bool supports_requests) {
  uint32_t caps = V4L2_BUF_CAP_SUPPORTS_ORPHANED_BUFS | io_modes;
  if (supports_requests) caps |= V4L2_BUF_CAP_SUPPORTS_REQUESTS;
  return caps;
}

}  // namespace

uint8_t* V4l2Queue::Buffer::vaddr() const {
  if (mem.valid()) return mem.data();
  if (map.mapped()) return map.data();
  return nullptr;
}

size_t V4l2Queue::Buffer::vsize() const {
  if (mem.valid()) return length;
  if (map.mapped()) return std::min<size_t>(length, map.size());
  return 0;
}

bool V4l2Queue::Buffer::writable() const {
  return mem.valid() || (map.mapped() && map.writable());
}

V4l2Queue::V4l2Queue(uint32_t type, Driver* driver, uint32_t io_modes,
                     bool supports_requests, bool contiguous)
    : type_(type),
      is_output_(V4L2_TYPE_IS_OUTPUT(type)),
      driver_(driver),
      io_modes_(io_modes),
      caps_(BufCaps(io_modes, supports_requests)),
      contiguous_(contiguous) {}

V4l2Queue::~V4l2Queue() = default;

int V4l2Queue::Reqbufs(struct v4l2_requestbuffers* req) {
  // vb2_reqbufs(): vb2_verify_memory_type() first: a memory type vb2
  // knows, the queue's own type, then the memory among its io_modes.
  if (!ValidMemory(req->memory)) return -EINVAL;
  if (req->type != type_) return -EINVAL;
  if (!(io_modes_ & MemoryMode(req->memory))) return -EINVAL;
  // vb2_core_reqbufs()
  if (streaming_) return -EBUSY;
  if (waiting_in_dqbuf && req->count) return -EBUSY;
  unsigned count = req->count;
  if (count == 0 || !bufs_.empty() ||
      (memory_ != 0 && memory_ != req->memory)) {
    // Buffers still mapped or exported are orphaned (their memory lives
    // on in the client), not refused.
    Cancel();
    FreeBuffers();
    if (count == 0) {
      req->capabilities = caps_;
      req->flags = 0;
      return 0;
    }
  }
  unsigned n = std::min(count, kMaxFrame);  // min_buffers_needed = 0
  memory_ = req->memory;
  unsigned size = 0;
  int r = driver_->QueueSetup(*this, &n, &size);
  if (r != 0 || n == 0 || size == 0) {
    memory_ = 0;
    return r ? r : -EINVAL;
  }
  bufs_.reserve(n);
  size_t offset = 0;
  for (unsigned i = 0; i < n; ++i) {
    Buffer b;
    b.index = i;
    b.length = size;
    b.min_length = size;
    if (memory_ == V4L2_MEMORY_MMAP) {
      if (b.mem.Allocate(size) != 0) break;
      b.mem_offset = static_cast<uint32_t>(offset);  // __setup_offsets()
      offset = PageAlign(offset + size);
    }
    bufs_.push_back(std::move(b));
  }
  if (bufs_.empty()) {
    memory_ = 0;
    return -ENOMEM;
  }
  waiting_for_buffers_ = !is_output_;
  req->count = static_cast<uint32_t>(bufs_.size());
  req->capabilities = caps_;
  req->flags = 0;  // no cache hints
  return 0;
}

void V4l2Queue::FillUser(const Buffer& vb, struct v4l2_buffer* b) const {
  // __fill_v4l2_buffer()
  b->index = vb.index;
  b->type = type_;
  b->memory = memory_;
  b->flags = vb.flags;
  b->field = vb.field;
  b->timestamp = vb.timestamp;
  b->timecode = vb.timecode;
  b->sequence = vb.sequence;
  b->reserved2 = 0;
  b->request_fd = 0;
  b->length = vb.length;
  b->bytesused = vb.bytesused;
  if (memory_ == V4L2_MEMORY_MMAP)
    b->m.offset = vb.mem_offset;
  else if (memory_ == V4L2_MEMORY_USERPTR)
    b->m.userptr = vb.userptr;
  else if (memory_ == V4L2_MEMORY_DMABUF)
    b->m.fd = vb.m_fd;
  b->flags &= ~kMaskFlags;
  b->flags |= V4L2_BUF_FLAG_TIMESTAMP_COPY;  // vim2m's timestamp_flags
  switch (vb.state) {
    case BufState::kQueued:
    case BufState::kActive:
      b->flags |= V4L2_BUF_FLAG_QUEUED;
      break;
    case BufState::kError:
      b->flags |= V4L2_BUF_FLAG_ERROR | V4L2_BUF_FLAG_DONE;
      break;
    case BufState::kDone:
      b->flags |= V4L2_BUF_FLAG_DONE;
      break;
    default:
      break;
  }
}

int V4l2Queue::Querybuf(struct v4l2_buffer* b) const {
  if (b->type != type_) return -EINVAL;
  if (b->index >= bufs_.size()) return -EINVAL;
  FillUser(bufs_[b->index], b);
  return 0;
}

int V4l2Queue::Qbuf(struct v4l2_buffer* b, bool* import_failed) {
  *import_failed = false;
  // vb2_queue_or_prepare_buf()
  if (b->type != type_) return -EINVAL;
  if (b->index >= bufs_.size()) return -EINVAL;
  if (b->memory != memory_) return -EINVAL;
  Buffer& vb = bufs_[b->index];
  if ((b->flags & V4L2_BUF_FLAG_REQUEST_FD) && vb.state != BufState::kDequeued)
    return -EINVAL;
  Staged st;
  if (!vb.prepared) {
    // vb2_fill_vb2_v4l2_buffer() -> __verify_length(): for a single-planar
    // OUTPUT queue, bytesused against the plane length the queue already
    // knows (the user's length counts for USERPTR only).
    if (is_output_) {
      uint32_t length =
          memory_ == V4L2_MEMORY_USERPTR ? b->length : vb.length;
      if (b->bytesused > length) {
        *import_failed = memory_ == V4L2_MEMORY_DMABUF;
        return -EINVAL;
      }
      if (b->field == V4L2_FIELD_ALTERNATE) return -EINVAL;
    }
    switch (memory_) {
      case V4L2_MEMORY_USERPTR:
        st.userptr = b->m.userptr;
        st.length = b->length;
        break;
      case V4L2_MEMORY_DMABUF:
        st.fd = b->m.fd;
        st.length = b->length;
        break;
      default:
        st.length = vb.length;
        break;
    }
    // bytesused == 0 on OUTPUT means the whole plane (no
    // allow_zero_bytesused on vim2m).
    if (is_output_)
      st.bytesused = b->bytesused ? b->bytesused : st.length;
    vb.flags = b->flags & ~kMaskFlags;
    if (is_output_) {
      vb.flags &= ~(V4L2_BUF_FLAG_TIMECODE | V4L2_BUF_FLAG_M2M_HOLD_CAPTURE_BUF);
      vb.field = b->field;
      vb.timestamp = b->timestamp;  // V4L2_BUF_FLAG_TIMESTAMP_COPY
      if (b->flags & V4L2_BUF_FLAG_TIMECODE) {
        vb.flags |= V4L2_BUF_FLAG_TIMECODE;
        vb.timecode = b->timecode;
      }
    } else {
      vb.flags &= ~(kOutFlags | V4L2_BUF_FLAG_LAST);
    }
  }
  // Requests need a media device the sim does not model.
  if (b->flags & V4L2_BUF_FLAG_REQUEST_FD) return -EINVAL;
  // vb2_core_qbuf()
  if (vb.state != BufState::kDequeued) return -EINVAL;
  if (!vb.prepared) {
    int r = Prepare(vb, st);
    if (r != 0) {
      *import_failed = memory_ == V4L2_MEMORY_DMABUF;
      return r;
    }
  }
  queued_.push_back(vb.index);
  waiting_for_buffers_ = false;
  vb.state = BufState::kQueued;
  if (start_streaming_called_) EnqueueInDriver(vb.index);
  FillUser(vb, b);
  return 0;
}

int V4l2Queue::Prepare(Buffer& vb, const Staged& st) {
  // __buf_prepare()
  if (is_output_) {
    int r = driver_->BufOutValidate(*this, vb);
    if (r != 0) return r;
  }
  int r = 0;
  switch (memory_) {
    case V4L2_MEMORY_MMAP:
      vb.bytesused = st.bytesused;
      r = driver_->BufPrepare(*this, vb);
      break;
    case V4L2_MEMORY_USERPTR:
      // __prepare_userptr(): the sim keeps the address, never touches it.
      if (!(vb.userptr && vb.userptr == st.userptr && vb.length == st.length)) {
        if (st.length < vb.min_length) {
          vb.userptr = 0;
          vb.length = 0;
          return -EINVAL;
        }
        vb.userptr = st.userptr;
        vb.length = st.length;
      }
      vb.bytesused = st.bytesused;
      r = driver_->BufPrepare(*this, vb);
      if (r != 0) {
        vb.userptr = 0;
        vb.length = 0;
      }
      break;
    case V4L2_MEMORY_DMABUF:
      r = PrepareDmabuf(vb, st);
      break;
    default:
      r = -EINVAL;
  }
  if (r != 0) return r;
  vb.prepared = true;
  return 0;
}

void V4l2Queue::PutDmabuf(Buffer& vb) {
  // __vb2_plane_dmabuf_put(): only a buffer with an attachment is reset.
  if (!vb.attached) return;
  vb.map.Reset();
  vb.attached = false;
  vb.dbuf = DmabufInfo();
  vb.bytesused = 0;
  vb.length = 0;
  vb.m_fd = 0;
}

int V4l2Queue::PrepareDmabuf(Buffer& vb, const Staged& st) {
  // __prepare_dmabuf()
  DmabufInfo info;
  int r = InspectDmabuf(st.fd, &info);
  uint64_t length = 0;
  if (r == 0) {
    // The dmabuf's size when the user gave no length.
    length = st.length ? st.length : info.size;
    if (length < vb.min_length) r = -EINVAL;
  }
  if (r == 0 && !(vb.attached && vb.dbuf.Same(info) && vb.length == length)) {
    PutDmabuf(vb);  // buf_cleanup + release of the previous buffer
    // vb2_vmalloc_attach_dmabuf() / vb2_dc_attach_dmabuf(): a length
    // past the dmabuf's end.
    if (info.size < length) {
      r = -EFAULT;
    } else {
      vb.attached = true;
      vb.dbuf = info;
      // vb2_dc_map_dmabuf(): "contiguous chunk is too small". Every dmabuf
      // the sim sees is vmalloc-like memory, contiguous within a page only.
      if (contiguous_ && length > PageSize()) r = -EFAULT;
    }
  }
  if (r == 0 && !vb.map.mapped()) r = vb.map.Map(st.fd, info.size);
  if (r == 0) {
    vb.bytesused = st.bytesused;
    vb.length = static_cast<uint32_t>(length);
    vb.m_fd = st.fd;
    r = driver_->BufPrepare(*this, vb);
  }
  if (r != 0) PutDmabuf(vb);  // the err path drops the attachment
  return r;
}

void V4l2Queue::EnqueueInDriver(unsigned index) {
  bufs_[index].state = BufState::kActive;
  driver_->BufQueue(*this, index);
}

int V4l2Queue::Dqbuf(struct v4l2_buffer* b) {
  // vb2_dqbuf() -> vb2_core_dqbuf()
  if (b->type != type_) return -EINVAL;
  if (waiting_in_dqbuf) return -EBUSY;
  if (!streaming_) return -EINVAL;
  if (last_buffer_dequeued_) return -EPIPE;
  if (done_.empty()) return -EAGAIN;
  unsigned i = done_.front();
  done_.erase(done_.begin());
  Buffer& vb = bufs_[i];
  vb.prepared = false;
  FillUser(vb, b);
  queued_.erase(std::find(queued_.begin(), queued_.end(), i));
  vb.state = BufState::kDequeued;
  if (!is_output_ && (b->flags & V4L2_BUF_FLAG_DONE) &&
      (b->flags & V4L2_BUF_FLAG_LAST))
    last_buffer_dequeued_ = true;
  b->flags &= ~V4L2_BUF_FLAG_DONE;
  return 0;
}

int V4l2Queue::Streamon(uint32_t type) {
  // vb2_core_streamon()
  if (type != type_) return -EINVAL;
  if (streaming_) return 0;
  if (bufs_.empty()) return -EINVAL;
  for (unsigned i : queued_) EnqueueInDriver(i);
  start_streaming_called_ = true;
  driver_->StartStreaming(*this);
  streaming_ = true;
  return 0;
}

void V4l2Queue::Cancel() {
  // __vb2_queue_cancel()
  if (start_streaming_called_) driver_->StopStreaming(*this);
  streaming_ = false;
  start_streaming_called_ = false;
  queued_.clear();
  done_.clear();
  for (Buffer& vb : bufs_) {
    vb.state = BufState::kDequeued;
    vb.prepared = false;
  }
}

int V4l2Queue::Streamoff(uint32_t type) {
  // vb2_core_streamoff(): every buffer goes back to userspace, queued or
  // done, without DQBUF.
  if (type != type_) return -EINVAL;
  Cancel();
  waiting_for_buffers_ = !is_output_;
  last_buffer_dequeued_ = false;
  return 0;
}

int V4l2Queue::Expbuf(struct v4l2_exportbuffer* e) const {
  // vb2_core_expbuf()
  if (memory_ != V4L2_MEMORY_MMAP) return -EINVAL;
  if (e->flags & ~static_cast<uint32_t>(O_CLOEXEC | O_ACCMODE)) return -EINVAL;
  if (e->type != type_) return -EINVAL;
  if (e->index >= bufs_.size()) return -EINVAL;
  if (e->plane >= 1) return -EINVAL;
  int fd = bufs_[e->index].mem.Export(static_cast<int>(e->flags));
  if (fd < 0) return fd;
  e->fd = fd;
  return 0;
}

int V4l2Queue::Mmap(size_t length, int prot, int flags, off_t offset,
                    void** out) const {
  // vb2_mmap(): OUTPUT buffers must be mapped writable, CAPTURE readable.
  if (!(flags & MAP_SHARED)) return -EINVAL;
  if (is_output_ ? !(prot & PROT_WRITE) : !(prot & PROT_READ)) return -EINVAL;
  if (memory_ != V4L2_MEMORY_MMAP) return -EINVAL;
  for (const Buffer& b : bufs_) {
    if (static_cast<off_t>(b.mem_offset) != offset) continue;
    if (PageAlign(b.length) < length) return -EINVAL;
    return b.mem.MapForClient(length, prot, flags, out);
  }
  return -EINVAL;
}

void V4l2Queue::BufferDone(unsigned index, BufState state) {
  bufs_[index].state = state;
  done_.push_back(index);
}

void V4l2Queue::FreeBuffers() {
  // __vb2_queue_free(): MMAP memory and DMABUF attachments go.
  bufs_.clear();
  queued_.clear();
  done_.clear();
  memory_ = 0;
}

void V4l2Queue::Release() {
  Cancel();
  FreeBuffers();
}

}  // namespace sim
}  // namespace dmx
