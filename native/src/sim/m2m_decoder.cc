#include "m2m_decoder.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "v4l2_queue.h"

namespace dmx {
namespace sim {

namespace {

constexpr int kCap = 1;  // MEM2MEM_CAPTURE
constexpr int kOut = 2;  // MEM2MEM_OUTPUT
constexpr uint32_t kMinW = 32, kMinH = 32, kMaxW = 640, kMaxH = 480;
constexpr uint64_t kVidMemLimit = 16 * 1024 * 1024;  // MEM2MEM_VID_MEM_LIMIT
constexpr uint32_t kDstQueueOffBase = 1u << 30;      // DST_QUEUE_OFF_BASE
constexpr uint32_t kCidTransTime = V4L2_CID_USER_BASE + 0x1000;
constexpr uint32_t kCidTransNumBufs = V4L2_CID_USER_BASE + 0x1001;
constexpr uint32_t kKernelVersion = (6 << 16) | (1 << 8) | 192;  // 6.1.192
// vim2m's io_modes (MMAP | USERPTR | DMABUF, as V4L2_BUF_CAP_SUPPORTS_*
// bits) on CAPTURE; OUTPUT takes the configured ones. Requests on OUTPUT
// only (vim2m's supports_requests).
constexpr uint32_t kAllMemory = 0x7;

struct Format {
  uint32_t fourcc;
  int depth;  // bits per pixel; 0 for compressed
  int types;
  uint32_t sizeimage;  // compressed: fixed
  const char* description;
};

const Format kVim2mFormats[] = {
    {V4L2_PIX_FMT_RGB565, 16, kCap | kOut, 0, "16-bit RGB 5-6-5"},
    {V4L2_PIX_FMT_RGB565X, 16, kCap | kOut, 0, "16-bit RGB 5-6-5 BE"},
    {V4L2_PIX_FMT_RGB24, 24, kCap | kOut, 0, "24-bit RGB 8-8-8"},
    {V4L2_PIX_FMT_BGR24, 24, kCap | kOut, 0, "24-bit BGR 8-8-8"},
    {V4L2_PIX_FMT_YUYV, 16, kCap, 0, "YUYV 4:2:2"},
    {V4L2_PIX_FMT_SBGGR8, 8, kCap, 0, "8-bit Bayer BGBG/GRGR"},
    {V4L2_PIX_FMT_SGBRG8, 8, kCap, 0, "8-bit Bayer GBGB/RGRG"},
    {V4L2_PIX_FMT_SGRBG8, 8, kCap, 0, "8-bit Bayer GRGR/BGBG"},
    {V4L2_PIX_FMT_SRGGB8, 8, kCap, 0, "8-bit Bayer RGRG/GBGB"},
};

bool IsBayer(uint32_t f) {
  return f == V4L2_PIX_FMT_SBGGR8 || f == V4L2_PIX_FMT_SGBRG8 ||
         f == V4L2_PIX_FMT_SGRBG8 || f == V4L2_PIX_FMT_SRGGB8;
}

const char* CompressedDescription(uint32_t f) {
  switch (f) {
    case V4L2_PIX_FMT_H264: return "H.264";
    case V4L2_PIX_FMT_HEVC: return "HEVC";
    case V4L2_PIX_FMT_MPEG2: return "MPEG-2 ES";
    case V4L2_PIX_FMT_VP8: return "VP8";
    case V4L2_PIX_FMT_VP9: return "VP9";
    case V4L2_PIX_FMT_FWHT: return "FWHT";
    default: return nullptr;
  }
}

struct Control {
  uint32_t id;
  const char* name;
  uint32_t type;
  int32_t min, max, step;
};

const Control kControls[] = {  // sorted by id, for V4L2_CTRL_FLAG_NEXT_CTRL
    {V4L2_CID_HFLIP, "Horizontal Flip", V4L2_CTRL_TYPE_BOOLEAN, 0, 1, 1},
    {V4L2_CID_VFLIP, "Vertical Flip", V4L2_CTRL_TYPE_BOOLEAN, 0, 1, 1},
    {kCidTransTime, "Transaction Time (msec)", V4L2_CTRL_TYPE_INTEGER, 1,
     10001, 1},
    {kCidTransNumBufs, "Buffers Per Transaction", V4L2_CTRL_TYPE_INTEGER, 1,
     VIDEO_MAX_FRAME, 1},
};

const Control* FindControl(uint32_t id) {
  for (const Control& c : kControls)
    if (c.id == id) return &c;
  return nullptr;
}

// check_fmt() for a single-planar m2m device.
bool ValidType(uint32_t type) {
  return type == V4L2_BUF_TYPE_VIDEO_CAPTURE ||
         type == V4L2_BUF_TYPE_VIDEO_OUTPUT;
}

}  // namespace

// One open of the decoder node (struct vim2m_ctx + its v4l2_m2m_ctx).
class M2mContext : public SimFile, private V4l2Queue::Driver {
 public:
  M2mContext(std::shared_ptr<M2mDecoder> dev, int fd, int flags,
             std::string path);

  int Ioctl(unsigned long cmd, void* arg) override;
  int Mmap(size_t length, int prot, int flags, off_t offset,
           void** out) override;
  void Release() override;
  short PollMaskLocked(short events) override;

 private:
  friend class M2mDecoder;

  struct QData {
    uint32_t width = 640;
    uint32_t height = 480;
    uint32_t sizeimage = 0;
    uint32_t sequence = 0;
    const Format* fmt = nullptr;
  };
  struct Subscription {
    uint32_t type;
    uint32_t id;
    uint32_t flags;
  };

  V4l2Queue& Queue(uint32_t type) {
    return V4L2_TYPE_IS_OUTPUT(type) ? out_ : cap_;
  }
  QData& Data(const V4l2Queue& q) { return q.is_output() ? q_[0] : q_[1]; }
  const Format* FindFormat(uint32_t fourcc) const;
  static uint32_t SizeOf(const QData& d, uint32_t w, uint32_t h,
                         const Format* f);

  int Dispatch(std::unique_lock<std::mutex>& lock, unsigned long cmd,
               void* arg);
  int BufferIoctl(std::unique_lock<std::mutex>& lock, unsigned long cmd,
                  void* arg);
  int Dqbuf(std::unique_lock<std::mutex>& lock, struct v4l2_buffer* b);
  int Querycap(struct v4l2_capability* cap) const;
  int EnumFmt(struct v4l2_fmtdesc* f) const;
  int GFmt(struct v4l2_format* f);
  int TryFmt(struct v4l2_format* f, bool set);
  int EnumFramesizes(struct v4l2_frmsizeenum* fs) const;
  int GetCtrl(uint32_t id, int32_t* value) const;
  int SetCtrl(uint32_t id, int32_t value);
  int QueryCtrl(struct v4l2_queryctrl* q) const;
  int Subscribe(const struct v4l2_event_subscription* sub);
  int Unsubscribe(const struct v4l2_event_subscription* sub);
  int Dqevent(std::unique_lock<std::mutex>& lock, struct v4l2_event* ev);
  // A V4L2_EVENT_CTRL for control `id`; `initial` for the event of
  // V4L2_EVENT_SUB_FL_SEND_INITIAL, else a change this context made.
  void QueueCtrlEvent(uint32_t id, bool initial);

  // V4l2Queue::Driver (vim2m's vb2_ops)
  int QueueSetup(V4l2Queue& q, unsigned* count, unsigned* size) override;
  int BufOutValidate(V4l2Queue& q, V4l2Queue::Buffer& b) override;
  int BufPrepare(V4l2Queue& q, V4l2Queue::Buffer& b) override;
  void BufQueue(V4l2Queue& q, unsigned index) override;
  void StartStreaming(V4l2Queue& q) override;
  void StopStreaming(V4l2Queue& q) override;

  std::shared_ptr<M2mDecoder> dev_;
  std::vector<Format> formats_;
  V4l2Queue out_;
  V4l2Queue cap_;
  QData q_[2];  // [0] OUTPUT (source), [1] CAPTURE (destination)
  uint32_t colorspace_ = V4L2_COLORSPACE_REC709;
  uint32_t xfer_func_ = 0;
  uint32_t ycbcr_enc_ = 0;
  uint32_t quantization_ = 0;
  int32_t hflip_ = 0;
  int32_t vflip_ = 0;
  int32_t transtime_ms_;
  int32_t translen_ = 1;
  std::deque<unsigned> src_rdy_, dst_rdy_;  // buffers the driver owns
  bool job_queued_ = false;   // TRANS_QUEUED
  bool job_running_ = false;  // TRANS_RUNNING
  bool job_abort_ = false;    // TRANS_ABORT
  bool aborting_ = false;     // vim2m's ctx->aborting
  unsigned num_processed_ = 0;
  ModelMutex vb_mutex_;  // the queues' lock, released by a sleeping DQBUF
  std::vector<Subscription> subs_;
  std::deque<struct v4l2_event> events_;
  uint32_t event_sequence_ = 0;
};

M2mContext::M2mContext(std::shared_ptr<M2mDecoder> dev, int fd, int flags,
                       std::string path)
    : SimFile(dev.get(), fd, flags, std::move(path)),
      dev_(std::move(dev)),
      out_(V4L2_BUF_TYPE_VIDEO_OUTPUT, this, dev_->config().output_memory,
           true, dev_->config().contiguous),
      cap_(V4L2_BUF_TYPE_VIDEO_CAPTURE, this, kAllMemory, false,
           dev_->config().contiguous),
      transtime_ms_(dev_->config().processing_delay_ms) {
  formats_.assign(std::begin(kVim2mFormats), std::end(kVim2mFormats));
  for (const SimCompressedFormat& c : dev_->config().compressed_formats)
    formats_.push_back({c.fourcc, 0, kOut, c.sizeimage,
                        CompressedDescription(c.fourcc)});
  // vim2m_open(): RGB565 640x480 on both queues.
  q_[0].fmt = &formats_[0];
  q_[0].sizeimage = 640 * 480 * 2;
  q_[1] = q_[0];
}

const Format* M2mContext::FindFormat(uint32_t fourcc) const {
  for (const Format& f : formats_)
    if (f.fourcc == fourcc) return &f;
  return nullptr;
}

uint32_t M2mContext::SizeOf(const QData&, uint32_t w, uint32_t h,
                            const Format* f) {
  return f->depth ? w * h * static_cast<uint32_t>(f->depth) / 8 : f->sizeimage;
}

int M2mContext::Ioctl(unsigned long cmd, void* arg) {
  std::unique_lock<std::mutex> lock(dev_->mu);
  if (dev_->dead) return -ENODEV;  // v4l2_ioctl(): unregistered
  int r = Dispatch(lock, cmd, arg);
  dev_->ChangedLocked();
  return r;
}

int M2mContext::Dispatch(std::unique_lock<std::mutex>& lock,
                         unsigned long cmd, void* arg) {
  switch (cmd) {
    case VIDIOC_QUERYCAP:
      return Querycap(static_cast<struct v4l2_capability*>(arg));
    case VIDIOC_ENUM_FMT:
      return EnumFmt(static_cast<struct v4l2_fmtdesc*>(arg));
    case VIDIOC_G_FMT:
      return GFmt(static_cast<struct v4l2_format*>(arg));
    case VIDIOC_S_FMT:
      return TryFmt(static_cast<struct v4l2_format*>(arg), true);
    case VIDIOC_TRY_FMT:
      return TryFmt(static_cast<struct v4l2_format*>(arg), false);
    case VIDIOC_ENUM_FRAMESIZES:
      return EnumFramesizes(static_cast<struct v4l2_frmsizeenum*>(arg));
    case VIDIOC_G_CTRL: {
      auto* c = static_cast<struct v4l2_control*>(arg);
      return GetCtrl(c->id, &c->value);
    }
    case VIDIOC_S_CTRL: {
      auto* c = static_cast<struct v4l2_control*>(arg);
      int r = SetCtrl(c->id, c->value);
      if (r == 0) GetCtrl(c->id, &c->value);
      return r;
    }
    case VIDIOC_QUERYCTRL:
      return QueryCtrl(static_cast<struct v4l2_queryctrl*>(arg));
    case VIDIOC_SUBSCRIBE_EVENT:
      return Subscribe(static_cast<const struct v4l2_event_subscription*>(arg));
    case VIDIOC_UNSUBSCRIBE_EVENT:
      return Unsubscribe(
          static_cast<const struct v4l2_event_subscription*>(arg));
    case VIDIOC_DQEVENT:
      return Dqevent(lock, static_cast<struct v4l2_event*>(arg));
    case VIDIOC_REQBUFS:
    case VIDIOC_QUERYBUF:
    case VIDIOC_QBUF:
    case VIDIOC_DQBUF:
    case VIDIOC_STREAMON:
    case VIDIOC_STREAMOFF:
    case VIDIOC_EXPBUF:
      return BufferIoctl(lock, cmd, arg);
    default:
      return -ENOTTY;
  }
}

int M2mContext::Querycap(struct v4l2_capability* cap) const {
  memset(cap, 0, sizeof(*cap));
  const std::string& name = dev_->config().name;
  strncpy(reinterpret_cast<char*>(cap->driver), name.c_str(),
          sizeof(cap->driver) - 1);
  strncpy(reinterpret_cast<char*>(cap->card), name.c_str(),
          sizeof(cap->card) - 1);
  snprintf(reinterpret_cast<char*>(cap->bus_info), sizeof(cap->bus_info),
           "platform:%s", name.c_str());
  cap->version = kKernelVersion;
  cap->device_caps =
      V4L2_CAP_VIDEO_M2M | V4L2_CAP_STREAMING | V4L2_CAP_EXT_PIX_FORMAT;
  cap->capabilities = cap->device_caps | V4L2_CAP_DEVICE_CAPS;
  return 0;
}

int M2mContext::EnumFmt(struct v4l2_fmtdesc* f) const {
  // v4l_enum_fmt() -> enum_fmt(): the index-th format of the queue's kind.
  int want;
  if (f->type == V4L2_BUF_TYPE_VIDEO_CAPTURE)
    want = kCap;
  else if (f->type == V4L2_BUF_TYPE_VIDEO_OUTPUT)
    want = kOut;
  else
    return -EINVAL;
  uint32_t n = 0;
  for (const Format& fmt : formats_) {
    if (!(fmt.types & want)) continue;
    if (n++ != f->index) continue;
    f->flags = fmt.depth ? 0 : V4L2_FMT_FLAG_COMPRESSED;
    memset(f->description, 0, sizeof(f->description));
    if (fmt.description) {
      strncpy(reinterpret_cast<char*>(f->description), fmt.description,
              sizeof(f->description) - 1);
    } else {
      for (int i = 0; i < 4; ++i)
        f->description[i] = static_cast<uint8_t>(fmt.fourcc >> (8 * i));
    }
    f->pixelformat = fmt.fourcc;
    f->mbus_code = 0;
    memset(f->reserved, 0, sizeof(f->reserved));
    return 0;
  }
  return -EINVAL;
}

int M2mContext::GFmt(struct v4l2_format* f) {
  if (!ValidType(f->type)) return -EINVAL;
  const QData& d = Data(Queue(f->type));
  memset(&f->fmt, 0, sizeof(f->fmt));
  struct v4l2_pix_format& p = f->fmt.pix;
  p.width = d.width;
  p.height = d.height;
  p.field = V4L2_FIELD_NONE;
  p.pixelformat = d.fmt->fourcc;
  p.bytesperline = d.width * static_cast<uint32_t>(d.fmt->depth) / 8;
  p.sizeimage = d.sizeimage;
  p.colorspace = colorspace_;
  p.xfer_func = xfer_func_;
  p.ycbcr_enc = ycbcr_enc_;
  p.quantization = quantization_;
  p.priv = V4L2_PIX_FMT_PRIV_MAGIC;
  return 0;
}

int M2mContext::TryFmt(struct v4l2_format* f, bool set) {
  if (!ValidType(f->type)) return -EINVAL;
  // v4l_sanitize_format() and CLEAR_AFTER_FIELD(p, fmt.pix)
  struct v4l2_pix_format& p = f->fmt.pix;
  if (p.priv != V4L2_PIX_FMT_PRIV_MAGIC) {
    p.priv = V4L2_PIX_FMT_PRIV_MAGIC;
    p.flags = 0;
    p.ycbcr_enc = 0;
    p.quantization = 0;
    p.xfer_func = 0;
  }
  memset(reinterpret_cast<uint8_t*>(&f->fmt) + sizeof(p), 0,
         sizeof(f->fmt) - sizeof(p));
  bool output = f->type == V4L2_BUF_TYPE_VIDEO_OUTPUT;
  // vidioc_try_fmt_vid_cap/out(): unknown fourccs become the first format.
  const Format* fmt = FindFormat(p.pixelformat);
  if (!fmt) {
    p.pixelformat = formats_[0].fourcc;
    fmt = &formats_[0];
  }
  if (!(fmt->types & (output ? kOut : kCap))) return -EINVAL;
  if (output) {
    if (!p.colorspace) p.colorspace = V4L2_COLORSPACE_REC709;
  } else {
    p.colorspace = colorspace_;
    p.xfer_func = xfer_func_;
    p.ycbcr_enc = ycbcr_enc_;
    p.quantization = quantization_;
  }
  // vidioc_try_fmt(): clamp, align, derive.
  p.height = std::min(std::max(p.height, kMinH), kMaxH);
  p.width = std::min(std::max(p.width, kMinW), kMaxW);
  uint32_t walign = 2;
  uint32_t halign = IsBayer(fmt->fourcc) ? 2 : 1;
  p.width &= ~(walign - 1);
  p.height &= ~(halign - 1);
  p.bytesperline = p.width * static_cast<uint32_t>(fmt->depth) / 8;
  p.sizeimage = fmt->depth ? p.height * p.bytesperline : fmt->sizeimage;
  p.field = V4L2_FIELD_NONE;
  if (!set) return 0;
  // vidioc_s_fmt()
  V4l2Queue& q = Queue(f->type);
  if (q.busy()) return -EBUSY;
  QData& d = Data(q);
  d.fmt = fmt;
  d.width = p.width;
  d.height = p.height;
  d.sizeimage = SizeOf(d, d.width, d.height, fmt);
  if (output) {
    colorspace_ = p.colorspace;
    xfer_func_ = p.xfer_func;
    ycbcr_enc_ = p.ycbcr_enc;
    quantization_ = p.quantization;
  }
  return 0;
}

int M2mContext::EnumFramesizes(struct v4l2_frmsizeenum* fs) const {
  if (fs->index != 0) return -EINVAL;
  const Format* fmt = FindFormat(fs->pixel_format);
  if (!fmt) return -EINVAL;
  fs->type = V4L2_FRMSIZE_TYPE_STEPWISE;
  fs->stepwise.min_width = kMinW;
  fs->stepwise.min_height = kMinH;
  fs->stepwise.max_width = kMaxW;
  fs->stepwise.max_height = kMaxH;
  fs->stepwise.step_width = 2;
  fs->stepwise.step_height = IsBayer(fmt->fourcc) ? 2 : 1;
  return 0;
}

int M2mContext::GetCtrl(uint32_t id, int32_t* value) const {
  switch (id) {
    case V4L2_CID_HFLIP: *value = hflip_; return 0;
    case V4L2_CID_VFLIP: *value = vflip_; return 0;
    case kCidTransTime: *value = transtime_ms_; return 0;
    case kCidTransNumBufs: *value = translen_; return 0;
    default: return -EINVAL;
  }
}

int M2mContext::SetCtrl(uint32_t id, int32_t value) {
  const Control* c = FindControl(id);
  if (!c) return -EINVAL;
  // Integer controls are clamped into range, booleans become 0/1.
  if (c->type == V4L2_CTRL_TYPE_BOOLEAN)
    value = value ? 1 : 0;
  else
    value = std::min(std::max(value, c->min), c->max);
  int32_t old = 0;
  GetCtrl(id, &old);
  switch (id) {
    case V4L2_CID_HFLIP: hflip_ = value; break;
    case V4L2_CID_VFLIP: vflip_ = value; break;
    case kCidTransTime: transtime_ms_ = value; break;
    case kCidTransNumBufs: translen_ = value; break;
  }
  if (old != value) QueueCtrlEvent(id, false);
  return 0;
}

int M2mContext::QueryCtrl(struct v4l2_queryctrl* q) const {
  uint32_t id = q->id & ~(V4L2_CTRL_FLAG_NEXT_CTRL | V4L2_CTRL_FLAG_NEXT_COMPOUND);
  const Control* c = nullptr;
  if (q->id & V4L2_CTRL_FLAG_NEXT_CTRL) {
    for (const Control& k : kControls) {
      if (k.id > id) {
        c = &k;
        break;
      }
    }
  } else {
    c = FindControl(id);
  }
  if (!c) return -EINVAL;
  memset(q, 0, sizeof(*q));
  q->id = c->id;
  q->type = c->type;
  strncpy(reinterpret_cast<char*>(q->name), c->name, sizeof(q->name) - 1);
  q->minimum = c->min;
  q->maximum = c->max;
  q->step = c->step;
  q->default_value = c->id == kCidTransTime
                         ? dev_->config().processing_delay_ms
                         : (c->id == kCidTransNumBufs ? 1 : 0);
  return 0;
}

void M2mContext::QueueCtrlEvent(uint32_t id, bool initial) {
  // The controls are per context (vim2m's ctx->hdl), so a change is only
  // ever made by this fh, and its subscribers see it only with
  // V4L2_EVENT_SUB_FL_ALLOW_FEEDBACK (send_event() in v4l2-ctrls).
  uint32_t changes = initial
                         ? V4L2_EVENT_CTRL_CH_VALUE | V4L2_EVENT_CTRL_CH_FLAGS
                         : V4L2_EVENT_CTRL_CH_VALUE;
  for (const Subscription& s : subs_) {
    if (s.type != V4L2_EVENT_CTRL || s.id != id) continue;
    if (!initial && !(s.flags & V4L2_EVENT_SUB_FL_ALLOW_FEEDBACK)) continue;
    const Control* c = FindControl(id);
    struct v4l2_event ev = {};
    ev.type = V4L2_EVENT_CTRL;
    ev.id = id;
    ev.u.ctrl.changes = changes;
    ev.u.ctrl.type = c->type;
    int32_t v = 0;
    GetCtrl(id, &v);
    ev.u.ctrl.value = v;
    ev.u.ctrl.minimum = c->min;
    ev.u.ctrl.maximum = c->max;
    ev.u.ctrl.step = c->step;
    ev.sequence = event_sequence_++;
    clock_gettime(CLOCK_MONOTONIC, &ev.timestamp);
    events_.push_back(ev);
  }
}

int M2mContext::Subscribe(const struct v4l2_event_subscription* sub) {
  // v4l2_ctrl_subscribe_event(): control events only.
  if (sub->type != V4L2_EVENT_CTRL || !FindControl(sub->id)) return -EINVAL;
  for (Subscription& s : subs_) {
    if (s.type == sub->type && s.id == sub->id) {
      s.flags = sub->flags;
      return 0;
    }
  }
  subs_.push_back({sub->type, sub->id, sub->flags});
  if (sub->flags & V4L2_EVENT_SUB_FL_SEND_INITIAL)
    QueueCtrlEvent(sub->id, true);
  return 0;
}

int M2mContext::Unsubscribe(const struct v4l2_event_subscription* sub) {
  subs_.erase(std::remove_if(subs_.begin(), subs_.end(),
                             [sub](const Subscription& s) {
                               return sub->type == V4L2_EVENT_ALL ||
                                      (s.type == sub->type && s.id == sub->id);
                             }),
              subs_.end());
  if (sub->type == V4L2_EVENT_ALL) events_.clear();
  return 0;
}

int M2mContext::Dqevent(std::unique_lock<std::mutex>& lock,
                        struct v4l2_event* ev) {
  // v4l2_event_dequeue(): ENOENT when none on a non-blocking fd.
  if (events_.empty()) {
    if (NonblockingNow()) return -ENOENT;
    int r = WaitLocked(lock, *dev_, this, [this] { return !events_.empty(); });
    if (r != 0) return r;
  }
  *ev = events_.front();
  events_.pop_front();
  ev->pending = static_cast<uint32_t>(events_.size());
  return 0;
}

int M2mContext::BufferIoctl(std::unique_lock<std::mutex>& lock,
                            unsigned long cmd, void* arg) {
  // Buffer ioctls hold the queues' lock (vq->lock = ctx->vb_mutex).
  int r = vb_mutex_.Lock(lock, *dev_, this);
  if (r != 0) return r;
  ModelMutexGuard guard(vb_mutex_, *dev_);
  switch (cmd) {
    case VIDIOC_REQBUFS: {
      auto* user = static_cast<struct v4l2_requestbuffers*>(arg);
      if (!ValidType(user->type)) return -EINVAL;  // check_fmt()
      struct v4l2_requestbuffers req = *user;
      memset(req.reserved, 0, sizeof(req.reserved));
      r = Queue(req.type).Reqbufs(&req);
      if (r == 0) *user = req;
      return r;
    }
    case VIDIOC_QUERYBUF: {
      auto* user = static_cast<struct v4l2_buffer*>(arg);
      if (!ValidType(user->type)) return -EINVAL;
      struct v4l2_buffer b = *user;
      V4l2Queue& q = Queue(b.type);
      r = q.Querybuf(&b);
      if (r != 0) return r;
      if (!q.is_output() && b.memory == V4L2_MEMORY_MMAP)
        b.m.offset += kDstQueueOffBase;
      *user = b;
      return 0;
    }
    case VIDIOC_QBUF: {
      auto* user = static_cast<struct v4l2_buffer*>(arg);
      if (!ValidType(user->type)) return -EINVAL;
      struct v4l2_buffer b = *user;
      V4l2Queue& q = Queue(b.type);
      if (!q.is_output() && (b.flags & V4L2_BUF_FLAG_REQUEST_FD)) return -EPERM;
      bool import_failed = false;
      r = q.Qbuf(&b, &import_failed);
      if (q.is_output() && q.memory() == V4L2_MEMORY_DMABUF) {
        if (r == 0) ++dev_->output_imported_;
        if (import_failed) ++dev_->import_rejected_;
      }
      if (r != 0) return r;
      if (!q.is_output() && b.memory == V4L2_MEMORY_MMAP)
        b.m.offset += kDstQueueOffBase;
      *user = b;
      dev_->TrySchedule(this);
      return 0;
    }
    case VIDIOC_DQBUF: {
      auto* user = static_cast<struct v4l2_buffer*>(arg);
      if (!ValidType(user->type)) return -EINVAL;
      struct v4l2_buffer b = *user;
      r = Dqbuf(lock, &b);
      if (r == 0) *user = b;
      return r;
    }
    case VIDIOC_STREAMON: {
      uint32_t type = *static_cast<const uint32_t*>(arg);
      r = Queue(type).Streamon(type);
      if (r == 0) dev_->TrySchedule(this);
      return r;
    }
    case VIDIOC_STREAMOFF: {
      // v4l2_m2m_streamoff(): the job is cancelled before the type is even
      // checked, so a bad type leaves the context aborted.
      uint32_t type = *static_cast<const uint32_t*>(arg);
      dev_->CancelJob(lock, this);
      V4l2Queue& q = Queue(type);
      r = q.Streamoff(type);
      if (r != 0) return r;
      job_queued_ = false;
      job_running_ = false;
      job_abort_ = false;
      (q.is_output() ? src_rdy_ : dst_rdy_).clear();
      return 0;
    }
    case VIDIOC_EXPBUF: {
      auto* user = static_cast<struct v4l2_exportbuffer*>(arg);
      struct v4l2_exportbuffer e = *user;
      r = Queue(e.type).Expbuf(&e);
      if (r == 0) *user = e;
      return r;
    }
    default:
      return -ENOTTY;
  }
}

int M2mContext::Dqbuf(std::unique_lock<std::mutex>& lock,
                      struct v4l2_buffer* b) {
  V4l2Queue& q = Queue(b->type);
  for (;;) {
    int r = q.Dqbuf(b);
    if (r != -EAGAIN || NonblockingNow()) {
      if (r == 0 && !q.is_output() && b->memory == V4L2_MEMORY_MMAP)
        b->m.offset += kDstQueueOffBase;
      return r;
    }
    // vb2 sleeps with the queue lock released (wait_prepare).
    q.waiting_in_dqbuf = true;
    vb_mutex_.Unlock(*dev_);
    r = WaitLocked(lock, *dev_, this, [&q] { return q.DqbufReady(); });
    q.waiting_in_dqbuf = false;
    // The guard in BufferIoctl unlocks it again on every path.
    vb_mutex_.LockUninterruptible(lock, *dev_);
    if (r != 0) return r;
  }
}

int M2mContext::Mmap(size_t length, int prot, int flags, off_t offset,
                     void** out) {
  std::unique_lock<std::mutex> lock(dev_->mu);
  if (dev_->dead) return -ENODEV;  // v4l2_mmap(): unregistered
  // v4l2_m2m_mmap(): the offset picks the queue.
  if (offset < static_cast<off_t>(kDstQueueOffBase))
    return out_.Mmap(length, prot, flags, offset, out);
  return cap_.Mmap(length, prot, flags, offset - kDstQueueOffBase, out);
}

void M2mContext::Release() {
  // vim2m_release() -> v4l2_m2m_ctx_release()
  std::unique_lock<std::mutex> lock(dev_->mu);
  dev_->CancelJob(lock, this);
  out_.Release();
  cap_.Release();
  src_rdy_.clear();
  dst_rdy_.clear();
  dev_->ChangedLocked();
}

short M2mContext::PollMaskLocked(short events) {
  // v4l2_poll(): an unregistered device.
  if (dev_->dead) return POLLERR | POLLHUP | POLLPRI;
  short rc = 0;
  if (events & (POLLOUT | POLLWRNORM | POLLIN | POLLRDNORM)) {
    // v4l2_m2m_poll_for_data()
    bool src_idle = !out_.streaming() || out_.queued_empty();
    bool dst_idle = !cap_.streaming() ||
                    (cap_.queued_empty() && !cap_.last_buffer_dequeued());
    if (src_idle && dst_idle) {
      rc = POLLERR;
    } else {
      if (!out_.done_empty()) rc |= POLLOUT | POLLWRNORM;
      if (!cap_.done_empty() || cap_.last_buffer_dequeued())
        rc |= POLLIN | POLLRDNORM;
    }
  }
  if (!events_.empty()) rc |= POLLPRI;
  return rc;
}

// V4l2Queue::Driver

int M2mContext::QueueSetup(V4l2Queue& q, unsigned* count, unsigned* size) {
  // vim2m_queue_setup(): at most 16 MiB per queue.
  const QData& d = Data(q);
  unsigned s = SizeOf(d, d.width, d.height, d.fmt);
  unsigned n = *count;
  while (n && uint64_t{s} * n > kVidMemLimit) --n;
  *count = n;
  *size = s;
  return 0;
}

int M2mContext::BufOutValidate(V4l2Queue&, V4l2Queue::Buffer& b) {
  if (b.field == V4L2_FIELD_ANY) b.field = V4L2_FIELD_NONE;
  return b.field == V4L2_FIELD_NONE ? 0 : -EINVAL;
}

int M2mContext::BufPrepare(V4l2Queue& q, V4l2Queue::Buffer& b) {
  // vim2m_buf_prepare(): "data will not fit into plane"; the payload
  // becomes sizeimage, whatever bytesused the user gave.
  const QData& d = Data(q);
  if (b.length < d.sizeimage) return -EINVAL;
  b.bytesused = d.sizeimage;
  return 0;
}

void M2mContext::BufQueue(V4l2Queue& q, unsigned index) {
  (q.is_output() ? src_rdy_ : dst_rdy_).push_back(index);
}

void M2mContext::StartStreaming(V4l2Queue& q) {
  if (q.is_output()) aborting_ = false;
  Data(q).sequence = 0;
}

void M2mContext::StopStreaming(V4l2Queue& q) {
  std::deque<unsigned>& rdy = q.is_output() ? src_rdy_ : dst_rdy_;
  for (unsigned i : rdy) q.BufferDone(i, V4l2Queue::BufState::kError);
  rdy.clear();
}

// ---------------------------------------------------------------------------
// Device

M2mDecoder::M2mDecoder(const SimDecoderConfig& config, int index)
    : config_(config), index_(index) {}

M2mDecoder::~M2mDecoder() { Kill(); }

std::string M2mDecoder::NodePath(int index) {
  return "/dev/video" + std::to_string(index);
}

int M2mDecoder::Open(int fd, int flags, std::shared_ptr<SimFile>* out) {
  std::lock_guard<std::mutex> lock(mu);
  if (dead) return -ENODEV;
  *out = std::make_shared<M2mContext>(shared_from_this(), fd, flags,
                                      NodePath(index_));
  if (!worker_.joinable() && !stop_)
    worker_ = std::thread(&M2mDecoder::WorkerMain, this);
  ChangedLocked();
  return 0;
}

void M2mDecoder::Kill() {
  {
    std::lock_guard<std::mutex> lock(mu);
    dead = true;
    stop_ = true;
    ChangedLocked();
  }
  if (worker_.joinable() && worker_.get_id() != std::this_thread::get_id())
    worker_.join();
}

SimDecoderStats M2mDecoder::Stats() {
  std::lock_guard<std::mutex> lock(mu);
  SimDecoderStats s;
  s.path = NodePath(index_);
  s.name = config_.name;
  s.output_imported = output_imported_;
  s.import_rejected = import_rejected_;
  s.jobs_done = jobs_done_;
  return s;
}

void M2mDecoder::TrySchedule(M2mContext* ctx) {
  // __v4l2_m2m_try_queue()
  if (ctx->out_.streaming() && ctx->cap_.streaming() && !ctx->job_abort_ &&
      !ctx->job_queued_ && !ctx->src_rdy_.empty() && !ctx->dst_rdy_.empty() &&
      ctx->src_rdy_.size() >= static_cast<size_t>(ctx->translen_) &&
      ctx->dst_rdy_.size() >= static_cast<size_t>(ctx->translen_)) {
    job_queue_.push_back(ctx);
    ctx->job_queued_ = true;
  }
  TryRun();
}

void M2mDecoder::TryRun() {
  // v4l2_m2m_try_run(): one job at a time on the device.
  if (running_ || job_queue_.empty() || dead) return;
  running_ = job_queue_.front();
  job_queue_.pop_front();
  running_->job_running_ = true;
  StartPair(running_);
}

void M2mDecoder::StartPair(M2mContext* ctx) {
  // device_run() -> device_process(): the work is done now, the "irq"
  // comes after the transaction time.
  V4l2Queue::Buffer& src = ctx->out_.buffer(ctx->src_rdy_.front());
  V4l2Queue::Buffer& dst = ctx->cap_.buffer(ctx->dst_rdy_.front());
  dst.sequence = ctx->q_[1].sequence++;
  src.sequence = ctx->q_[0].sequence++;
  // v4l2_m2m_buf_copy_metadata(..., copy_frame_flags = true)
  const uint32_t mask = V4L2_BUF_FLAG_TIMECODE | V4L2_BUF_FLAG_KEYFRAME |
                        V4L2_BUF_FLAG_PFRAME | V4L2_BUF_FLAG_BFRAME;
  dst.timestamp = src.timestamp;
  if (src.flags & V4L2_BUF_FLAG_TIMECODE) dst.timecode = src.timecode;
  dst.field = src.field;
  dst.flags = (dst.flags & ~mask) | (src.flags & mask);
  if (src.vaddr() && dst.vaddr() && dst.writable()) {
    size_t n = std::min<size_t>(src.bytesused, src.vsize());
    n = std::min(n, dst.vsize());
    memmove(dst.vaddr(), src.vaddr(), n);
  }
  running_done_at_ns_ =
      MonotonicNs() + uint64_t(std::max(0, ctx->transtime_ms_)) * 1000000;
  cv.notify_all();
}

void M2mDecoder::FinishPair() {
  // device_work()
  M2mContext* ctx = running_;
  unsigned src = ctx->src_rdy_.front();
  unsigned dst = ctx->dst_rdy_.front();
  ctx->src_rdy_.pop_front();
  ctx->dst_rdy_.pop_front();
  ++ctx->num_processed_;
  ctx->out_.BufferDone(src, V4l2Queue::BufState::kDone);
  ctx->cap_.BufferDone(dst, V4l2Queue::BufState::kDone);
  ++jobs_done_;
  if (ctx->num_processed_ >= static_cast<unsigned>(ctx->translen_) ||
      ctx->aborting_ || ctx->src_rdy_.empty() || ctx->dst_rdy_.empty()) {
    // v4l2_m2m_job_finish() -> schedule the next job.
    ctx->num_processed_ = 0;
    ctx->job_running_ = false;
    ctx->job_queued_ = false;
    running_ = nullptr;
    TrySchedule(ctx);
  } else {
    StartPair(ctx);
  }
  ChangedLocked();
}

void M2mDecoder::CancelJob(std::unique_lock<std::mutex>& lock,
                           M2mContext* ctx) {
  // v4l2_m2m_cancel_job()
  ctx->job_abort_ = true;
  if (ctx->job_running_ && !dead) {
    ctx->aborting_ = true;  // job_abort(): finish after this buffer
    cv.wait(lock, [&] { return !ctx->job_running_ || dead; });
  }
  if (ctx->job_queued_ || ctx->job_running_) {
    auto it = std::find(job_queue_.begin(), job_queue_.end(), ctx);
    if (it != job_queue_.end()) job_queue_.erase(it);
    if (running_ == ctx) running_ = nullptr;  // a dead device's last job
    ctx->job_queued_ = false;
    ctx->job_running_ = false;
  }
}

void M2mDecoder::WorkerMain() {
  pthread_setname_np(pthread_self(), "dmx-sim-m2m");
  std::unique_lock<std::mutex> lock(mu);
  while (!stop_) {
    if (!running_) {
      cv.wait(lock);
      continue;
    }
    if (MonotonicNs() < running_done_at_ns_) {
      cv.wait_until(lock, std::chrono::steady_clock::time_point(
                              std::chrono::nanoseconds(running_done_at_ns_)));
      continue;
    }
    FinishPair();
  }
}

}  // namespace sim
}  // namespace dmx
