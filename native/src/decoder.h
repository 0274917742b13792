// A V4L2 memory-to-memory decoder that imports demux buffers as DMABUFs on
// its OUTPUT queue. DecoderCore is shared by the JS object (Decoder) and the
// pump's DecoderSink; every method is thread-safe. Single-planar and
// multi-planar devices are both handled (one plane).
#pragma once

#include <sys/ioctl.h>
#include <linux/videodev2.h>
#include <napi.h>
#include <stdint.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "addon.h"
#include "sink.h"
#include "sys/sys.h"
#include "sys_error.h"

namespace dmx {

enum class Queue { kOutput, kCapture };

struct Format {
  uint32_t fourcc = 0, width = 0, height = 0, bytesperline = 0, sizeimage = 0;
};

struct DecodedBuffer {
  uint32_t index = 0, bytesused = 0, flags = 0, sequence = 0;
};

class DecoderCore {
 public:
  DecoderCore(std::shared_ptr<Sys> sys, std::string path);
  ~DecoderCore();

  std::optional<SysError> Open();
  void Close();  // idempotent; frees both queues by closing the node
  bool is_open() const;
  const std::string& path() const { return path_; }
  int fd() const;
  Sys* sys() const { return sys_.get(); }

  std::optional<SysError> QueryCap(v4l2_capability* out);
  bool multiplanar() const { return mplane_; }
  std::optional<SysError> EnumFormats(Queue q, std::vector<v4l2_fmtdesc>* out);
  std::optional<SysError> GetFormat(Queue q, Format* out);
  std::optional<SysError> SetFormat(Queue q, Format* inout);
  // VIDIOC_REQBUFS with count = 0: frees and reports the queue's capabilities.
  std::optional<SysError> Probe(Queue q, v4l2_memory memory, uint32_t* capabilities);
  // VIDIOC_REQBUFS. `memory` is a v4l2_memory as is; `raw_type` (non-zero)
  // replaces the queue's v4l2_buf_type (diagnosis tests).
  std::optional<SysError> RequestBuffers(Queue q, uint32_t memory, uint32_t* count, uint32_t raw_type = 0);
  std::optional<SysError> StreamOn(Queue q);
  std::optional<SysError> StreamOff(Queue q);

  // Imports `dmabuf_fd` into OUTPUT slot `slot`. An EINVAL is diagnosed from
  // the three numbers that decide it (kernel-facts.md): bytesused, the
  // dmabuf's size and the OUTPUT sizeimage at REQBUFS time.
  std::optional<SysError> QueueDmabuf(uint32_t slot, int dmabuf_fd, uint32_t bytesused, uint64_t dmabuf_size);
  std::optional<SysError> DequeueOutput(std::optional<DecodedBuffer>* out);
  // CAPTURE: MMAP buffers that nobody reads (a headless decoder must still
  // have somewhere to write, or it stops taking OUTPUT buffers).
  std::optional<SysError> SetupCapture(uint32_t* count);
  std::optional<SysError> QueueCapture(uint32_t index);
  std::optional<SysError> DequeueCapture(std::optional<DecodedBuffer>* out);
  std::optional<SysError> SubscribeEvents();
  // Dequeues one event; nullopt type when none pending.
  std::optional<SysError> DequeueEvent(std::optional<v4l2_event>* out);

  uint32_t output_sizeimage() const;
  uint32_t output_count() const;
  uint32_t capture_count() const;
  bool streaming(Queue q) const;

 private:
  uint32_t Type(Queue q) const;
  SysError Fail(int err, const char* request) const;
  // Sets the detail and reason of a failed VIDIOC_REQBUFS on queue `q`.
  void ExplainReqbufsLocked(SysError* e, Queue q, uint32_t type, uint32_t memory) const;

  const std::shared_ptr<Sys> sys_;
  const std::string path_;
  mutable std::mutex mutex_;
  int fd_ = -1;
  bool mplane_ = false;
  uint32_t output_sizeimage_ = 0;  // the OUTPUT format's sizeimage when buffers were requested
  uint32_t output_count_ = 0;
  uint32_t capture_count_ = 0;
  uint32_t output_memory_ = 0;  // v4l2_memory of the OUTPUT buffers, 0 when none
  // V4L2_BUF_CAP_* each queue reported on its last successful REQBUFS; 0
  // when not known yet (or a kernel too old to report them).
  uint32_t queue_caps_[2] = {0, 0};
  // OUTPUT slots queued and not yet dequeued: a second QBUF of one is
  // EINVAL for a reason that has nothing to do with the buffer's memory.
  std::vector<bool> output_queued_;
  bool streaming_[2] = {false, false};
};

// The pump's sink for a decoder: imports each demux buffer on a free OUTPUT
// slot, hands it back when the decoder returns it, keeps CAPTURE cycling,
// and survives the decoder going away (the demux pool keeps cycling).
class DecoderSink : public Sink {
 public:
  explicit DecoderSink(std::shared_ptr<DecoderCore> core);
  const char* Kind() const override { return "decoder"; }
  void Attach(SinkHost* host) override;
  void AddPollFds(std::vector<struct pollfd>* fds) override;
  void OnPoll(const struct pollfd* fds, size_t count) override;
  SubmitResult Submit(const SinkBuffer& buffer) override;
  int NextTimeoutMs() override;
  void RecoverAll() override;

  struct Counters {
    uint64_t imported = 0, import_rejected = 0, returned = 0, capture_frames = 0, events = 0, no_free_slot = 0;
    bool gone = false;
  };
  Counters counters() const;
  // True between a pump's Attach and its RecoverAll (the pump is running).
  bool attached() const { return attached_.load(); }

 private:
  void Gone(const SysError& why);
  void DrainOutput();
  void DrainCapture();
  void DrainEvents();
  void ReturnAllHeld();

  std::shared_ptr<DecoderCore> core_;
  SinkHost* host_ = nullptr;
  std::vector<int64_t> slot_to_index_;  // -1: slot free
  bool gone_ = false;
  std::atomic<bool> attached_{false};
  uint64_t quiet_until_ns_ = 0;  // after a POLLERR with nothing to do, poll less
  mutable std::mutex counters_mutex_;
  Counters counters_;
};

// JS class `Decoder`.
class Decoder : public Napi::ObjectWrap<Decoder>, public Closable {
 public:
  static Napi::Function DefineClass(Napi::Env env);
  static Decoder* FromValue(Napi::Env env, const Napi::Value& value);
  explicit Decoder(const Napi::CallbackInfo& info);
  ~Decoder() override;

  std::shared_ptr<DecoderCore> core() const { return core_; }
  // The sink a pump uses; created on first use, one per decoder.
  std::shared_ptr<DecoderSink> sink();
  void CloseFromCleanup() override;
  int CloseOrder() const override { return 1; }

 private:
  DecoderCore& Open(Napi::Env env);
  static Napi::Value JS_find(const Napi::CallbackInfo& info);
  static Napi::Value JS_list(const Napi::CallbackInfo& info);
  Napi::Value JS_querycap(const Napi::CallbackInfo& info);
  Napi::Value JS_enumFormats(const Napi::CallbackInfo& info);
  Napi::Value JS_getFormat(const Napi::CallbackInfo& info);
  Napi::Value JS_setFormat(const Napi::CallbackInfo& info);
  Napi::Value JS_probeBuffers(const Napi::CallbackInfo& info);
  Napi::Value JS_requestBuffers(const Napi::CallbackInfo& info);
  Napi::Value JS_queueDmabuf(const Napi::CallbackInfo& info);
  Napi::Value JS_dequeueOutput(const Napi::CallbackInfo& info);
  Napi::Value JS_setupCapture(const Napi::CallbackInfo& info);
  Napi::Value JS_dequeueCapture(const Napi::CallbackInfo& info);
  Napi::Value JS_queueCapture(const Napi::CallbackInfo& info);
  Napi::Value JS_streamOn(const Napi::CallbackInfo& info);
  Napi::Value JS_streamOff(const Napi::CallbackInfo& info);
  Napi::Value JS_prepare(const Napi::CallbackInfo& info);
  Napi::Value JS_stats(const Napi::CallbackInfo& info);
  Napi::Value JS_close(const Napi::CallbackInfo& info);
  Napi::Value JS_getFd(const Napi::CallbackInfo& info);
  Napi::Value JS_getPath(const Napi::CallbackInfo& info);

  std::shared_ptr<DecoderCore> core_;
  std::shared_ptr<DecoderSink> sink_;
  bool registered_ = false;
};

// Finds a V4L2 device by its name under /sys/class/video4linux; empty when
// none. Never by number: numbers change with probe order.
std::string FindVideoDeviceByName(Sys* sys, const std::string& name);

struct VideoDeviceEntry {
  std::string path, name;
};
// Every V4L2 device node with its sysfs name, sorted by node.
std::vector<VideoDeviceEntry> ListVideoDevices(Sys* sys);

}  // namespace dmx
