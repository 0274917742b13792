// A DVB demux or DVR node with its memory-mapped buffer pool.
//
// DemuxCore is the pool itself, shared by the JS object (Demux) and a pump
// thread; every method is thread-safe. It follows libdvbv5's dvb-vb2.c call
// sequence: REQBUFS (keep what the kernel granted), QUERYBUF + mmap and
// EXPBUF per buffer, QBUF, then DQBUF/QBUF in a loop; close unmaps and closes
// every exported fd. The ownership ledger says where each buffer is.
#pragma once

#include <sys/ioctl.h>
#include <linux/dvb/dmx.h>
#include <napi.h>
#include <stdint.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "addon.h"
#include "sys/sys.h"
#include "sys_error.h"

namespace dmx {

// DMX_REQBUFS clamps to this (dvb_vb2.c DVB_V2_MAX_SIZE).
constexpr uint32_t kMaxDemuxBufferSize = 4096 * 188;

enum class Owner { kAgent, kKernel, kDecoder, kConsumer };
const char* OwnerName(Owner owner);

struct PoolBuffer {
  uint32_t index = 0;
  uint32_t length = 0;  // dmx_buffer.length: the requested size
  uint32_t offset = 0;  // mmap offset from QUERYBUF
  uint8_t* map = nullptr;
  size_t map_length = 0;
  int export_fd = -1;
  uint64_t dmabuf_size = 0;  // page-aligned allocation (lseek END on the dmabuf)
  Owner owner = Owner::kAgent;
  uint32_t bytesused = 0;  // as last dequeued
  uint32_t flags = 0;
  uint32_t sequence = 0;  // dmx_buffer.count as last dequeued
  uint64_t since_ns = 0;  // CLOCK_MONOTONIC when the owner last changed
};

struct Dequeued {
  uint32_t index, bytesused, offset, length, flags, count;
};

uint64_t MonotonicNs();

class DemuxCore {
 public:
  enum class Kind { kDemux, kDvr };

  DemuxCore(std::shared_ptr<Sys> sys, std::string path, Kind kind);
  ~DemuxCore();

  // Opens the node: always O_NONBLOCK (a blocking DQBUF sleeps holding the
  // adapter-wide mutex, kernel-facts.md); the DVR O_RDWR, which mmap needs.
  std::optional<SysError> Open();
  // Unmaps every buffer, closes every exported fd and the node. Idempotent.
  void Close();
  bool is_open() const;

  std::optional<SysError> SetPesFilter(uint16_t pid, dmx_output output, dmx_ts_pes pes_type, bool start);
  std::optional<SysError> SetSectionFilter(uint16_t pid, const dmx_filter& filter, uint32_t timeout_ms,
                                           uint32_t flags);
  std::optional<SysError> AddPid(uint16_t pid);
  std::optional<SysError> Start();
  std::optional<SysError> Stop();
  std::optional<SysError> SetBufferSize(uint32_t bytes);

  // DMX_REQBUFS. Refused before the kernel sees it while streaming, unless
  // `allow_while_streaming` (tests of the kernel's own behaviour): a
  // rejected REQBUFS kills the stream (kernel-facts.md), so resize by
  // reopening. On success `count`/`size` hold what the kernel granted.
  std::optional<SysError> RequestBuffers(uint32_t* count, uint32_t* size, bool allow_while_streaming);
  std::optional<SysError> QueryBuffer(uint32_t index, dmx_buffer* out);
  // QUERYBUF + mmap of every buffer not yet mapped.
  std::optional<SysError> MapAll();
  // DMX_EXPBUF. The pool owns every fd it exports and closes them on
  // Close; the first one of each buffer is the one sinks hand on.
  std::optional<SysError> Export(uint32_t index, uint32_t flags, int* fd_out);
  std::optional<SysError> ExportAll(uint32_t flags);
  std::optional<SysError> Queue(uint32_t index);
  // DMX_DQBUF; nullopt result with no error means EAGAIN (nothing ready).
  std::optional<SysError> Dequeue(std::optional<Dequeued>* out);

  // Reads mapped bytes (a copy, for diagnostics and tests only).
  std::optional<SysError> Peek(uint32_t index, uint32_t start, uint32_t length, std::vector<uint8_t>* out);

  // Ledger access (the pump moves ownership as buffers travel).
  void SetOwner(uint32_t index, Owner owner);
  std::vector<PoolBuffer> Snapshot() const;
  uint32_t count() const;
  uint32_t size() const;
  bool streaming() const;
  int fd() const;
  Sys* sys() const { return sys_.get(); }
  const std::string& path() const { return path_; }
  Kind kind() const { return kind_; }
  // Copy of the buffer table entry, for the pump's hot path.
  bool GetBuffer(uint32_t index, PoolBuffer* out) const;

  // A pump drives the pool: JS-level QBUF/DQBUF are refused meanwhile.
  bool TryAttachPump();
  void DetachPump();
  bool pump_attached() const;

  // The error the kernel would give for `index` on a pool that lacks it
  // (EINVAL), for refusing the call before the kernel sees it; nullopt when
  // the index is in range. `request` is the ioctl ("DMX_QBUF"), or empty
  // with `syscall` naming a call of our own ("peek").
  std::optional<SysError> RefuseIndex(uint32_t index, const char* syscall, const char* request) const;
  // The EBUSY of any call while a pump drives the pool, never sent.
  SysError RefuseWhilePumped(const char* syscall, const char* request) const;

 private:
  SysError Fail(int err, const char* request) const;
  void ReleasePoolLocked();
  // Sets the reason of an EINVAL on QBUF/QUERYBUF/EXPBUF from the ledger.
  void ExplainIndexLocked(SysError* e, uint32_t index) const;

  const std::shared_ptr<Sys> sys_;
  const std::string path_;
  const Kind kind_;
  mutable std::mutex mutex_;
  int fd_ = -1;
  bool streaming_ = false;  // set by the first successful QBUF
  bool pump_attached_ = false;
  uint32_t size_ = 0;
  // The size the kernel's dvb_vb2_ctx holds (buf_siz): every DMX_REQBUFS
  // that reaches dvb_vb2_reqbufs overwrites it, a rejected one too. A
  // rejected larger size makes every later QBUF fail with EINVAL ("data
  // will not fit into plane", kernel-facts.md).
  uint32_t kernel_buf_size_ = 0;
  // The ledger. Writers hold mutex_ and then ledger_mu_; readers hold either.
  // Snapshot() takes ledger_mu_ alone, so the agent can still read who holds
  // which buffer while the pump thread waits inside an ioctl under mutex_
  // (a driver blocked behind the adapter-wide dmxdev mutex).
  mutable std::mutex ledger_mu_;
  std::vector<PoolBuffer> buffers_;
  std::vector<int> extra_export_fds_;  // further EXPBUFs of an already exported buffer
};

// JS class `Demux`.
class Demux : public Napi::ObjectWrap<Demux>, public Closable {
 public:
  static Napi::Function DefineClass(Napi::Env env);
  static Demux* FromValue(Napi::Env env, const Napi::Value& value);
  explicit Demux(const Napi::CallbackInfo& info);
  ~Demux() override;

  std::shared_ptr<DemuxCore> core() const { return core_; }
  void CloseFromCleanup() override;
  int CloseOrder() const override { return 2; }

 private:
  DemuxCore& Open(Napi::Env env);  // throws when closed
  Napi::Value JS_setPesFilter(const Napi::CallbackInfo& info);
  Napi::Value JS_setSectionFilter(const Napi::CallbackInfo& info);
  Napi::Value JS_addPid(const Napi::CallbackInfo& info);
  Napi::Value JS_start(const Napi::CallbackInfo& info);
  Napi::Value JS_stop(const Napi::CallbackInfo& info);
  Napi::Value JS_setBufferSize(const Napi::CallbackInfo& info);
  Napi::Value JS_requestBuffers(const Napi::CallbackInfo& info);
  Napi::Value JS_queryBuffer(const Napi::CallbackInfo& info);
  Napi::Value JS_mapBuffers(const Napi::CallbackInfo& info);
  Napi::Value JS_exportBuffer(const Napi::CallbackInfo& info);
  Napi::Value JS_exportBuffers(const Napi::CallbackInfo& info);
  Napi::Value JS_queueBuffer(const Napi::CallbackInfo& info);
  Napi::Value JS_dequeueBuffer(const Napi::CallbackInfo& info);
  Napi::Value JS_peek(const Napi::CallbackInfo& info);
  Napi::Value JS_ledger(const Napi::CallbackInfo& info);
  Napi::Value JS_poll(const Napi::CallbackInfo& info);
  Napi::Value JS_close(const Napi::CallbackInfo& info);
  Napi::Value JS_getFd(const Napi::CallbackInfo& info);
  Napi::Value JS_getPath(const Napi::CallbackInfo& info);
  Napi::Value JS_getStreaming(const Napi::CallbackInfo& info);
  Napi::Value JS_getBufferCount(const Napi::CallbackInfo& info);
  Napi::Value JS_getBufferSize(const Napi::CallbackInfo& info);
  void CloseNow();

  std::shared_ptr<DemuxCore> core_;
  bool registered_ = false;
};

}  // namespace dmx
