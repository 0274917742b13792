// The data path: a native thread ("dmx-pump") per stream that polls the
// demux, dequeues each filled buffer, hands it to the sink, takes it back and
// requeues it, never waiting for the JS event loop. It keeps the counters JS
// reads as a snapshot and posts state changes and errors to JS in batches
// through a thread-safe function that can never block the thread.
#pragma once

#include <napi.h>
#include <stdint.h>

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "addon.h"
#include "demux.h"
#include "sink.h"
#include "ts_check.h"

namespace dmx {

struct PumpEvent {
  std::string type;  // "state", "error", "note"
  std::string what;  // state name, note kind
  std::string detail;
  SysError error;         // for "error"
  uint64_t repeated = 0;  // identical errors folded into this one
  uint64_t at_ns = 0;
};

// Upper bounds (ms) of the sink hold-time histogram's buckets; one more
// bucket counts everything above the last.
constexpr uint64_t kHoldBoundsMs[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000};
constexpr size_t kHoldBuckets = sizeof(kHoldBoundsMs) / sizeof(kHoldBoundsMs[0]) + 1;

struct PumpStats {
  std::string state = "idle";
  uint64_t buffers_dequeued = 0, bytes_dequeued = 0;
  uint64_t flag_counts[5] = {};  // DMX_BUFFER_FLAG_* bits 0..4
  uint64_t requeue_failures = 0;
  uint64_t submitted = 0, declined = 0, returned = 0;
  uint64_t hold_ns_total = 0, hold_ns_max = 0;
  uint64_t hold_histogram[kHoldBuckets] = {};  // returned buffers by hold time
  uint64_t zero_queued_ns_total = 0, zero_queued_episodes = 0;
  uint64_t zero_queued_since_ns = 0;  // 0 when buffers are queued
  uint64_t last_dequeue_ns = 0, started_ns = 0;
  uint64_t events_dropped = 0;
  uint64_t polls = 0;
  uint32_t queued_in_kernel = 0, in_sink = 0;
  std::map<std::string, uint64_t> errors;  // "DMX_QBUF:EINVAL" -> count
};

class PumpCore : public SinkHost {
 public:
  using EventSink = std::function<void()>;  // wakes JS to drain events

  PumpCore(std::shared_ptr<DemuxCore> demux, std::shared_ptr<Sink> sink, bool ts_check, size_t event_limit);
  ~PumpCore() override;

  // Queues every buffer the agent holds and starts the thread.
  std::optional<SysError> Start(EventSink wake);
  // Stops the thread, recovers every buffer from the sink and requeues it.
  // Idempotent; safe from any thread but the pump's.
  void Stop();
  bool running() const { return running_.load(); }

  PumpStats Snapshot() const;
  TsChecker TsSnapshot() const;
  std::vector<PumpEvent> TakeEvents();
  const std::shared_ptr<DemuxCore>& demux() const { return demux_; }
  const char* sink_kind() const { return sink_ ? sink_->Kind() : "discard"; }

  // SinkHost (pump thread, or the stopping thread after join)
  void Returned(uint32_t index) override;
  void Error(const SysError& error) override;
  void Note(const std::string& what, const std::string& detail) override;

 private:
  void Run();
  uint32_t DrainDemux();  // returns how many buffers it dequeued
  void Requeue(uint32_t index);
  void RetryHeld();
  void SetState(const std::string& state, const std::string& detail);
  void Post(PumpEvent event);
  void FlushFoldedErrors(bool force);
  void CountQueued(int delta, uint64_t now);

  const std::shared_ptr<DemuxCore> demux_;
  const std::shared_ptr<Sink> sink_;
  const bool ts_check_;
  const size_t event_limit_;
  int stop_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> running_{false};
  std::atomic<bool> stop_requested_{false};
  EventSink wake_;

  mutable std::mutex mutex_;  // guards stats_, ts_, events_, folded_
  PumpStats stats_;
  TsChecker ts_;
  std::deque<PumpEvent> events_;
  bool wake_pending_ = false;
  struct Folded {
    uint64_t last_post_ns = 0, suppressed = 0;
    SysError last;
  };
  std::map<std::string, Folded> folded_;

  // Pump-thread state.
  std::vector<uint64_t> submitted_at_ns_;
  std::vector<uint32_t> held_;  // requeue failed; retried on the next tick
  uint64_t retry_after_ns_ = 0;
  uint64_t demux_quiet_until_ns_ = 0;
  int spurious_wakeups_ = 0;
  bool spin_reported_ = false;
};

// JS class `Pump`.
class Pump : public Napi::ObjectWrap<Pump>, public Closable {
 public:
  static Napi::Function DefineClass(Napi::Env env);
  explicit Pump(const Napi::CallbackInfo& info);
  ~Pump() override;

  void CloseFromCleanup() override;
  int CloseOrder() const override { return 0; }

 private:
  Napi::Value JS_start(const Napi::CallbackInfo& info);
  Napi::Value JS_stop(const Napi::CallbackInfo& info);
  Napi::Value JS_stats(const Napi::CallbackInfo& info);
  Napi::Value JS_ledger(const Napi::CallbackInfo& info);
  Napi::Value JS_close(const Napi::CallbackInfo& info);
  Napi::Value JS_ref(const Napi::CallbackInfo& info);
  Napi::Value JS_unref(const Napi::CallbackInfo& info);
  Napi::Value JS_getRunning(const Napi::CallbackInfo& info);
  void Shutdown();  // shared by close(), the destructor and the cleanup hook
  void DeliverEvents(Napi::Env env, Napi::Function callback);

  std::shared_ptr<PumpCore> core_;
  Napi::ThreadSafeFunction tsfn_;
  bool tsfn_live_ = false;
  bool registered_ = false;
  bool closed_ = false;
  std::shared_ptr<Sink> sink_;
  std::shared_ptr<DemuxCore> demux_;
};

}  // namespace dmx
