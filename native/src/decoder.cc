#include "decoder.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>

#include "backend.h"
#include "demux.h"
#include "errors.h"

namespace dmx {

namespace {

std::string FourccToString(uint32_t f) {
  std::string s;
  for (int i = 0; i < 4; i++) s += static_cast<char>((f >> (8 * i)) & 0xff);
  return s;
}

uint32_t FourccFromString(Napi::Env env, const Napi::Value& v, const char* what) {
  std::string s = ArgString(env, v, what);
  if (s.size() != 4) ThrowRangeError(env, std::string(what) + " must be a four-character code such as 'RGB3'");
  return v4l2_fourcc(s[0], s[1], s[2], s[3]);
}

Queue ArgQueue(Napi::Env env, const Napi::Value& v) {
  std::string s = ArgString(env, v, "queue");
  if (s == "output") return Queue::kOutput;
  if (s == "capture") return Queue::kCapture;
  ThrowRangeError(env, "queue must be 'output' or 'capture'");
}

v4l2_memory ArgMemory(Napi::Env env, const Napi::Value& v, v4l2_memory fallback) {
  if (v.IsUndefined()) return fallback;
  std::string s = ArgString(env, v, "memory");
  if (s == "dmabuf") return V4L2_MEMORY_DMABUF;
  if (s == "mmap") return V4L2_MEMORY_MMAP;
  if (s == "userptr") return V4L2_MEMORY_USERPTR;
  ThrowRangeError(env, "memory must be 'dmabuf', 'mmap' or 'userptr'");
}

// Fills a v4l2_buffer for one plane, single- or multi-planar.
struct BufferArg {
  v4l2_buffer buf;
  v4l2_plane plane;
  BufferArg(uint32_t type, v4l2_memory memory, bool mplane) {
    memset(&buf, 0, sizeof buf);
    memset(&plane, 0, sizeof plane);
    buf.type = type;
    buf.memory = memory;
    if (mplane) {
      buf.m.planes = &plane;
      buf.length = 1;
    }
  }
  uint32_t bytesused(bool mplane) const { return mplane ? plane.bytesused : buf.bytesused; }
};

}  // namespace

// ---------------------------------------------------------------- DecoderCore

DecoderCore::DecoderCore(std::shared_ptr<Sys> sys, std::string path) : sys_(std::move(sys)), path_(std::move(path)) {}

DecoderCore::~DecoderCore() { Close(); }

SysError DecoderCore::Fail(int err, const char* request) const { return SysError(err, "ioctl", request, path_); }

uint32_t DecoderCore::Type(Queue q) const {
  if (q == Queue::kOutput) return mplane_ ? V4L2_BUF_TYPE_VIDEO_OUTPUT_MPLANE : V4L2_BUF_TYPE_VIDEO_OUTPUT;
  return mplane_ ? V4L2_BUF_TYPE_VIDEO_CAPTURE_MPLANE : V4L2_BUF_TYPE_VIDEO_CAPTURE;
}

std::optional<SysError> DecoderCore::Open() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (fd_ >= 0) return std::nullopt;
  int flags = O_RDWR | O_NONBLOCK | O_CLOEXEC;
  int fd = sys_->Open(path_.c_str(), flags);
  if (fd < 0) return SysError(errno, "open", "", path_).Arg("flags", flags);
  v4l2_capability cap;
  memset(&cap, 0, sizeof cap);
  if (sys_->Ioctl(fd, VIDIOC_QUERYCAP, &cap) < 0) {
    SysError e = Fail(errno, "VIDIOC_QUERYCAP");
    sys_->Close(fd);
    return e;
  }
  uint32_t caps = (cap.capabilities & V4L2_CAP_DEVICE_CAPS) ? cap.device_caps : cap.capabilities;
  if (!(caps & (V4L2_CAP_VIDEO_M2M | V4L2_CAP_VIDEO_M2M_MPLANE))) {
    SysError e(ENODEV, "open", "", path_);
    e.detail = "not a V4L2 memory-to-memory device";
    e.Arg("capabilities", caps);
    sys_->Close(fd);
    return e;
  }
  mplane_ = (caps & V4L2_CAP_VIDEO_M2M_MPLANE) && !(caps & V4L2_CAP_VIDEO_M2M);
  fd_ = fd;
  return std::nullopt;
}

void DecoderCore::Close() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (fd_ >= 0) sys_->Close(fd_);
  fd_ = -1;
  streaming_[0] = streaming_[1] = false;
  output_count_ = capture_count_ = 0;
  output_memory_ = 0;
  queue_caps_[0] = queue_caps_[1] = 0;
  output_queued_.clear();
}

bool DecoderCore::is_open() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return fd_ >= 0;
}

int DecoderCore::fd() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return fd_;
}

std::optional<SysError> DecoderCore::QueryCap(v4l2_capability* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  memset(out, 0, sizeof *out);
  if (sys_->Ioctl(fd_, VIDIOC_QUERYCAP, out) < 0) return Fail(errno, "VIDIOC_QUERYCAP");
  return std::nullopt;
}

std::optional<SysError> DecoderCore::EnumFormats(Queue q, std::vector<v4l2_fmtdesc>* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  out->clear();
  for (uint32_t i = 0; i < 64; i++) {
    v4l2_fmtdesc d;
    memset(&d, 0, sizeof d);
    d.index = i;
    d.type = Type(q);
    if (sys_->Ioctl(fd_, VIDIOC_ENUM_FMT, &d) < 0) {
      if (errno == EINVAL) break;  // end of the list
      return Fail(errno, "VIDIOC_ENUM_FMT").Arg("index", i);
    }
    out->push_back(d);
  }
  return std::nullopt;
}

static void FormatFromV4l2(const v4l2_format& f, bool mplane, Format* out) {
  if (mplane) {
    out->fourcc = f.fmt.pix_mp.pixelformat;
    out->width = f.fmt.pix_mp.width;
    out->height = f.fmt.pix_mp.height;
    out->bytesperline = f.fmt.pix_mp.plane_fmt[0].bytesperline;
    out->sizeimage = f.fmt.pix_mp.plane_fmt[0].sizeimage;
  } else {
    out->fourcc = f.fmt.pix.pixelformat;
    out->width = f.fmt.pix.width;
    out->height = f.fmt.pix.height;
    out->bytesperline = f.fmt.pix.bytesperline;
    out->sizeimage = f.fmt.pix.sizeimage;
  }
}

std::optional<SysError> DecoderCore::GetFormat(Queue q, Format* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  v4l2_format f;
  memset(&f, 0, sizeof f);
  f.type = Type(q);
  if (sys_->Ioctl(fd_, VIDIOC_G_FMT, &f) < 0) return Fail(errno, "VIDIOC_G_FMT").Arg("type", f.type);
  FormatFromV4l2(f, mplane_, out);
  return std::nullopt;
}

std::optional<SysError> DecoderCore::SetFormat(Queue q, Format* inout) {
  std::lock_guard<std::mutex> lock(mutex_);
  v4l2_format f;
  memset(&f, 0, sizeof f);
  f.type = Type(q);
  if (mplane_) {
    f.fmt.pix_mp.pixelformat = inout->fourcc;
    f.fmt.pix_mp.width = inout->width;
    f.fmt.pix_mp.height = inout->height;
    f.fmt.pix_mp.num_planes = 1;
    f.fmt.pix_mp.plane_fmt[0].sizeimage = inout->sizeimage;
    f.fmt.pix_mp.field = V4L2_FIELD_NONE;
  } else {
    f.fmt.pix.pixelformat = inout->fourcc;
    f.fmt.pix.width = inout->width;
    f.fmt.pix.height = inout->height;
    f.fmt.pix.sizeimage = inout->sizeimage;
    f.fmt.pix.field = V4L2_FIELD_NONE;
  }
  if (sys_->Ioctl(fd_, VIDIOC_S_FMT, &f) < 0) {
    SysError e = Fail(errno, "VIDIOC_S_FMT").Arg("type", f.type).Arg("width", inout->width).Arg("height", inout->height);
    if (e.err == EBUSY) e.detail = "buffers are allocated on that queue; free them (REQBUFS 0) first";
    return e;
  }
  FormatFromV4l2(f, mplane_, inout);
  return std::nullopt;
}

// V4L2_BUF_CAP_SUPPORTS_* bit of a v4l2_memory; 0 for anything vb2 never
// accepts (vb2_verify_memory_type takes MMAP, USERPTR and DMABUF only).
static uint32_t MemoryCapability(uint32_t memory) {
  switch (memory) {
    case V4L2_MEMORY_MMAP: return V4L2_BUF_CAP_SUPPORTS_MMAP;
    case V4L2_MEMORY_USERPTR: return V4L2_BUF_CAP_SUPPORTS_USERPTR;
    case V4L2_MEMORY_DMABUF: return V4L2_BUF_CAP_SUPPORTS_DMABUF;
    default: return 0;
  }
}

static const char* QueueName(Queue q) { return q == Queue::kOutput ? "OUTPUT" : "CAPTURE"; }

void DecoderCore::ExplainReqbufsLocked(SysError* e, Queue q, uint32_t type, uint32_t memory) const {
  if (e->err == EBUSY) {
    e->detail = "the queue is streaming or its buffers are still mapped or exported";
    return;
  }
  if (e->err != EINVAL) return;
  // The kernel checks the type first (check_fmt, then vb2_verify_memory_type
  // against q->type), then the memory.
  uint32_t caps = queue_caps_[static_cast<int>(q)];
  if (type != Type(q)) {
    e->Reason("v4l2-buffer-type-unsupported");
    e->detail = "buffer type " + std::to_string(type) + " is not the " + QueueName(q) + " queue's type " +
                std::to_string(Type(q)) + (mplane_ ? " (a multi-planar device)" : " (a single-planar device)");
  } else if (MemoryCapability(memory) == 0 || (caps != 0 && (caps & MemoryCapability(memory)) == 0)) {
    e->Reason("v4l2-memory-type-unsupported");
    if (caps != 0) e->Arg("capabilities", caps);
    e->detail = "memory type " + std::to_string(memory) + " is not supported by the " + QueueName(q) + " queue";
  } else {
    e->detail = "the queue does not support that buffer type or memory type";
  }
}

std::optional<SysError> DecoderCore::Probe(Queue q, v4l2_memory memory, uint32_t* capabilities) {
  std::lock_guard<std::mutex> lock(mutex_);
  v4l2_requestbuffers r;
  memset(&r, 0, sizeof r);
  r.count = 0;
  r.type = Type(q);
  r.memory = memory;
  if (sys_->Ioctl(fd_, VIDIOC_REQBUFS, &r) < 0) {
    SysError e = Fail(errno, "VIDIOC_REQBUFS").Arg("count", 0).Arg("type", r.type).Arg("memory", memory);
    ExplainReqbufsLocked(&e, q, r.type, memory);
    return e;
  }
  *capabilities = r.capabilities;
  queue_caps_[static_cast<int>(q)] = r.capabilities;
  if (q == Queue::kOutput) {
    output_count_ = 0;
    output_memory_ = 0;
    output_queued_.clear();
  } else {
    capture_count_ = 0;
  }
  return std::nullopt;
}

std::optional<SysError> DecoderCore::RequestBuffers(Queue q, uint32_t memory, uint32_t* count, uint32_t raw_type) {
  std::lock_guard<std::mutex> lock(mutex_);
  v4l2_requestbuffers r;
  memset(&r, 0, sizeof r);
  r.count = *count;
  r.type = raw_type != 0 ? raw_type : Type(q);
  r.memory = memory;
  if (sys_->Ioctl(fd_, VIDIOC_REQBUFS, &r) < 0) {
    SysError e = Fail(errno, "VIDIOC_REQBUFS").Arg("count", *count).Arg("type", r.type).Arg("memory", memory);
    ExplainReqbufsLocked(&e, q, r.type, memory);
    return e;
  }
  *count = r.count;
  // A raw type the kernel took names the queue that got the buffers.
  if (r.type != Type(q)) q = V4L2_TYPE_IS_OUTPUT(r.type) ? Queue::kOutput : Queue::kCapture;
  queue_caps_[static_cast<int>(q)] = r.capabilities;
  if (q == Queue::kOutput) {
    output_count_ = r.count;
    output_memory_ = r.count > 0 ? memory : 0;
    output_queued_.assign(r.count, false);
    // The plane size the queue now knows: rule 1 of the import (bytesused
    // must not exceed it) is decided against this (kernel-facts.md).
    v4l2_format f;
    memset(&f, 0, sizeof f);
    f.type = Type(q);
    if (sys_->Ioctl(fd_, VIDIOC_G_FMT, &f) == 0) {
      Format fmt;
      FormatFromV4l2(f, mplane_, &fmt);
      output_sizeimage_ = fmt.sizeimage;
    }
  } else {
    capture_count_ = r.count;
  }
  return std::nullopt;
}

std::optional<SysError> DecoderCore::StreamOn(Queue q) {
  std::lock_guard<std::mutex> lock(mutex_);
  int type = static_cast<int>(Type(q));
  if (sys_->Ioctl(fd_, VIDIOC_STREAMON, &type) < 0) return Fail(errno, "VIDIOC_STREAMON").Arg("type", type);
  streaming_[static_cast<int>(q)] = true;
  return std::nullopt;
}

std::optional<SysError> DecoderCore::StreamOff(Queue q) {
  std::lock_guard<std::mutex> lock(mutex_);
  int type = static_cast<int>(Type(q));
  if (sys_->Ioctl(fd_, VIDIOC_STREAMOFF, &type) < 0) return Fail(errno, "VIDIOC_STREAMOFF").Arg("type", type);
  streaming_[static_cast<int>(q)] = false;
  // vb2_core_streamoff() hands every buffer back without DQBUF.
  if (q == Queue::kOutput) output_queued_.assign(output_queued_.size(), false);
  return std::nullopt;
}

std::optional<SysError> DecoderCore::QueueDmabuf(uint32_t slot, int dmabuf_fd, uint32_t bytesused,
                                                 uint64_t dmabuf_size) {
  std::lock_guard<std::mutex> lock(mutex_);
  BufferArg a(Type(Queue::kOutput), V4L2_MEMORY_DMABUF, mplane_);
  a.buf.index = slot;
  a.buf.field = V4L2_FIELD_NONE;
  if (mplane_) {
    a.plane.m.fd = dmabuf_fd;
    a.plane.bytesused = bytesused;
    a.plane.length = static_cast<uint32_t>(dmabuf_size);
  } else {
    a.buf.m.fd = dmabuf_fd;
    a.buf.bytesused = bytesused;
    a.buf.length = static_cast<uint32_t>(dmabuf_size);
  }
  if (sys_->Ioctl(fd_, VIDIOC_QBUF, &a.buf) < 0) {
    SysError e = Fail(errno, "VIDIOC_QBUF");
    e.Arg("index", slot).Arg("fd", dmabuf_fd).Arg("bytesused", bytesused).Arg("dmabufSize", static_cast<int64_t>(dmabuf_size));
    e.Arg("sizeimage", output_sizeimage_);
    if (e.err == EINVAL) {
      if (slot >= output_count_) {
        e.Reason("index-out-of-range").Arg("count", output_count_);
        e.detail = "OUTPUT slot out of range (" + std::to_string(output_count_) + " buffers requested)";
      } else if (slot < output_queued_.size() && output_queued_[slot]) {
        e.Reason("buffer-already-queued");
        e.detail = "OUTPUT slot " + std::to_string(slot) + " is already queued in the decoder";
      } else if (output_sizeimage_ != 0 && bytesused > output_sizeimage_) {
        e.Reason("import-bytesused-above-sizeimage");
        e.detail = "bytesused " + std::to_string(bytesused) + " exceeds the decoder's OUTPUT sizeimage " +
                   std::to_string(output_sizeimage_) + ": use pool buffers no larger than sizeimage";
      } else if (output_sizeimage_ != 0 && dmabuf_size < output_sizeimage_) {
        e.Reason("import-dmabuf-below-sizeimage");
        e.detail = "the dmabuf (" + std::to_string(dmabuf_size) + " bytes) is smaller than the decoder's OUTPUT "
                   "sizeimage " + std::to_string(output_sizeimage_) + ": use pool buffers whose page-aligned size "
                   "reaches sizeimage";
      } else if (output_memory_ != V4L2_MEMORY_DMABUF) {
        e.detail = "the OUTPUT queue's buffers were not requested as DMABUF";
      } else if (output_sizeimage_ != 0) {
        // Every size fits and the memory type is right: what is left is the
        // memory itself (a dma-contig decoder, vmalloc demux buffers).
        e.Reason("import-memory-not-contiguous");
        e.detail = "the decoder refused the buffer although its sizes fit; it may need physically contiguous "
                   "memory (demux buffers are vmalloc)";
      }
    } else if (e.err == EFAULT) {
      // videobuf2-dma-contig: "contiguous chunk is too small".
      e.Reason("import-memory-not-contiguous");
      e.detail = "the decoder could not map the dmabuf; it needs physically contiguous memory (demux buffers "
                 "are vmalloc)";
    }
    return e;
  }
  if (slot < output_queued_.size()) output_queued_[slot] = true;
  return std::nullopt;
}

std::optional<SysError> DecoderCore::DequeueOutput(std::optional<DecodedBuffer>* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  out->reset();
  BufferArg a(Type(Queue::kOutput), V4L2_MEMORY_DMABUF, mplane_);
  if (sys_->Ioctl(fd_, VIDIOC_DQBUF, &a.buf) < 0) {
    if (errno == EAGAIN) return std::nullopt;
    return Fail(errno, "VIDIOC_DQBUF").Arg("type", a.buf.type);
  }
  if (a.buf.index < output_queued_.size()) output_queued_[a.buf.index] = false;
  *out = DecodedBuffer{a.buf.index, a.bytesused(mplane_), a.buf.flags, a.buf.sequence};
  return std::nullopt;
}

std::optional<SysError> DecoderCore::SetupCapture(uint32_t* count) {
  if (auto e = RequestBuffers(Queue::kCapture, V4L2_MEMORY_MMAP, count)) return e;
  for (uint32_t i = 0; i < *count; i++)
    if (auto e = QueueCapture(i)) return e;
  return std::nullopt;
}

std::optional<SysError> DecoderCore::QueueCapture(uint32_t index) {
  std::lock_guard<std::mutex> lock(mutex_);
  BufferArg a(Type(Queue::kCapture), V4L2_MEMORY_MMAP, mplane_);
  a.buf.index = index;
  if (sys_->Ioctl(fd_, VIDIOC_QBUF, &a.buf) < 0) return Fail(errno, "VIDIOC_QBUF").Arg("type", a.buf.type).Arg("index", index);
  return std::nullopt;
}

std::optional<SysError> DecoderCore::DequeueCapture(std::optional<DecodedBuffer>* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  out->reset();
  BufferArg a(Type(Queue::kCapture), V4L2_MEMORY_MMAP, mplane_);
  if (sys_->Ioctl(fd_, VIDIOC_DQBUF, &a.buf) < 0) {
    if (errno == EAGAIN) return std::nullopt;
    return Fail(errno, "VIDIOC_DQBUF").Arg("type", a.buf.type);
  }
  *out = DecodedBuffer{a.buf.index, a.bytesused(mplane_), a.buf.flags, a.buf.sequence};
  return std::nullopt;
}

std::optional<SysError> DecoderCore::SubscribeEvents() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (uint32_t type : {static_cast<uint32_t>(V4L2_EVENT_SOURCE_CHANGE), static_cast<uint32_t>(V4L2_EVENT_EOS)}) {
    v4l2_event_subscription s;
    memset(&s, 0, sizeof s);
    s.type = type;
    // Not every m2m device has events (vim2m has none): ENOTTY/EINVAL are fine.
    if (sys_->Ioctl(fd_, VIDIOC_SUBSCRIBE_EVENT, &s) < 0 && errno != ENOTTY && errno != EINVAL)
      return Fail(errno, "VIDIOC_SUBSCRIBE_EVENT").Arg("type", type);
  }
  return std::nullopt;
}

std::optional<SysError> DecoderCore::DequeueEvent(std::optional<v4l2_event>* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  out->reset();
  v4l2_event ev;
  memset(&ev, 0, sizeof ev);
  if (sys_->Ioctl(fd_, VIDIOC_DQEVENT, &ev) < 0) {
    if (errno == ENOENT || errno == EAGAIN || errno == ENOTTY) return std::nullopt;
    return Fail(errno, "VIDIOC_DQEVENT");
  }
  *out = ev;
  return std::nullopt;
}

uint32_t DecoderCore::output_sizeimage() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return output_sizeimage_;
}
uint32_t DecoderCore::output_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return output_count_;
}
uint32_t DecoderCore::capture_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return capture_count_;
}
bool DecoderCore::streaming(Queue q) const {
  std::lock_guard<std::mutex> lock(mutex_);
  return streaming_[static_cast<int>(q)];
}

std::vector<VideoDeviceEntry> ListVideoDevices(Sys* sys) {
  static const char kClass[] = "/sys/class/video4linux";
  std::vector<VideoDeviceEntry> out;
  std::vector<std::string> entries;
  if (sys->ListDir(kClass, &entries) < 0) return out;
  std::sort(entries.begin(), entries.end());
  for (const std::string& entry : entries) {
    if (entry.rfind("video", 0) != 0) continue;
    std::string text;
    if (sys->ReadTextFile(std::string(kClass) + "/" + entry + "/name", &text) < 0) continue;
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    out.push_back(VideoDeviceEntry{"/dev/" + entry, text});
  }
  return out;
}

std::string FindVideoDeviceByName(Sys* sys, const std::string& name) {
  for (const VideoDeviceEntry& e : ListVideoDevices(sys))
    if (e.name == name) return e.path;
  return "";
}

// ---------------------------------------------------------------- DecoderSink

DecoderSink::DecoderSink(std::shared_ptr<DecoderCore> core) : core_(std::move(core)) {}

void DecoderSink::Attach(SinkHost* host) {
  host_ = host;
  attached_ = true;
  slot_to_index_.assign(core_->output_count(), -1);
  gone_ = !core_->is_open();
}

void DecoderSink::AddPollFds(std::vector<struct pollfd>* fds) {
  if (gone_ || MonotonicNs() < quiet_until_ns_) return;
  fds->push_back(pollfd{core_->fd(), POLLIN | POLLOUT | POLLPRI, 0});
}

int DecoderSink::NextTimeoutMs() {
  if (gone_) return -1;
  uint64_t now = MonotonicNs();
  if (now >= quiet_until_ns_) return -1;
  return static_cast<int>((quiet_until_ns_ - now) / 1000000) + 1;
}

void DecoderSink::ReturnAllHeld() {
  for (size_t slot = 0; slot < slot_to_index_.size(); slot++) {
    if (slot_to_index_[slot] < 0) continue;
    uint32_t index = static_cast<uint32_t>(slot_to_index_[slot]);
    slot_to_index_[slot] = -1;
    host_->Returned(index);
  }
}

void DecoderSink::Gone(const SysError& why) {
  if (gone_) return;
  gone_ = true;
  // The decoder will never return what it held: the buffers are ours again,
  // and the demux pool keeps cycling without it.
  ReturnAllHeld();
  {
    std::lock_guard<std::mutex> lock(counters_mutex_);
    counters_.gone = true;
  }
  host_->Error(why);
  host_->Note("decoder-gone", SysErrorMessage(why));
}

static bool IsGoneErrno(int err) { return err == ENODEV || err == ENXIO || err == EIO || err == EBADF; }

void DecoderSink::DrainOutput() {
  for (;;) {
    std::optional<DecodedBuffer> d;
    if (auto e = core_->DequeueOutput(&d)) {
      if (IsGoneErrno(e->err)) Gone(*e);
      else if (e->err != EINVAL && e->err != EPIPE) host_->Error(*e);
      return;
    }
    if (!d) return;
    if (d->index < slot_to_index_.size() && slot_to_index_[d->index] >= 0) {
      uint32_t index = static_cast<uint32_t>(slot_to_index_[d->index]);
      slot_to_index_[d->index] = -1;
      {
        std::lock_guard<std::mutex> lock(counters_mutex_);
        counters_.returned++;
      }
      host_->Returned(index);
    }
  }
}

void DecoderSink::DrainCapture() {
  for (;;) {
    std::optional<DecodedBuffer> d;
    if (auto e = core_->DequeueCapture(&d)) {
      if (IsGoneErrno(e->err)) Gone(*e);
      else if (e->err != EINVAL && e->err != EPIPE) host_->Error(*e);
      return;
    }
    if (!d) return;
    {
      std::lock_guard<std::mutex> lock(counters_mutex_);
      counters_.capture_frames++;
    }
    // Headless: nobody reads the frame; give the buffer straight back.
    if (auto e = core_->QueueCapture(d->index)) {
      if (IsGoneErrno(e->err)) Gone(*e);
      else host_->Error(*e);
      return;
    }
  }
}

void DecoderSink::DrainEvents() {
  for (int i = 0; i < 16; i++) {
    std::optional<v4l2_event> ev;
    if (auto e = core_->DequeueEvent(&ev)) {
      if (IsGoneErrno(e->err)) Gone(*e);
      return;
    }
    if (!ev) return;
    {
      std::lock_guard<std::mutex> lock(counters_mutex_);
      counters_.events++;
    }
    if (ev->type == V4L2_EVENT_SOURCE_CHANGE) {
      // A stateful decoder found the stream's resolution: reallocate
      // CAPTURE for it so decoding goes on with nobody watching.
      host_->Note("source-change", "reallocating CAPTURE buffers");
      uint32_t count = core_->capture_count() ? core_->capture_count() : 4;
      core_->StreamOff(Queue::kCapture);
      uint32_t zero_caps = 0;
      core_->Probe(Queue::kCapture, V4L2_MEMORY_MMAP, &zero_caps);
      if (auto e = core_->SetupCapture(&count)) host_->Error(*e);
      else if (auto e2 = core_->StreamOn(Queue::kCapture)) host_->Error(*e2);
    } else if (ev->type == V4L2_EVENT_EOS) {
      host_->Note("end-of-stream", "");
    }
  }
}

void DecoderSink::OnPoll(const struct pollfd* fds, size_t count) {
  if (gone_ || count == 0) return;
  short re = fds[0].revents;
  if (re == 0) return;
  if (re & POLLNVAL) {
    Gone(SysError(EBADF, "poll", "", core_->path()));
    return;
  }
  if (re & POLLPRI) DrainEvents();
  if (re & (POLLOUT | POLLERR | POLLHUP)) DrainOutput();
  if (!gone_ && (re & (POLLIN | POLLERR | POLLHUP))) DrainCapture();
  if (!gone_ && (re & (POLLERR | POLLHUP))) {
    // v4l2_m2m_poll says POLLERR when neither queue has anything queued or
    // a queue is not streaming; don't spin on it.
    quiet_until_ns_ = MonotonicNs() + 20 * 1000000ull;
  }
}

SubmitResult DecoderSink::Submit(const SinkBuffer& buffer) {
  if (gone_) return SubmitResult::kDeclined;
  int64_t slot = -1;
  // Prefer the slot with the buffer's own index: vb2 keeps the dmabuf
  // attachment per slot, so the same fd in the same slot re-imports cheaply.
  if (buffer.index < slot_to_index_.size() && slot_to_index_[buffer.index] < 0) slot = buffer.index;
  for (size_t i = 0; slot < 0 && i < slot_to_index_.size(); i++)
    if (slot_to_index_[i] < 0) slot = static_cast<int64_t>(i);
  if (slot < 0) {
    std::lock_guard<std::mutex> lock(counters_mutex_);
    counters_.no_free_slot++;
    return SubmitResult::kDeclined;
  }
  if (!core_->streaming(Queue::kOutput)) {
    if (auto e = core_->StreamOn(Queue::kOutput)) {
      if (IsGoneErrno(e->err)) Gone(*e);
      else host_->Error(*e);
      return SubmitResult::kDeclined;
    }
  }
  if (auto e = core_->QueueDmabuf(static_cast<uint32_t>(slot), buffer.dmabuf_fd, buffer.bytesused,
                                  buffer.dmabuf_size)) {
    if (IsGoneErrno(e->err)) {
      Gone(*e);
    } else {
      std::lock_guard<std::mutex> lock(counters_mutex_);
      counters_.import_rejected++;
    }
    if (!gone_) host_->Error(*e);
    return SubmitResult::kDeclined;
  }
  slot_to_index_[static_cast<size_t>(slot)] = buffer.index;
  std::lock_guard<std::mutex> lock(counters_mutex_);
  counters_.imported++;
  return SubmitResult::kTaken;
}

void DecoderSink::RecoverAll() {
  // STREAMOFF hands every OUTPUT buffer back to userspace at once.
  if (!gone_ && core_->streaming(Queue::kOutput)) {
    if (auto e = core_->StreamOff(Queue::kOutput)) {
      if (IsGoneErrno(e->err)) gone_ = true;
    }
  }
  ReturnAllHeld();
  attached_ = false;
}

DecoderSink::Counters DecoderSink::counters() const {
  std::lock_guard<std::mutex> lock(counters_mutex_);
  return counters_;
}

// ---------------------------------------------------------------- Decoder (JS)

Napi::Function Decoder::DefineClass(Napi::Env env) {
  return ObjectWrap<Decoder>::DefineClass(
      env, "Decoder",
      {
          StaticMethod<&Decoder::JS_find>("find"),
          StaticMethod<&Decoder::JS_list>("list"),
          InstanceMethod<&Decoder::JS_querycap>("querycap"),
          InstanceMethod<&Decoder::JS_enumFormats>("enumFormats"),
          InstanceMethod<&Decoder::JS_getFormat>("getFormat"),
          InstanceMethod<&Decoder::JS_setFormat>("setFormat"),
          InstanceMethod<&Decoder::JS_probeBuffers>("probeBuffers"),
          InstanceMethod<&Decoder::JS_requestBuffers>("requestBuffers"),
          InstanceMethod<&Decoder::JS_queueDmabuf>("queueDmabuf"),
          InstanceMethod<&Decoder::JS_dequeueOutput>("dequeueOutput"),
          InstanceMethod<&Decoder::JS_setupCapture>("setupCapture"),
          InstanceMethod<&Decoder::JS_dequeueCapture>("dequeueCapture"),
          InstanceMethod<&Decoder::JS_queueCapture>("queueCapture"),
          InstanceMethod<&Decoder::JS_streamOn>("streamOn"),
          InstanceMethod<&Decoder::JS_streamOff>("streamOff"),
          InstanceMethod<&Decoder::JS_prepare>("prepare"),
          InstanceMethod<&Decoder::JS_stats>("stats"),
          InstanceMethod<&Decoder::JS_close>("close"),
          InstanceAccessor<&Decoder::JS_getFd>("fd"),
          InstanceAccessor<&Decoder::JS_getPath>("path"),
      });
}

Decoder* Decoder::FromValue(Napi::Env env, const Napi::Value& value) {
  AddonData* data = AddonData::Get(env);
  if (!IsInstanceOf(value, data->decoder_ctor)) return nullptr;
  return Decoder::Unwrap(value.As<Napi::Object>());
}

// Decoder.find(name, { simulation? }) -> '/dev/videoN' | null
Napi::Value Decoder::JS_find(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgString(env, info[0], "name");
  Napi::Object options = info[1].IsUndefined() ? Napi::Object::New(env) : ArgObject(env, info[1], "options");
  std::shared_ptr<Sys> sys = SysFromOptions(env, options);
  std::string path = FindVideoDeviceByName(sys.get(), name);
  if (path.empty()) return env.Null();
  return Napi::String::New(env, path);
}

// Decoder.list({ simulation? }) -> [{ path, name }]
Napi::Value Decoder::JS_list(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object options = info[0].IsUndefined() ? Napi::Object::New(env) : ArgObject(env, info[0], "options");
  std::shared_ptr<Sys> sys = SysFromOptions(env, options);
  Napi::Array out = Napi::Array::New(env);
  uint32_t i = 0;
  for (const VideoDeviceEntry& e : ListVideoDevices(sys.get())) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("path", e.path);
    o.Set("name", e.name);
    out.Set(i++, o);
  }
  return out;
}

// new Decoder(pathOrName, { simulation? }): a path starts with '/', anything
// else is a device name looked up under /sys/class/video4linux.
Decoder::Decoder(const Napi::CallbackInfo& info) : ObjectWrap<Decoder>(info) {
  Napi::Env env = info.Env();
  std::string target = ArgString(env, info[0], "pathOrName");
  Napi::Object options = info[1].IsUndefined() ? Napi::Object::New(env) : ArgObject(env, info[1], "options");
  std::shared_ptr<Sys> sys = SysFromOptions(env, options);
  std::string path = target;
  if (target.empty() || target[0] != '/') {
    path = FindVideoDeviceByName(sys.get(), target);
    if (path.empty()) {
      SysError e(ENOENT, "open", "", "/sys/class/video4linux");
      e.detail = "no V4L2 device named '" + target + "'";
      ThrowSysError(env, e);
    }
  }
  core_ = std::make_shared<DecoderCore>(sys, path);
  if (auto e = core_->Open()) ThrowSysError(env, *e);
  AddonData::Get(env)->Register(this);
  registered_ = true;
}

Decoder::~Decoder() {
  if (core_ && core_.use_count() == 1) core_->Close();
  if (registered_) AddonData::Get(Env())->Unregister(this);
}

std::shared_ptr<DecoderSink> Decoder::sink() {
  if (!sink_) sink_ = std::make_shared<DecoderSink>(core_);
  return sink_;
}

void Decoder::CloseFromCleanup() {
  if (core_) core_->Close();
  registered_ = false;
}

DecoderCore& Decoder::Open(Napi::Env env) {
  if (!core_->is_open()) ThrowSysError(env, SysError(EBADF, "ioctl", "", core_->path()).Arg("closed", 1));
  return *core_;
}

Napi::Value Decoder::JS_querycap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  v4l2_capability cap;
  if (auto e = Open(env).QueryCap(&cap)) ThrowSysError(env, *e);
  auto str = [](const uint8_t* s, size_t n) {
    return std::string(reinterpret_cast<const char*>(s), strnlen(reinterpret_cast<const char*>(s), n));
  };
  uint32_t caps = (cap.capabilities & V4L2_CAP_DEVICE_CAPS) ? cap.device_caps : cap.capabilities;
  Napi::Object o = Napi::Object::New(env);
  o.Set("driver", str(cap.driver, sizeof cap.driver));
  o.Set("card", str(cap.card, sizeof cap.card));
  o.Set("busInfo", str(cap.bus_info, sizeof cap.bus_info));
  o.Set("capabilities", cap.capabilities);
  o.Set("deviceCaps", caps);
  o.Set("multiplanar", core_->multiplanar());
  o.Set("streaming", (caps & V4L2_CAP_STREAMING) != 0);
  return o;
}

Napi::Value Decoder::JS_enumFormats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Queue q = ArgQueue(env, info[0]);
  std::vector<v4l2_fmtdesc> list;
  if (auto e = Open(env).EnumFormats(q, &list)) ThrowSysError(env, *e);
  Napi::Array out = Napi::Array::New(env);
  for (size_t i = 0; i < list.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("fourcc", FourccToString(list[i].pixelformat));
    o.Set("description", std::string(reinterpret_cast<const char*>(list[i].description)));
    o.Set("compressed", (list[i].flags & V4L2_FMT_FLAG_COMPRESSED) != 0);
    out.Set(static_cast<uint32_t>(i), o);
  }
  return out;
}

static Napi::Object FormatToJs(Napi::Env env, const Format& f) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("fourcc", FourccToString(f.fourcc));
  o.Set("width", f.width);
  o.Set("height", f.height);
  o.Set("bytesperline", f.bytesperline);
  o.Set("sizeimage", f.sizeimage);
  return o;
}

Napi::Value Decoder::JS_getFormat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Queue q = ArgQueue(env, info[0]);
  Format f;
  if (auto e = Open(env).GetFormat(q, &f)) ThrowSysError(env, *e);
  return FormatToJs(env, f);
}

// setFormat(queue, { fourcc, width, height, sizeimage? }) -> the format the driver chose
Napi::Value Decoder::JS_setFormat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Queue q = ArgQueue(env, info[0]);
  Napi::Object o = ArgObject(env, info[1], "format");
  Format f;
  f.fourcc = FourccFromString(env, o.Get("fourcc"), "format.fourcc");
  f.width = ArgUint32(env, o.Get("width"), "format.width", 1, 16384);
  f.height = ArgUint32(env, o.Get("height"), "format.height", 1, 16384);
  f.sizeimage = OptUint32(env, o, "sizeimage", 0, 0, 256u << 20);
  if (auto e = Open(env).SetFormat(q, &f)) ThrowSysError(env, *e);
  return FormatToJs(env, f);
}

// probeBuffers(queue, memory = 'dmabuf' for output, 'mmap' for capture)
//   -> { capabilities, supportsMmap, supportsUserptr, supportsDmabuf, supportsRequests, supportsOrphanedBufs }
Napi::Value Decoder::JS_probeBuffers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Queue q = ArgQueue(env, info[0]);
  v4l2_memory memory = ArgMemory(env, info[1], q == Queue::kOutput ? V4L2_MEMORY_DMABUF : V4L2_MEMORY_MMAP);
  uint32_t caps = 0;
  if (auto e = Open(env).Probe(q, memory, &caps)) ThrowSysError(env, *e);
  Napi::Object o = Napi::Object::New(env);
  o.Set("capabilities", caps);
  o.Set("supportsMmap", (caps & V4L2_BUF_CAP_SUPPORTS_MMAP) != 0);
  o.Set("supportsUserptr", (caps & V4L2_BUF_CAP_SUPPORTS_USERPTR) != 0);
  o.Set("supportsDmabuf", (caps & V4L2_BUF_CAP_SUPPORTS_DMABUF) != 0);
  o.Set("supportsRequests", (caps & V4L2_BUF_CAP_SUPPORTS_REQUESTS) != 0);
  o.Set("supportsOrphanedBufs", (caps & V4L2_BUF_CAP_SUPPORTS_ORPHANED_BUFS) != 0);
  return o;
}

// requestBuffers(queue, memory, count, { raw?: { type?, memory? } }) -> granted count.
// `raw` sends a v4l2_buf_type / v4l2_memory number as is, so that tests can
// make the kernel refuse a type or memory the queue lacks.
Napi::Value Decoder::JS_requestBuffers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Queue q = ArgQueue(env, info[0]);
  uint32_t memory = ArgMemory(env, info[1], V4L2_MEMORY_MMAP);
  uint32_t count = ArgUint32(env, info[2], "count", 0, VIDEO_MAX_FRAME);
  uint32_t raw_type = 0;
  if (!info[3].IsUndefined()) {
    Napi::Value raw = ArgObject(env, info[3], "options").Get("raw");
    if (!raw.IsUndefined()) {
      Napi::Object r = ArgObject(env, raw, "options.raw");
      raw_type = OptUint32(env, r, "type", 0, 1, 255);
      memory = OptUint32(env, r, "memory", memory, 0, 255);
    }
  }
  if (auto e = Open(env).RequestBuffers(q, memory, &count, raw_type)) ThrowSysError(env, *e);
  return Napi::Number::New(env, count);
}

// queueDmabuf(slot, fd, bytesused): a raw OUTPUT import (tests, diagnosis).
Napi::Value Decoder::JS_queueDmabuf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DecoderCore& core = Open(env);
  uint32_t slot = ArgUint32(env, info[0], "slot", 0, VIDEO_MAX_FRAME - 1);
  int fd = static_cast<int>(ArgUint32(env, info[1], "fd", 0, INT32_MAX));
  uint32_t bytesused = ArgUint32(env, info[2], "bytesused");
  off_t end = lseek(fd, 0, SEEK_END);
  if (end < 0) ThrowSysError(env, SysError(errno, "lseek", "", "").Arg("fd", fd));
  if (auto e = core.QueueDmabuf(slot, fd, bytesused, static_cast<uint64_t>(end))) ThrowSysError(env, *e);
  return env.Undefined();
}

static Napi::Value DecodedToJs(Napi::Env env, const std::optional<DecodedBuffer>& d) {
  if (!d) return env.Null();
  Napi::Object o = Napi::Object::New(env);
  o.Set("index", d->index);
  o.Set("bytesused", d->bytesused);
  o.Set("flags", d->flags);
  o.Set("sequence", d->sequence);
  return o;
}

Napi::Value Decoder::JS_dequeueOutput(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::optional<DecodedBuffer> d;
  if (auto e = Open(env).DequeueOutput(&d)) ThrowSysError(env, *e);
  return DecodedToJs(env, d);
}

Napi::Value Decoder::JS_setupCapture(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t count = ArgUint32(env, info[0], "count", 1, VIDEO_MAX_FRAME);
  if (auto e = Open(env).SetupCapture(&count)) ThrowSysError(env, *e);
  return Napi::Number::New(env, count);
}

Napi::Value Decoder::JS_dequeueCapture(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::optional<DecodedBuffer> d;
  if (auto e = Open(env).DequeueCapture(&d)) ThrowSysError(env, *e);
  return DecodedToJs(env, d);
}

Napi::Value Decoder::JS_queueCapture(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t index = ArgUint32(env, info[0], "index", 0, VIDEO_MAX_FRAME - 1);
  if (auto e = Open(env).QueueCapture(index)) ThrowSysError(env, *e);
  return env.Undefined();
}

Napi::Value Decoder::JS_streamOn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (auto e = Open(env).StreamOn(ArgQueue(env, info[0]))) ThrowSysError(env, *e);
  return env.Undefined();
}

Napi::Value Decoder::JS_streamOff(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (auto e = Open(env).StreamOff(ArgQueue(env, info[0]))) ThrowSysError(env, *e);
  return env.Undefined();
}

// prepare({ outputCount, captureCount = 4 }) -> { outputCount, captureCount }
// OUTPUT as DMABUF import slots, CAPTURE as MMAP buffers all queued, both
// streaming: what the pump needs. Formats must be set before.
Napi::Value Decoder::JS_prepare(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DecoderCore& core = Open(env);
  Napi::Object o = ArgObject(env, info[0], "options");
  uint32_t out_count = ArgUint32(env, o.Get("outputCount"), "outputCount", 1, VIDEO_MAX_FRAME);
  uint32_t cap_count = OptUint32(env, o, "captureCount", 4, 1, VIDEO_MAX_FRAME);
  if (auto e = core.SubscribeEvents()) ThrowSysError(env, *e);
  if (auto e = core.RequestBuffers(Queue::kOutput, V4L2_MEMORY_DMABUF, &out_count)) ThrowSysError(env, *e);
  if (out_count == 0) {
    SysError e(ENOMEM, "ioctl", "VIDIOC_REQBUFS", core.path());
    e.detail = "the decoder granted no OUTPUT buffers";
    ThrowSysError(env, e);
  }
  if (auto e = core.SetupCapture(&cap_count)) ThrowSysError(env, *e);
  if (auto e = core.StreamOn(Queue::kCapture)) ThrowSysError(env, *e);
  if (auto e = core.StreamOn(Queue::kOutput)) ThrowSysError(env, *e);
  Napi::Object r = Napi::Object::New(env);
  r.Set("outputCount", out_count);
  r.Set("captureCount", cap_count);
  r.Set("outputSizeimage", core.output_sizeimage());
  return r;
}

Napi::Value Decoder::JS_stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DecoderSink::Counters c = sink_ ? sink_->counters() : DecoderSink::Counters{};
  Napi::Object o = Napi::Object::New(env);
  o.Set("imported", static_cast<double>(c.imported));
  o.Set("importRejected", static_cast<double>(c.import_rejected));
  o.Set("returned", static_cast<double>(c.returned));
  o.Set("captureFrames", static_cast<double>(c.capture_frames));
  o.Set("events", static_cast<double>(c.events));
  o.Set("noFreeSlot", static_cast<double>(c.no_free_slot));
  o.Set("gone", c.gone);
  o.Set("outputCount", core_->output_count());
  o.Set("captureCount", core_->capture_count());
  o.Set("outputSizeimage", core_->output_sizeimage());
  return o;
}

Napi::Value Decoder::JS_close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (sink_ && sink_->attached()) {
    SysError e(EBUSY, "close", "", core_->path());
    e.Reason("pump-attached").Prevented();
    e.detail = "a pump is feeding this decoder; stop or close the pump first";
    ThrowSysError(env, e);
  }
  core_->Close();
  if (registered_) AddonData::Get(env)->Unregister(this);
  registered_ = false;
  return env.Undefined();
}

Napi::Value Decoder::JS_getFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), core_->fd()); }
Napi::Value Decoder::JS_getPath(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), core_->path());
}

}  // namespace dmx
