#include "pump.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>

#include "consumer_sink.h"
#include "decoder.h"
#include "errors.h"

namespace dmx {

namespace {

constexpr int kIdleTickMs = 200;          // stats and retry cadence when nothing happens
constexpr uint64_t kFoldWindowNs = 1000000000ull;  // identical errors posted at most once a second
constexpr uint64_t kRetryNs = 100000000ull;
constexpr int kSpuriousLimit = 8;               // readable-but-empty wake-ups before backing off
constexpr uint64_t kQuietNs = 20000000ull;      // how long the demux is left out of poll then

const char* kFlagNames[5] = {"crc32Discard", "tei", "packetCounterMismatch", "discontinuityDetected",
                             "discontinuityIndicator"};

std::string ErrorKey(const SysError& e) {
  return (e.request.empty() ? e.syscall : e.request) + ":" + ErrnoName(e.err);
}

Owner OwnerForSink(const char* kind) {
  if (strcmp(kind, "decoder") == 0) return Owner::kDecoder;
  if (strcmp(kind, "consumer") == 0) return Owner::kConsumer;
  return Owner::kAgent;
}

}  // namespace

// ---------------------------------------------------------------- PumpCore

PumpCore::PumpCore(std::shared_ptr<DemuxCore> demux, std::shared_ptr<Sink> sink, bool ts_check, size_t event_limit)
    : demux_(std::move(demux)), sink_(std::move(sink)), ts_check_(ts_check), event_limit_(event_limit) {}

PumpCore::~PumpCore() { Stop(); }

std::optional<SysError> PumpCore::Start(EventSink wake) {
  if (running_.load()) return std::nullopt;
  uint32_t count = demux_->count();
  if (count == 0) {
    SysError e(EINVAL, "pump", "", demux_->path());
    e.detail = "the pool has no buffers: requestBuffers first";
    return e;
  }
  if (sink_ && strcmp(sink_->Kind(), "discard") != 0) {
    for (const PoolBuffer& b : demux_->Snapshot()) {
      if (b.export_fd < 0 || b.map == nullptr) {
        SysError e(EINVAL, "pump", "", demux_->path());
        e.detail = "every buffer must be mapped and exported before a sink can take it";
        e.Arg("index", b.index);
        return e;
      }
    }
  }
  if (!demux_->TryAttachPump()) {
    if (!demux_->is_open()) {
      SysError e(EBADF, "pump", "", demux_->path());
      e.detail = "the demux node is closed";
      return e;
    }
    SysError e(EBUSY, "pump", "", demux_->path());
    e.Reason("pump-attached").Prevented();
    e.detail = "another pump drives this pool";
    return e;
  }
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) {
    demux_->DetachPump();
    return SysError(errno, "eventfd", "", "");
  }
  wake_ = std::move(wake);
  submitted_at_ns_.assign(count, 0);
  held_.clear();
  uint64_t now = MonotonicNs();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.started_ns = now;
    stats_.queued_in_kernel = 0;
    stats_.in_sink = 0;
    for (const PoolBuffer& b : demux_->Snapshot())
      if (b.owner == Owner::kKernel) stats_.queued_in_kernel++;
    // Only a fall to zero while the pump runs counts as loss time; the
    // pool starts out in the agent's hands and is queued below.
    stats_.zero_queued_since_ns = 0;
  }
  // The consumer sink bounds what a player may hold by the pool's size.
  if (auto consumer = std::dynamic_pointer_cast<ConsumerSinkCore>(sink_)) consumer->SetPoolCount(count);
  if (sink_) sink_->Attach(this);
  // Everything the agent holds goes to the kernel; the first QBUF starts
  // the vb2 queue (dmxdev.c).
  for (const PoolBuffer& b : demux_->Snapshot())
    if (b.owner == Owner::kAgent) Requeue(b.index);
  stop_requested_ = false;
  running_ = true;
  SetState("running", "");
  thread_ = std::thread([this] { Run(); });
  return std::nullopt;
}

void PumpCore::Stop() {
  if (!running_.load()) return;
  stop_requested_ = true;
  uint64_t one = 1;
  ssize_t w = write(stop_fd_, &one, sizeof one);
  (void)w;
  if (thread_.joinable()) thread_.join();
  running_ = false;
  // The thread is gone: sink calls are safe here. Every buffer comes back
  // to the agent and is queued to the kernel again.
  if (sink_) sink_->RecoverAll();
  RetryHeld();
  close(stop_fd_);
  stop_fd_ = -1;
  FlushFoldedErrors(true);
  demux_->DetachPump();
  SetState("stopped", "");
}

void PumpCore::CountQueued(int delta, uint64_t now) {
  // mutex_ held by the caller
  uint32_t before = stats_.queued_in_kernel;
  stats_.queued_in_kernel = static_cast<uint32_t>(static_cast<int64_t>(before) + delta);
  if (before > 0 && stats_.queued_in_kernel == 0) {
    // Nothing queued: the kernel now drops data with no errno, flag or count
    // gap (kernel-facts.md). Measuring this time is how loss becomes visible.
    stats_.zero_queued_since_ns = now;
    stats_.zero_queued_episodes++;
  } else if (before == 0 && stats_.queued_in_kernel > 0 && stats_.zero_queued_since_ns != 0) {
    stats_.zero_queued_ns_total += now - stats_.zero_queued_since_ns;
    stats_.zero_queued_since_ns = 0;
  }
}

void PumpCore::Requeue(uint32_t index) {
  if (auto e = demux_->Queue(index)) {
    demux_->SetOwner(index, Owner::kAgent);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stats_.requeue_failures++;
    }
    Error(*e);
    if (std::find(held_.begin(), held_.end(), index) == held_.end()) held_.push_back(index);
    retry_after_ns_ = MonotonicNs() + kRetryNs;
    return;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  CountQueued(+1, MonotonicNs());
}

void PumpCore::RetryHeld() {
  if (held_.empty() || MonotonicNs() < retry_after_ns_) return;
  std::vector<uint32_t> again;
  again.swap(held_);
  for (uint32_t index : again) Requeue(index);
}

void PumpCore::Returned(uint32_t index) {
  uint64_t now = MonotonicNs();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.returned++;
    if (stats_.in_sink > 0) stats_.in_sink--;
    if (index < submitted_at_ns_.size() && submitted_at_ns_[index] != 0) {
      uint64_t held = now - submitted_at_ns_[index];
      stats_.hold_ns_total += held;
      stats_.hold_ns_max = std::max(stats_.hold_ns_max, held);
      // A dozen compares under the lock already held: no allocation, no
      // second lock on the hot path.
      size_t bucket = 0;
      while (bucket < kHoldBuckets - 1 && held > kHoldBoundsMs[bucket] * 1000000ull) bucket++;
      stats_.hold_histogram[bucket]++;
      submitted_at_ns_[index] = 0;
    }
  }
  demux_->SetOwner(index, Owner::kAgent);
  Requeue(index);
}

uint32_t PumpCore::DrainDemux() {
  uint32_t count = demux_->count();
  uint32_t dequeued = 0;
  // Bounded: at most one pass over the pool per wake-up, so sink events are
  // never starved by a fast stream.
  for (uint32_t n = 0; n < count; n++) {
    std::optional<Dequeued> d;
    if (auto e = demux_->Dequeue(&d)) {
      Error(*e);
      return dequeued;
    }
    if (!d) return dequeued;
    dequeued++;
    uint64_t now = MonotonicNs();
    PoolBuffer b;
    bool known = demux_->GetBuffer(d->index, &b);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      CountQueued(-1, now);
      stats_.buffers_dequeued++;
      stats_.bytes_dequeued += d->bytesused;
      stats_.last_dequeue_ns = now;
      for (int bit = 0; bit < 5; bit++)
        if (d->flags & (1u << bit)) stats_.flag_counts[bit]++;
      // Read in place from the mapping: the data path copies nothing.
      if (ts_check_ && known && b.map != nullptr)
        ts_.Feed(b.map, std::min<size_t>(d->bytesused, b.map_length));
    }
    if (!known) {
      SysError e(EINVAL, "ioctl", "DMX_DQBUF", demux_->path());
      e.Arg("index", d->index);
      e.detail = "the kernel returned a buffer index the pool does not have";
      Error(e);
      continue;
    }
    if (!sink_) {
      Requeue(d->index);
      continue;
    }
    SinkBuffer sb;
    sb.index = d->index;
    sb.bytesused = d->bytesused;
    sb.flags = d->flags;
    sb.sequence = d->count;
    sb.length = d->length;
    sb.dmabuf_fd = b.export_fd;
    sb.dmabuf_size = b.dmabuf_size;
    sb.dequeued_ns = now;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stats_.submitted++;
      // Counted before Submit: a sink may hand the buffer back from inside it.
      stats_.in_sink++;
      if (d->index < submitted_at_ns_.size()) submitted_at_ns_[d->index] = now;
    }
    demux_->SetOwner(d->index, OwnerForSink(sink_->Kind()));
    if (sink_->Submit(sb) == SubmitResult::kDeclined) {
      {
        std::lock_guard<std::mutex> lock(mutex_);
        stats_.declined++;
        if (stats_.in_sink > 0) stats_.in_sink--;
        if (d->index < submitted_at_ns_.size()) submitted_at_ns_[d->index] = 0;
      }
      demux_->SetOwner(d->index, Owner::kAgent);
      Requeue(d->index);
    }
  }
  return dequeued;
}

void PumpCore::Run() {
  pthread_setname_np(pthread_self(), "dmx-pump");
  Sys* sys = demux_->sys();
  int demux_fd = demux_->fd();
  std::vector<pollfd> fds;
  while (!stop_requested_.load()) {
    fds.clear();
    fds.push_back(pollfd{stop_fd_, POLLIN, 0});
    uint32_t queued;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queued = stats_.queued_in_kernel;
    }
    // Poll the demux only while something is queued there: otherwise there
    // is nothing it could complete.
    size_t demux_at = SIZE_MAX;
    uint64_t now = MonotonicNs();
    bool demux_quiet = now < demux_quiet_until_ns_;
    if (queued > 0 && !demux_quiet) {
      demux_at = fds.size();
      fds.push_back(pollfd{demux_fd, POLLIN | POLLPRI, 0});
    }
    size_t sink_at = fds.size();
    if (sink_) sink_->AddPollFds(&fds);
    int timeout = kIdleTickMs;
    if (demux_quiet) timeout = std::min(timeout, static_cast<int>((demux_quiet_until_ns_ - now) / 1000000) + 1);
    if (sink_) {
      int t = sink_->NextTimeoutMs();
      if (t >= 0 && t < timeout) timeout = t;
    }
    if (!held_.empty()) timeout = std::min(timeout, static_cast<int>(kRetryNs / 1000000));
    int n = sys->Poll(fds.data(), fds.size(), timeout);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stats_.polls++;
    }
    if (n < 0) {
      if (errno != EINTR) {
        Error(SysError(errno, "poll", "", demux_->path()));
        usleep(10000);
      }
      continue;
    }
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      ssize_t r = read(stop_fd_, &v, sizeof v);
      (void)r;
      if (stop_requested_.load()) break;
    }
    if (demux_at != SIZE_MAX && fds[demux_at].revents != 0) {
      if (fds[demux_at].revents & POLLNVAL) {
        Error(SysError(EBADF, "poll", "", demux_->path()));
        SetState("failed", "the demux fd is no longer valid");
        break;
      }
      if (DrainDemux() > 0) {
        spurious_wakeups_ = 0;
      } else if (++spurious_wakeups_ >= kSpuriousLimit) {
        // Readable yet nothing to dequeue: on 6.1 a vb2 stream left dead by
        // a rejected REQBUFS polls through the old ring buffer. Don't spin.
        spurious_wakeups_ = 0;
        demux_quiet_until_ns_ = MonotonicNs() + kQuietNs;
        if (!spin_reported_) {
          spin_reported_ = true;
          Note("demux-poll-spin",
               "poll says readable but DMX_DQBUF has nothing: the stream may be dead; close and reopen the node");
        }
      }
    }
    if (sink_) sink_->OnPoll(fds.data() + sink_at, fds.size() - sink_at);
    RetryHeld();
    FlushFoldedErrors(false);
  }
}

void PumpCore::Error(const SysError& error) {
  uint64_t now = MonotonicNs();
  std::string key = ErrorKey(error);
  bool post = false;
  uint64_t repeated = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.errors[key]++;
    Folded& f = folded_[key];
    f.last = error;
    if (f.last_post_ns == 0 || now - f.last_post_ns >= kFoldWindowNs) {
      post = true;
      repeated = f.suppressed;
      f.suppressed = 0;
      f.last_post_ns = now;
    } else {
      f.suppressed++;
    }
  }
  if (post) {
    PumpEvent ev;
    ev.type = "error";
    ev.error = error;
    ev.repeated = repeated;
    ev.at_ns = now;
    Post(std::move(ev));
  }
}

void PumpCore::FlushFoldedErrors(bool force) {
  uint64_t now = MonotonicNs();
  std::vector<PumpEvent> out;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [key, f] : folded_) {
      if (f.suppressed == 0) continue;
      if (!force && now - f.last_post_ns < kFoldWindowNs) continue;
      PumpEvent ev;
      ev.type = "error";
      ev.error = f.last;
      ev.repeated = f.suppressed;
      ev.at_ns = now;
      out.push_back(std::move(ev));
      f.suppressed = 0;
      f.last_post_ns = now;
    }
  }
  for (PumpEvent& ev : out) Post(std::move(ev));
}

void PumpCore::Note(const std::string& what, const std::string& detail) {
  PumpEvent ev;
  ev.type = "note";
  ev.what = what;
  ev.detail = detail;
  ev.at_ns = MonotonicNs();
  Post(std::move(ev));
}

void PumpCore::SetState(const std::string& state, const std::string& detail) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.state = state;
  }
  PumpEvent ev;
  ev.type = "state";
  ev.what = state;
  ev.detail = detail;
  ev.at_ns = MonotonicNs();
  Post(std::move(ev));
}

void PumpCore::Post(PumpEvent event) {
  bool wake = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (events_.size() >= event_limit_) {
      // Bounded: a stalled event loop costs old events, never the thread.
      events_.pop_front();
      stats_.events_dropped++;
    }
    events_.push_back(std::move(event));
    if (!wake_pending_ && wake_) {
      wake_pending_ = true;
      wake = true;
    }
  }
  if (wake) wake_();
}

std::vector<PumpEvent> PumpCore::TakeEvents() {
  std::lock_guard<std::mutex> lock(mutex_);
  wake_pending_ = false;
  std::vector<PumpEvent> out(std::make_move_iterator(events_.begin()), std::make_move_iterator(events_.end()));
  events_.clear();
  return out;
}

PumpStats PumpCore::Snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

TsChecker PumpCore::TsSnapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return ts_;
}

// ---------------------------------------------------------------- Pump (JS)

Napi::Function Pump::DefineClass(Napi::Env env) {
  return ObjectWrap<Pump>::DefineClass(env, "Pump",
                                       {
                                           InstanceMethod<&Pump::JS_start>("start"),
                                           InstanceMethod<&Pump::JS_stop>("stop"),
                                           InstanceMethod<&Pump::JS_stats>("stats"),
                                           InstanceMethod<&Pump::JS_ledger>("ledger"),
                                           InstanceMethod<&Pump::JS_close>("close"),
                                           InstanceMethod<&Pump::JS_ref>("ref"),
                                           InstanceMethod<&Pump::JS_unref>("unref"),
                                           InstanceAccessor<&Pump::JS_getRunning>("running"),
                                       });
}

// new Pump({ demux, sink?: Decoder | ConsumerSink | null, tsCheck = true,
//            eventLimit = 1024, onEvents?: (events) => void })
Pump::Pump(const Napi::CallbackInfo& info) : ObjectWrap<Pump>(info) {
  Napi::Env env = info.Env();
  Napi::Object o = ArgObject(env, info[0], "options");
  Demux* demux = Demux::FromValue(env, o.Get("demux"));
  if (demux == nullptr) ThrowTypeError(env, "options.demux must be a Demux");
  demux_ = demux->core();
  Napi::Value sink = o.Get("sink");
  if (!sink.IsUndefined() && !sink.IsNull()) {
    if (Decoder* d = Decoder::FromValue(env, sink)) sink_ = d->sink();
    else if (ConsumerSink* c = ConsumerSink::FromValue(env, sink)) sink_ = c->core();
    else ThrowTypeError(env, "options.sink must be a Decoder, a ConsumerSink or null");
  }
  bool ts_check = OptBool(env, o, "tsCheck", true);
  uint32_t limit = OptUint32(env, o, "eventLimit", 1024, 16, 1u << 20);
  Napi::Value cb = o.Get("onEvents");
  if (!cb.IsUndefined() && !cb.IsFunction()) ThrowTypeError(env, "options.onEvents must be a function");
  core_ = std::make_shared<PumpCore>(demux_, sink_, ts_check, limit);
  if (cb.IsFunction()) {
    tsfn_ = Napi::ThreadSafeFunction::New(env, cb.As<Napi::Function>(), "dmx-pump-events", 0, 1);
    tsfn_live_ = true;
    // Like a uv handle: a pump alone does not keep the process alive.
    tsfn_.Unref(env);
  }
  AddonData::Get(env)->Register(this);
  registered_ = true;
}

Pump::~Pump() {
  Shutdown();
  if (registered_) AddonData::Get(Env())->Unregister(this);
}

void Pump::Shutdown() {
  if (closed_) return;
  closed_ = true;
  if (core_) core_->Stop();
  if (tsfn_live_) {
    tsfn_.Release();
    tsfn_live_ = false;
  }
}

void Pump::CloseFromCleanup() {
  registered_ = false;
  Shutdown();
}

static Napi::Object EventToJs(Napi::Env env, const PumpEvent& ev) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("type", ev.type);
  if (!ev.what.empty()) o.Set(ev.type == "state" ? "state" : "what", ev.what);
  if (!ev.detail.empty()) o.Set("detail", ev.detail);
  if (ev.type == "error") {
    o.Set("error", SysErrorToObject(env, ev.error));
    o.Set("repeated", static_cast<double>(ev.repeated));
  }
  o.Set("atMs", static_cast<double>(ev.at_ns) / 1e6);
  return o;
}

// A batch delivered after a pump closed can reach its callback while the
// environment is torn down (the loop ended, the thread-safe function was
// unref'd), when no JS can run: every napi call fails then, and rethrowing
// the failure from the callback would terminate the process. A throwing
// onEvents, at any other time, becomes an uncaught exception as usual.
static void ThrowIfJsCanRun(Napi::Env env, const Napi::Error& error) noexcept {
  try {
    if (!error.IsEmpty()) napi_throw(env, error.Value());  // fails harmlessly at teardown
  } catch (...) {
    // Reading the error failed too: the environment is going away.
  }
}

Napi::Value Pump::JS_start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) ThrowSysError(env, SysError(EBADF, "pump", "", demux_->path()));
  std::shared_ptr<PumpCore> core = core_;
  PumpCore::EventSink wake;
  if (tsfn_live_) {
    Napi::ThreadSafeFunction tsfn = tsfn_;
    wake = [tsfn, core]() mutable {
      // NonBlockingCall on an unbounded queue with at most one call in
      // flight (wake_pending_): it never blocks the data path.
      tsfn.NonBlockingCall([core](Napi::Env env, Napi::Function cb) {
        try {
          std::vector<PumpEvent> events = core->TakeEvents();
          Napi::Array arr = Napi::Array::New(env, events.size());
          for (size_t i = 0; i < events.size(); i++) arr.Set(static_cast<uint32_t>(i), EventToJs(env, events[i]));
          if (cb) cb.Call({arr});
        } catch (const Napi::Error& error) {
          ThrowIfJsCanRun(env, error);
        }
      });
    };
  }
  if (auto e = core_->Start(std::move(wake))) ThrowSysError(env, *e);
  return env.Undefined();
}

Napi::Value Pump::JS_stop(const Napi::CallbackInfo& info) {
  core_->Stop();
  return info.Env().Undefined();
}

Napi::Value Pump::JS_stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  PumpStats s = core_->Snapshot();
  TsChecker ts = core_->TsSnapshot();
  uint64_t now = MonotonicNs();
  auto num = [&env](uint64_t v) { return Napi::Number::New(env, static_cast<double>(v)); };
  auto ms = [&env](uint64_t ns) { return Napi::Number::New(env, static_cast<double>(ns) / 1e6); };
  Napi::Object o = Napi::Object::New(env);
  o.Set("state", s.state);
  o.Set("sink", core_->sink_kind());
  o.Set("buffersDequeued", num(s.buffers_dequeued));
  o.Set("bytesDequeued", num(s.bytes_dequeued));
  Napi::Object flags = Napi::Object::New(env);
  for (int i = 0; i < 5; i++) flags.Set(kFlagNames[i], num(s.flag_counts[i]));
  o.Set("flags", flags);
  Napi::Object tso = Napi::Object::New(env);
  tso.Set("packets", num(ts.packets()));
  tso.Set("syncErrors", num(ts.sync_errors()));
  tso.Set("teiPackets", num(ts.tei_packets()));
  tso.Set("ccGaps", num(ts.cc_gaps()));
  Napi::Object by_pid = Napi::Object::New(env);
  if (ts.cc_gaps() > 0)
    for (uint32_t pid = 0; pid < TsChecker::kPids; pid++)
      if (ts.cc_gaps(static_cast<uint16_t>(pid)) > 0) by_pid.Set(pid, num(ts.cc_gaps(static_cast<uint16_t>(pid))));
  tso.Set("ccGapsByPid", by_pid);
  o.Set("ts", tso);
  uint64_t current_zero = s.zero_queued_since_ns ? now - s.zero_queued_since_ns : 0;
  Napi::Object zq = Napi::Object::New(env);
  zq.Set("totalMs", ms(s.zero_queued_ns_total + current_zero));
  zq.Set("currentMs", ms(current_zero));
  zq.Set("episodes", num(s.zero_queued_episodes));
  o.Set("zeroQueued", zq);
  o.Set("queuedInKernel", s.queued_in_kernel);
  o.Set("inSink", s.in_sink);
  Napi::Object sk = Napi::Object::New(env);
  sk.Set("submitted", num(s.submitted));
  sk.Set("declined", num(s.declined));
  sk.Set("returned", num(s.returned));
  sk.Set("holdMsTotal", ms(s.hold_ns_total));
  sk.Set("holdMsMax", ms(s.hold_ns_max));
  sk.Set("holdMsMean", Napi::Number::New(env, s.returned ? static_cast<double>(s.hold_ns_total) / 1e6 / s.returned : 0));
  Napi::Object histogram = Napi::Object::New(env);
  Napi::Array bounds = Napi::Array::New(env, kHoldBuckets - 1);
  Napi::Array counts = Napi::Array::New(env, kHoldBuckets);
  for (size_t i = 0; i < kHoldBuckets; i++) {
    if (i < kHoldBuckets - 1) bounds.Set(static_cast<uint32_t>(i), num(kHoldBoundsMs[i]));
    counts.Set(static_cast<uint32_t>(i), num(s.hold_histogram[i]));
  }
  histogram.Set("boundsMs", bounds);
  histogram.Set("counts", counts);
  sk.Set("holdHistogram", histogram);
  o.Set("sinkTime", sk);
  o.Set("requeueFailures", num(s.requeue_failures));
  Napi::Object errs = Napi::Object::New(env);
  for (const auto& [key, count] : s.errors) errs.Set(key, num(count));
  o.Set("errors", errs);
  o.Set("eventsDropped", num(s.events_dropped));
  o.Set("polls", num(s.polls));
  o.Set("lastDequeueAgoMs", s.last_dequeue_ns ? ms(now - s.last_dequeue_ns) : env.Null());
  o.Set("uptimeMs", s.started_ns ? ms(now - s.started_ns) : Napi::Number::New(env, 0));
  return o;
}

Napi::Value Pump::JS_ledger(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array out = Napi::Array::New(env);
  uint64_t now = MonotonicNs();
  for (const PoolBuffer& b : demux_->Snapshot()) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("index", b.index);
    o.Set("owner", OwnerName(b.owner));
    o.Set("exportFd", b.export_fd);
    o.Set("sinceMs", static_cast<double>(now - b.since_ns) / 1e6);
    out.Set(b.index, o);
  }
  return out;
}

Napi::Value Pump::JS_close(const Napi::CallbackInfo& info) {
  Shutdown();
  if (registered_) AddonData::Get(info.Env())->Unregister(this);
  registered_ = false;
  return info.Env().Undefined();
}

Napi::Value Pump::JS_ref(const Napi::CallbackInfo& info) {
  if (tsfn_live_) tsfn_.Ref(info.Env());
  return info.Env().Undefined();
}

Napi::Value Pump::JS_unref(const Napi::CallbackInfo& info) {
  if (tsfn_live_) tsfn_.Unref(info.Env());
  return info.Env().Undefined();
}

Napi::Value Pump::JS_getRunning(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), core_->running());
}

}  // namespace dmx
