#include "demux.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#include "errors.h"
#include "backend.h"

namespace dmx {

using Kind = DemuxCore::Kind;

uint64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

const char* OwnerName(Owner owner) {
  switch (owner) {
    case Owner::kAgent: return "agent";
    case Owner::kKernel: return "kernel";
    case Owner::kDecoder: return "decoder";
    case Owner::kConsumer: return "consumer";
  }
  return "unknown";
}

// ---------------------------------------------------------------- DemuxCore

DemuxCore::DemuxCore(std::shared_ptr<Sys> sys, std::string path, Kind kind)
    : sys_(std::move(sys)), path_(std::move(path)), kind_(kind) {}

DemuxCore::~DemuxCore() { Close(); }

SysError DemuxCore::Fail(int err, const char* request) const {
  return SysError(err, "ioctl", request, path_);
}

std::optional<SysError> DemuxCore::Open() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (fd_ >= 0) return std::nullopt;
  // O_RDWR for both: the DVR allows mmap only when opened O_RDWR, and a
  // later O_RDONLY DVR open would break mmap for the whole adapter.
  int flags = O_RDWR | O_NONBLOCK | O_CLOEXEC;
  int fd = sys_->Open(path_.c_str(), flags);
  if (fd < 0) {
    SysError e = SysError(errno, "open", "", path_).Arg("flags", flags);
    if (e.err == EOPNOTSUPP && kind_ == Kind::kDvr) {
      // dvb_dvr_open() refuses O_RDWR only without CONFIG_DVB_MMAP.
      e.Reason("dvb-mmap-missing");
      e.detail = "the kernel has no CONFIG_DVB_MMAP: the DVR cannot be opened O_RDWR for mmap";
    }
    return e;
  }
  fd_ = fd;
  return std::nullopt;
}

bool DemuxCore::is_open() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return fd_ >= 0;
}

void DemuxCore::ReleasePoolLocked() {
  std::lock_guard<std::mutex> ledger(ledger_mu_);
  for (PoolBuffer& b : buffers_) {
    if (b.map != nullptr) sys_->Munmap(b.map, b.map_length);
    if (b.export_fd >= 0) close(b.export_fd);
    b.map = nullptr;
    b.export_fd = -1;
  }
  for (int fd : extra_export_fds_) close(fd);
  extra_export_fds_.clear();
  buffers_.clear();
}

void DemuxCore::Close() {
  std::lock_guard<std::mutex> lock(mutex_);
  ReleasePoolLocked();
  if (fd_ >= 0) {
    // Closing the node is the only way to stop the vb2 queue and free the
    // kernel's buffers: there is no STREAMOFF on DVB (kernel-facts.md).
    sys_->Close(fd_);
    fd_ = -1;
  }
  streaming_ = false;
  size_ = 0;
  kernel_buf_size_ = 0;
}

std::optional<SysError> DemuxCore::SetPesFilter(uint16_t pid, dmx_output output, dmx_ts_pes pes_type, bool start) {
  std::lock_guard<std::mutex> lock(mutex_);
  dmx_pes_filter_params p;
  memset(&p, 0, sizeof p);
  p.pid = pid;
  p.input = DMX_IN_FRONTEND;
  p.output = output;
  p.pes_type = pes_type;
  p.flags = start ? DMX_IMMEDIATE_START : 0;
  if (sys_->Ioctl(fd_, DMX_SET_PES_FILTER, &p) < 0)
    return Fail(errno, "DMX_SET_PES_FILTER").Arg("pid", pid).Arg("output", output).Arg("pes_type", pes_type);
  return std::nullopt;
}

std::optional<SysError> DemuxCore::SetSectionFilter(uint16_t pid, const dmx_filter& filter, uint32_t timeout_ms,
                                                    uint32_t flags) {
  std::lock_guard<std::mutex> lock(mutex_);
  dmx_sct_filter_params p;
  memset(&p, 0, sizeof p);
  p.pid = pid;
  p.filter = filter;
  p.timeout = timeout_ms;
  p.flags = flags;
  if (sys_->Ioctl(fd_, DMX_SET_FILTER, &p) < 0)
    return Fail(errno, "DMX_SET_FILTER").Arg("pid", pid).Arg("flags", flags);
  return std::nullopt;
}

std::optional<SysError> DemuxCore::AddPid(uint16_t pid) {
  std::lock_guard<std::mutex> lock(mutex_);
  uint16_t arg = pid;
  if (sys_->Ioctl(fd_, DMX_ADD_PID, &arg) < 0) return Fail(errno, "DMX_ADD_PID").Arg("pid", pid);
  return std::nullopt;
}

std::optional<SysError> DemuxCore::Start() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (sys_->Ioctl(fd_, DMX_START, nullptr) < 0) return Fail(errno, "DMX_START");
  return std::nullopt;
}

std::optional<SysError> DemuxCore::Stop() {
  std::lock_guard<std::mutex> lock(mutex_);
  // Stops the filter only; the vb2 queue keeps streaming (kernel-facts.md).
  if (sys_->Ioctl(fd_, DMX_STOP, nullptr) < 0) return Fail(errno, "DMX_STOP");
  return std::nullopt;
}

std::optional<SysError> DemuxCore::SetBufferSize(uint32_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (sys_->Ioctl(fd_, DMX_SET_BUFFER_SIZE, reinterpret_cast<void*>(static_cast<uintptr_t>(bytes))) < 0)
    return Fail(errno, "DMX_SET_BUFFER_SIZE").Arg("size", bytes);
  return std::nullopt;
}

std::optional<SysError> DemuxCore::RequestBuffers(uint32_t* count, uint32_t* size, bool allow_while_streaming) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (streaming_ && !allow_while_streaming) {
    // Never let the kernel see it: a REQBUFS rejected with EBUSY leaves the
    // running stream dead on 6.1 (kernel-facts.md). Resize by reopening.
    SysError e = Fail(EBUSY, "DMX_REQBUFS").Arg("count", *count).Arg("size", *size);
    e.Reason("reqbufs-while-streaming").Prevented();
    e.detail = "refused before the kernel: the queue is streaming and a REQBUFS now would kill the stream; "
               "resize by closing and reopening the node";
    return e;
  }
  if (pump_attached_) {
    SysError e = Fail(EBUSY, "DMX_REQBUFS").Arg("count", *count).Arg("size", *size);
    e.Reason("pump-attached").Prevented();
    e.detail = "a pump is driving this pool; stop it first";
    return e;
  }
  dmx_requestbuffers req;
  req.count = *count;
  req.size = *size;
  if (sys_->Ioctl(fd_, DMX_REQBUFS, &req) < 0) {
    // A rejected REQBUFS frees nothing: the pool and its ledger stay as they were.
    SysError e = Fail(errno, "DMX_REQBUFS").Arg("count", *count).Arg("size", *size);
    if (e.err == ENOTTY) {
      e.Reason("dvb-mmap-missing");
      e.detail = "the kernel has no CONFIG_DVB_MMAP (the DVB mmap API is off by default)";
    } else if (e.err != EINTR && e.err != EFAULT) {
      // dvb_vb2_reqbufs() stored the clamped size before vb2 refused.
      kernel_buf_size_ = std::min(*size, kMaxDemuxBufferSize);
    }
    return e;
  }
  kernel_buf_size_ = req.size;
  // The old buffers are freed (or orphaned until unmapped): drop our
  // mappings and exports of them.
  ReleasePoolLocked();
  *count = req.count;
  *size = req.size;
  size_ = req.size;
  std::lock_guard<std::mutex> ledger(ledger_mu_);
  buffers_.resize(req.count);
  uint64_t now = MonotonicNs();
  for (uint32_t i = 0; i < req.count; i++) {
    buffers_[i].index = i;
    buffers_[i].length = req.size;
    buffers_[i].since_ns = now;
  }
  return std::nullopt;
}

std::optional<SysError> DemuxCore::QueryBuffer(uint32_t index, dmx_buffer* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  memset(out, 0, sizeof *out);
  out->index = index;
  if (sys_->Ioctl(fd_, DMX_QUERYBUF, out) < 0) {
    SysError e = Fail(errno, "DMX_QUERYBUF").Arg("index", index);
    ExplainIndexLocked(&e, index);
    return e;
  }
  return std::nullopt;
}

std::optional<SysError> DemuxCore::MapAll() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (PoolBuffer& b : buffers_) {
    if (b.map != nullptr) continue;
    dmx_buffer q;
    memset(&q, 0, sizeof q);
    q.index = b.index;
    if (sys_->Ioctl(fd_, DMX_QUERYBUF, &q) < 0) {
      SysError e = Fail(errno, "DMX_QUERYBUF").Arg("index", b.index);
      ExplainIndexLocked(&e, b.index);
      return e;
    }
    void* p = sys_->Mmap(q.length, PROT_READ, MAP_SHARED, fd_, q.offset);
    if (p == MAP_FAILED)
      return SysError(errno, "mmap", "", path_).Arg("index", b.index).Arg("length", q.length).Arg("offset", q.offset);
    std::lock_guard<std::mutex> ledger(ledger_mu_);
    b.map = static_cast<uint8_t*>(p);
    b.map_length = q.length;
    b.offset = q.offset;
    b.length = q.length;
  }
  return std::nullopt;
}

std::optional<SysError> DemuxCore::Export(uint32_t index, uint32_t flags, int* fd_out) {
  std::lock_guard<std::mutex> lock(mutex_);
  dmx_exportbuffer exp;
  memset(&exp, 0, sizeof exp);
  exp.index = index;
  exp.flags = flags;
  if (sys_->Ioctl(fd_, DMX_EXPBUF, &exp) < 0) {
    SysError e = Fail(errno, "DMX_EXPBUF").Arg("index", index).Arg("flags", flags);
    // vb2_core_expbuf() checks in this order: MMAP memory (buffers
    // requested), an exporting allocator, the flags, then the index.
    if (e.err == EINVAL && !buffers_.empty() && (flags & ~static_cast<uint32_t>(O_CLOEXEC | O_ACCMODE)) != 0) {
      e.Reason("expbuf-flags-unsupported");
      e.detail = "flags may only combine O_CLOEXEC and O_ACCMODE bits";
    } else {
      ExplainIndexLocked(&e, index);
    }
    return e;
  }
  if (index < buffers_.size() && buffers_[index].export_fd < 0) {
    std::lock_guard<std::mutex> ledger(ledger_mu_);
    PoolBuffer& b = buffers_[index];
    b.export_fd = exp.fd;
    off_t end = lseek(exp.fd, 0, SEEK_END);
    b.dmabuf_size = end < 0 ? 0 : static_cast<uint64_t>(end);
  } else {
    extra_export_fds_.push_back(exp.fd);
  }
  *fd_out = exp.fd;
  return std::nullopt;
}

std::optional<SysError> DemuxCore::ExportAll(uint32_t flags) {
  uint32_t n = count();
  for (uint32_t i = 0; i < n; i++) {
    PoolBuffer b;
    if (GetBuffer(i, &b) && b.export_fd >= 0) continue;
    int fd;
    if (auto e = Export(i, flags, &fd)) return e;
  }
  return std::nullopt;
}

std::optional<SysError> DemuxCore::Queue(uint32_t index) {
  std::lock_guard<std::mutex> lock(mutex_);
  dmx_buffer b;
  memset(&b, 0, sizeof b);
  b.index = index;
  if (sys_->Ioctl(fd_, DMX_QBUF, &b) < 0) {
    SysError e = Fail(errno, "DMX_QBUF").Arg("index", index);
    ExplainIndexLocked(&e, index);
    if (e.err == EINVAL && e.reason.empty() && index < buffers_.size()) {
      const PoolBuffer& b = buffers_[index];
      if (b.owner == Owner::kKernel) {
        e.Reason("buffer-already-queued");
        e.detail = "buffer " + std::to_string(index) + " is already queued in the kernel";
      } else if (kernel_buf_size_ > b.length) {
        // _buffer_prepare(): "data will not fit into plane".
        e.Reason("buffer-smaller-than-expected");
        e.Arg("expectedSize", kernel_buf_size_).Arg("length", b.length);
        e.detail = "a rejected DMX_REQBUFS set the kernel's buffer size to " + std::to_string(kernel_buf_size_) +
                   " bytes, larger than the pool's " + std::to_string(b.length) +
                   "-byte buffers; close and reopen the node";
      }
    }
    return e;
  }
  // dmxdev.c: the first successful QBUF calls dvb_vb2_stream_on.
  streaming_ = true;
  if (index < buffers_.size()) {
    std::lock_guard<std::mutex> ledger(ledger_mu_);
    buffers_[index].owner = Owner::kKernel;
    buffers_[index].since_ns = MonotonicNs();
  }
  return std::nullopt;
}

std::optional<SysError> DemuxCore::Dequeue(std::optional<Dequeued>* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  out->reset();
  dmx_buffer b;
  memset(&b, 0, sizeof b);
  if (sys_->Ioctl(fd_, DMX_DQBUF, &b) < 0) {
    if (errno == EAGAIN) return std::nullopt;
    SysError e = Fail(errno, "DMX_DQBUF");
    if (e.err == ENOTTY) {
      e.Reason("dvb-mmap-missing");
      e.detail = "the kernel has no CONFIG_DVB_MMAP (the DVB mmap API is off by default)";
    }
    return e;
  }
  if (b.index < buffers_.size()) {
    std::lock_guard<std::mutex> ledger(ledger_mu_);
    PoolBuffer& pb = buffers_[b.index];
    pb.owner = Owner::kAgent;
    pb.bytesused = b.bytesused;
    pb.flags = b.flags;
    pb.sequence = b.count;
    pb.since_ns = MonotonicNs();
  }
  *out = Dequeued{b.index, b.bytesused, b.offset, b.length, b.flags, b.count};
  return std::nullopt;
}

std::optional<SysError> DemuxCore::Peek(uint32_t index, uint32_t start, uint32_t length, std::vector<uint8_t>* out) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (index >= buffers_.size() || buffers_[index].map == nullptr) {
    SysError e(EINVAL, "peek", "", path_);
    e.Arg("index", index);
    e.detail = "buffer not mapped";
    ExplainIndexLocked(&e, index);
    return e;
  }
  const PoolBuffer& b = buffers_[index];
  if (start > b.map_length) start = static_cast<uint32_t>(b.map_length);
  if (length > b.map_length - start) length = static_cast<uint32_t>(b.map_length - start);
  out->assign(b.map + start, b.map + start + length);
  return std::nullopt;
}

void DemuxCore::SetOwner(uint32_t index, Owner owner) {
  std::lock_guard<std::mutex> lock(mutex_);
  std::lock_guard<std::mutex> ledger(ledger_mu_);
  if (index >= buffers_.size()) return;
  buffers_[index].owner = owner;
  buffers_[index].since_ns = MonotonicNs();
}

std::vector<PoolBuffer> DemuxCore::Snapshot() const {
  std::lock_guard<std::mutex> ledger(ledger_mu_);
  return buffers_;
}

bool DemuxCore::GetBuffer(uint32_t index, PoolBuffer* out) const {
  std::lock_guard<std::mutex> ledger(ledger_mu_);
  if (index >= buffers_.size()) return false;
  *out = buffers_[index];
  return true;
}

uint32_t DemuxCore::count() const {
  std::lock_guard<std::mutex> ledger(ledger_mu_);
  return static_cast<uint32_t>(buffers_.size());
}

uint32_t DemuxCore::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return size_;
}

bool DemuxCore::streaming() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return streaming_;
}

int DemuxCore::fd() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return fd_;
}

bool DemuxCore::TryAttachPump() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (pump_attached_ || fd_ < 0) return false;
  pump_attached_ = true;
  return true;
}

void DemuxCore::DetachPump() {
  std::lock_guard<std::mutex> lock(mutex_);
  pump_attached_ = false;
}

bool DemuxCore::pump_attached() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pump_attached_;
}

void DemuxCore::ExplainIndexLocked(SysError* e, uint32_t index) const {
  if (e->err == ENOTTY) {
    e->Reason("dvb-mmap-missing");
    e->detail = "the kernel has no CONFIG_DVB_MMAP (the DVB mmap API is off by default)";
    return;
  }
  if (e->err != EINVAL) return;
  uint32_t count = static_cast<uint32_t>(buffers_.size());
  if (count == 0) {
    e->Reason("no-buffers-allocated").Arg("count", 0);
    e->detail = "the pool has no buffers: DMX_REQBUFS first";
  } else if (index >= count) {
    e->Reason("index-out-of-range").Arg("count", count);
    e->detail = "index " + std::to_string(index) + " is out of range: the pool has " + std::to_string(count) +
                " buffers";
  }
}

std::optional<SysError> DemuxCore::RefuseIndex(uint32_t index, const char* syscall, const char* request) const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (index < buffers_.size()) return std::nullopt;
  SysError e(EINVAL, syscall, request, path_);
  e.Arg("index", index).Prevented();
  ExplainIndexLocked(&e, index);
  e.detail = "refused before the kernel: " + e.detail;
  return e;
}

SysError DemuxCore::RefuseWhilePumped(const char* syscall, const char* request) const {
  SysError e(EBUSY, syscall, request, path_);
  e.Reason("pump-attached").Prevented();
  e.detail = "a pump is driving this pool; stop or close the pump first";
  return e;
}

// ---------------------------------------------------------------- Demux (JS)

Napi::Function Demux::DefineClass(Napi::Env env) {
  return ObjectWrap<Demux>::DefineClass(
      env, "Demux",
      {
          InstanceMethod<&Demux::JS_setPesFilter>("setPesFilter"),
          InstanceMethod<&Demux::JS_setSectionFilter>("setSectionFilter"),
          InstanceMethod<&Demux::JS_addPid>("addPid"),
          InstanceMethod<&Demux::JS_start>("start"),
          InstanceMethod<&Demux::JS_stop>("stop"),
          InstanceMethod<&Demux::JS_setBufferSize>("setBufferSize"),
          InstanceMethod<&Demux::JS_requestBuffers>("requestBuffers"),
          InstanceMethod<&Demux::JS_queryBuffer>("queryBuffer"),
          InstanceMethod<&Demux::JS_mapBuffers>("mapBuffers"),
          InstanceMethod<&Demux::JS_exportBuffer>("exportBuffer"),
          InstanceMethod<&Demux::JS_exportBuffers>("exportBuffers"),
          InstanceMethod<&Demux::JS_queueBuffer>("queueBuffer"),
          InstanceMethod<&Demux::JS_dequeueBuffer>("dequeueBuffer"),
          InstanceMethod<&Demux::JS_peek>("peek"),
          InstanceMethod<&Demux::JS_ledger>("ledger"),
          InstanceMethod<&Demux::JS_poll>("poll"),
          InstanceMethod<&Demux::JS_close>("close"),
          InstanceAccessor<&Demux::JS_getFd>("fd"),
          InstanceAccessor<&Demux::JS_getPath>("path"),
          InstanceAccessor<&Demux::JS_getStreaming>("streaming"),
          InstanceAccessor<&Demux::JS_getBufferCount>("bufferCount"),
          InstanceAccessor<&Demux::JS_getBufferSize>("bufferSize"),
      });
}

Demux* Demux::FromValue(Napi::Env env, const Napi::Value& value) {
  AddonData* data = AddonData::Get(env);
  if (!IsInstanceOf(value, data->demux_ctor)) return nullptr;
  return Demux::Unwrap(value.As<Napi::Object>());
}

// new Demux(path, { kind: 'demux' | 'dvr', simulation? })
Demux::Demux(const Napi::CallbackInfo& info) : ObjectWrap<Demux>(info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(env, info[0], "path");
  Napi::Object options = info[1].IsUndefined() ? Napi::Object::New(env) : ArgObject(env, info[1], "options");
  Kind kind = Kind::kDemux;
  Napi::Value k = options.Get("kind");
  if (!k.IsUndefined()) {
    std::string ks = ArgString(env, k, "options.kind");
    if (ks == "dvr") kind = Kind::kDvr;
    else if (ks != "demux") ThrowRangeError(env, "options.kind must be 'demux' or 'dvr'");
  }
  core_ = std::make_shared<DemuxCore>(SysFromOptions(env, options), path, kind);
  if (auto e = core_->Open()) ThrowSysError(env, *e);
  AddonData::Get(env)->Register(this);
  registered_ = true;
}

Demux::~Demux() {
  // The finalizer runs on the JS thread; the core may outlive us in a pump.
  if (core_ && !core_->pump_attached()) core_->Close();
  // The cleanup hook walks AddonData::live: never leave a dangling entry.
  if (registered_) AddonData::Get(Env())->Unregister(this);
}

void Demux::CloseNow() {
  if (core_) core_->Close();
  if (registered_) {
    AddonData::Get(Env())->Unregister(this);
    registered_ = false;
  }
}

void Demux::CloseFromCleanup() {
  if (core_) core_->Close();
  registered_ = false;
}

DemuxCore& Demux::Open(Napi::Env env) {
  if (!core_->is_open()) ThrowSysError(env, SysError(EBADF, "ioctl", "", core_->path()).Arg("closed", 1));
  return *core_;
}

static dmx_output ParseOutput(Napi::Env env, const Napi::Value& v) {
  if (v.IsUndefined()) return DMX_OUT_TSDEMUX_TAP;
  std::string s = ArgString(env, v, "output");
  if (s == "tsdemux-tap") return DMX_OUT_TSDEMUX_TAP;
  if (s == "ts-tap") return DMX_OUT_TS_TAP;
  if (s == "tap") return DMX_OUT_TAP;
  if (s == "decoder") return DMX_OUT_DECODER;
  ThrowRangeError(env, "output must be one of 'tsdemux-tap', 'ts-tap', 'tap', 'decoder'");
}

// setPesFilter({ pid, output = 'tsdemux-tap', pesType = 20 (DMX_PES_OTHER), start = false })
Napi::Value Demux::JS_setPesFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = ArgObject(env, info[0], "filter");
  uint16_t pid = static_cast<uint16_t>(ArgUint32(env, o.Get("pid"), "filter.pid", 0, 0x2000));
  dmx_output output = ParseOutput(env, o.Get("output"));
  auto pes = static_cast<dmx_ts_pes>(OptUint32(env, o, "pesType", DMX_PES_OTHER, 0, DMX_PES_OTHER));
  bool start = OptBool(env, o, "start", false);
  if (auto e = Open(env).SetPesFilter(pid, output, pes, start)) ThrowSysError(env, *e);
  return env.Undefined();
}

static void ReadFilterBytes(Napi::Env env, const Napi::Object& o, const char* key, uint8_t* dst) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return;
  if (!v.IsArray()) ThrowTypeError(env, std::string("filter.") + key + " must be an array of bytes");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() > DMX_FILTER_SIZE)
    ThrowRangeError(env, std::string("filter.") + key + " holds at most " + std::to_string(DMX_FILTER_SIZE) + " bytes");
  for (uint32_t i = 0; i < a.Length(); i++) dst[i] = static_cast<uint8_t>(ArgUint32(env, a.Get(i), key, 0, 255));
}

// setSectionFilter({ pid, filter?: number[], mask?: number[], mode?: number[],
//                    timeoutMs = 0, checkCrc = true, oneshot = false, start = false })
Napi::Value Demux::JS_setSectionFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = ArgObject(env, info[0], "filter");
  uint16_t pid = static_cast<uint16_t>(ArgUint32(env, o.Get("pid"), "filter.pid", 0, 0x1fff));
  dmx_filter f;
  memset(&f, 0, sizeof f);
  ReadFilterBytes(env, o, "filter", f.filter);
  ReadFilterBytes(env, o, "mask", f.mask);
  ReadFilterBytes(env, o, "mode", f.mode);
  uint32_t timeout = OptUint32(env, o, "timeoutMs", 0, 0, 60000);
  uint32_t flags = 0;
  if (OptBool(env, o, "checkCrc", true)) flags |= DMX_CHECK_CRC;
  if (OptBool(env, o, "oneshot", false)) flags |= DMX_ONESHOT;
  if (OptBool(env, o, "start", false)) flags |= DMX_IMMEDIATE_START;
  if (auto e = Open(env).SetSectionFilter(pid, f, timeout, flags)) ThrowSysError(env, *e);
  return env.Undefined();
}

Napi::Value Demux::JS_addPid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint16_t pid = static_cast<uint16_t>(ArgUint32(env, info[0], "pid", 0, 0x1fff));
  if (auto e = Open(env).AddPid(pid)) ThrowSysError(env, *e);
  return env.Undefined();
}

Napi::Value Demux::JS_start(const Napi::CallbackInfo& info) {
  if (auto e = Open(info.Env()).Start()) ThrowSysError(info.Env(), *e);
  return info.Env().Undefined();
}

Napi::Value Demux::JS_stop(const Napi::CallbackInfo& info) {
  if (auto e = Open(info.Env()).Stop()) ThrowSysError(info.Env(), *e);
  return info.Env().Undefined();
}

Napi::Value Demux::JS_setBufferSize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t bytes = ArgUint32(env, info[0], "bytes", 1, 64u << 20);
  if (auto e = Open(env).SetBufferSize(bytes)) ThrowSysError(env, *e);
  return env.Undefined();
}

// requestBuffers(count, size, { allowWhileStreaming = false }) -> { count, size } as granted
Napi::Value Demux::JS_requestBuffers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t count = ArgUint32(env, info[0], "count", 0, 64);
  uint32_t size = ArgUint32(env, info[1], "size", 1, 64u << 20);
  bool allow = false;
  if (!info[2].IsUndefined()) allow = OptBool(env, ArgObject(env, info[2], "options"), "allowWhileStreaming", false);
  if (auto e = Open(env).RequestBuffers(&count, &size, allow)) ThrowSysError(env, *e);
  Napi::Object r = Napi::Object::New(env);
  r.Set("count", count);
  r.Set("size", size);
  return r;
}

static Napi::Object BufferObject(Napi::Env env, uint32_t index, uint32_t bytesused, uint32_t offset, uint32_t length,
                                 uint32_t flags, uint32_t count) {
  Napi::Object r = Napi::Object::New(env);
  r.Set("index", index);
  r.Set("bytesused", bytesused);
  r.Set("offset", offset);
  r.Set("length", length);
  r.Set("flags", flags);
  r.Set("count", count);
  return r;
}

// Index checks happen here, before the kernel, unless { raw: true }: kernels
// before a 2024 fix lacked the index check on DMX_EXPBUF (kernel-facts.md).
// An index the pool lacks is refused with the error the kernel would give
// (EINVAL, marked prevented); a value that is no index at all is a
// TypeError/RangeError.
static uint32_t ArgIndex(Napi::Env env, const Napi::CallbackInfo& info, size_t options_at, DemuxCore& core,
                         const char* syscall, const char* request) {
  uint32_t index = ArgUint32(env, info[0], "index", 0, 1023);
  bool raw = false;
  if (!info[options_at].IsUndefined()) raw = OptBool(env, ArgObject(env, info[options_at], "options"), "raw", false);
  if (!raw) {
    if (auto e = core.RefuseIndex(index, syscall, request)) ThrowSysError(env, *e);
  }
  return index;
}

Napi::Value Demux::JS_queryBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DemuxCore& core = Open(env);
  uint32_t index = ArgIndex(env, info, 1, core, "ioctl", "DMX_QUERYBUF");
  dmx_buffer b;
  if (auto e = core.QueryBuffer(index, &b)) ThrowSysError(env, *e);
  return BufferObject(env, b.index, b.bytesused, b.offset, b.length, b.flags, b.count);
}

Napi::Value Demux::JS_mapBuffers(const Napi::CallbackInfo& info) {
  if (auto e = Open(info.Env()).MapAll()) ThrowSysError(info.Env(), *e);
  return info.Env().Undefined();
}

static uint32_t ArgExportFlags(Napi::Env env, const Napi::Value& options) {
  if (options.IsUndefined()) return O_CLOEXEC | O_RDWR;
  return OptUint32(env, ArgObject(env, options, "options"), "flags", O_CLOEXEC | O_RDWR);
}

// exportBuffer(index, { flags = O_CLOEXEC | O_RDWR, raw = false }) -> fd (owned by the pool)
Napi::Value Demux::JS_exportBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DemuxCore& core = Open(env);
  uint32_t flags = ArgExportFlags(env, info[1]);
  uint32_t index = ArgIndex(env, info, 1, core, "ioctl", "DMX_EXPBUF");
  int fd = -1;
  if (auto e = core.Export(index, flags, &fd)) ThrowSysError(env, *e);
  return Napi::Number::New(env, fd);
}

Napi::Value Demux::JS_exportBuffers(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DemuxCore& core = Open(env);
  if (auto e = core.ExportAll(ArgExportFlags(env, info[0]))) ThrowSysError(env, *e);
  Napi::Array fds = Napi::Array::New(env);
  for (const PoolBuffer& b : core.Snapshot()) fds.Set(b.index, b.export_fd);
  return fds;
}

static void RefuseWhilePumped(Napi::Env env, DemuxCore& core, const char* request) {
  if (!core.pump_attached()) return;
  ThrowSysError(env, core.RefuseWhilePumped("ioctl", request));
}

Napi::Value Demux::JS_queueBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DemuxCore& core = Open(env);
  uint32_t index = ArgIndex(env, info, 1, core, "ioctl", "DMX_QBUF");
  RefuseWhilePumped(env, core, "DMX_QBUF");
  if (auto e = core.Queue(index)) ThrowSysError(env, *e);
  return env.Undefined();
}

// dequeueBuffer() -> { index, bytesused, offset, length, flags, count } | null (EAGAIN)
Napi::Value Demux::JS_dequeueBuffer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DemuxCore& core = Open(env);
  RefuseWhilePumped(env, core, "DMX_DQBUF");
  std::optional<Dequeued> d;
  if (auto e = core.Dequeue(&d)) ThrowSysError(env, *e);
  if (!d) return env.Null();
  return BufferObject(env, d->index, d->bytesused, d->offset, d->length, d->flags, d->count);
}

// peek(index, start = 0, length = whole buffer) -> Buffer (a copy)
Napi::Value Demux::JS_peek(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DemuxCore& core = Open(env);
  uint32_t index = ArgIndex(env, info, 3, core, "peek", "");
  uint32_t start = info[1].IsUndefined() ? 0 : ArgUint32(env, info[1], "start");
  uint32_t length = info[2].IsUndefined() ? UINT32_MAX : ArgUint32(env, info[2], "length");
  std::vector<uint8_t> bytes;
  if (auto e = core.Peek(index, start, length, &bytes)) ThrowSysError(env, *e);
  return Napi::Buffer<uint8_t>::Copy(env, bytes.data(), bytes.size());
}

Napi::Value Demux::JS_ledger(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  uint64_t now = MonotonicNs();
  for (const PoolBuffer& b : core_->Snapshot()) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", b.index);
    o.Set("owner", OwnerName(b.owner));
    o.Set("exportFd", b.export_fd);
    o.Set("dmabufSize", static_cast<double>(b.dmabuf_size));
    o.Set("mapped", b.map != nullptr);
    o.Set("length", b.length);
    o.Set("bytesused", b.bytesused);
    o.Set("flags", b.flags);
    o.Set("sequence", b.sequence);
    o.Set("sinceMs", static_cast<double>(now - b.since_ns) / 1e6);
    out.Set(b.index, o);
  }
  return out;
}

// poll(timeoutMs) -> { readable, priority, error, hangup }: blocks the JS
// thread up to timeoutMs (diagnostics and tests; the pump polls on its own
// thread).
Napi::Value Demux::JS_poll(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DemuxCore& core = Open(env);
  int timeout = static_cast<int>(ArgUint32(env, info[0], "timeoutMs", 0, 60000));
  pollfd p{core.fd(), POLLIN | POLLPRI, 0};
  int n;
  do {
    n = core.sys()->Poll(&p, 1, timeout);
  } while (n < 0 && errno == EINTR);
  if (n < 0) ThrowSysError(env, SysError(errno, "poll", "", core.path()));
  Napi::Object o = Napi::Object::New(env);
  o.Set("readable", (p.revents & POLLIN) != 0);
  o.Set("priority", (p.revents & POLLPRI) != 0);
  o.Set("error", (p.revents & POLLERR) != 0);
  o.Set("hangup", (p.revents & POLLHUP) != 0);
  return o;
}

Napi::Value Demux::JS_close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (core_->pump_attached()) ThrowSysError(env, core_->RefuseWhilePumped("close", ""));
  CloseNow();
  return env.Undefined();
}

Napi::Value Demux::JS_getFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), core_->fd()); }
Napi::Value Demux::JS_getPath(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), core_->path()); }
Napi::Value Demux::JS_getStreaming(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), core_->streaming());
}
Napi::Value Demux::JS_getBufferCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), core_->count());
}
Napi::Value Demux::JS_getBufferSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), core_->size());
}

}  // namespace dmx
