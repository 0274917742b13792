#include "dvb_adapter.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "mul_div.h"
#include "stream_pacer.h"
#include "ts_packet.h"

namespace dmx {
namespace sim {

namespace {

constexpr size_t kMaxBatch = 1024;          // packets per lock hold
constexpr uint64_t kBatchNs = 2000000;      // aim for ~2 ms per batch

uint64_t Earliest(uint64_t a, uint64_t b) {
  if (!a) return b;
  if (!b) return a;
  return std::min(a, b);
}

}  // namespace

// ---------------------------------------------------------------------------
// Files

class FrontendFile : public SimFile {
 public:
  FrontendFile(std::shared_ptr<DvbAdapter> a, int fd, int flags,
               std::string path)
      : SimFile(a.get(), fd, flags, std::move(path)), a_(std::move(a)) {}

  int Ioctl(unsigned long cmd, void* arg) override {
    std::unique_lock<std::mutex> lock(a_->mu);
    if (a_->dead) return -ENODEV;  // fe->exit
    int r = a_->frontend_.Ioctl(lock, *a_, this, cmd, arg);
    a_->ChangedLocked();
    return r;
  }
  void Release() override {
    std::lock_guard<std::mutex> lock(a_->mu);
    a_->frontend_.Release(open_flags());
    a_->ChangedLocked();
  }
  short PollMaskLocked(short /*events*/) override {
    if (a_->dead) return POLLERR;
    return a_->frontend_.Poll();
  }

 private:
  std::shared_ptr<DvbAdapter> a_;
};

class DemuxFile : public SimFile {
 public:
  DemuxFile(std::shared_ptr<DvbAdapter> a, DmxdevFilter* f, int fd, int flags,
            std::string path)
      : SimFile(a.get(), fd, flags, std::move(path)),
        a_(std::move(a)),
        f_(f) {}

  int Ioctl(unsigned long cmd, void* arg) override {
    std::unique_lock<std::mutex> lock(a_->mu);
    a_->WaitOutHangLocked(lock);
    // dmxdev itself only checks dmxdev->exit on open and poll; the sim
    // makes a removed adapter fail every call (see kernel notes).
    if (a_->dead) return -ENODEV;
    int r = a_->dmxdev_.DemuxIoctl(lock, this, f_, cmd, arg);
    a_->ChangedLocked();
    return r;
  }
  ssize_t Read(void* buf, size_t count) override {
    std::unique_lock<std::mutex> lock(a_->mu);
    if (a_->dead) return -ENODEV;
    ssize_t r = a_->dmxdev_.DemuxRead(lock, this, f_,
                                      static_cast<uint8_t*>(buf), count);
    a_->ChangedLocked();
    return r;
  }
  int Mmap(size_t length, int prot, int flags, off_t offset,
           void** out) override {
    std::unique_lock<std::mutex> lock(a_->mu);
    if (a_->dead) return -ENODEV;
    return a_->dmxdev_.DemuxMmap(lock, this, f_, length, prot, flags, offset,
                                 out);
  }
  void Release() override {
    std::unique_lock<std::mutex> lock(a_->mu);
    a_->dmxdev_.DemuxRelease(lock, f_);
    f_ = nullptr;
    a_->ChangedLocked();
  }
  short PollMaskLocked(short events) override {
    if (a_->dead) return POLLERR;  // dvb_demux_poll: dmxdev->exit
    if (!f_) return POLLNVAL;
    return a_->dmxdev_.DemuxPoll(f_, events);
  }

 private:
  std::shared_ptr<DvbAdapter> a_;
  DmxdevFilter* f_;  // freed by Release()
};

class DvrFile : public SimFile {
 public:
  DvrFile(std::shared_ptr<DvbAdapter> a, int fd, int flags, std::string path)
      : SimFile(a.get(), fd, flags, std::move(path)), a_(std::move(a)) {}

  int Ioctl(unsigned long cmd, void* arg) override {
    std::unique_lock<std::mutex> lock(a_->mu);
    a_->WaitOutHangLocked(lock);
    if (a_->dead) return -ENODEV;
    int r = a_->dmxdev_.DvrIoctl(lock, this, cmd, arg);
    a_->ChangedLocked();
    return r;
  }
  ssize_t Read(void* buf, size_t count) override {
    std::unique_lock<std::mutex> lock(a_->mu);
    if (a_->dead) return -ENODEV;  // dvb_dvr_read: dmxdev->exit
    ssize_t r =
        a_->dmxdev_.DvrRead(lock, this, static_cast<uint8_t*>(buf), count);
    a_->ChangedLocked();
    return r;
  }
  int Mmap(size_t length, int prot, int flags, off_t offset,
           void** out) override {
    std::unique_lock<std::mutex> lock(a_->mu);
    if (a_->dead) return -ENODEV;  // dvb_dvr_mmap: dmxdev->exit
    return a_->dmxdev_.DvrMmap(lock, this, length, prot, flags, offset, out);
  }
  void Release() override {
    std::unique_lock<std::mutex> lock(a_->mu);
    a_->dmxdev_.DvrRelease(lock, open_flags());
    a_->ChangedLocked();
  }
  short PollMaskLocked(short events) override {
    if (a_->dead) return POLLERR;
    return a_->dmxdev_.DvrPoll(open_flags(), events);
  }

 private:
  std::shared_ptr<DvbAdapter> a_;
};

// ---------------------------------------------------------------------------
// Adapter

DvbAdapter::DvbAdapter(const SimAdapterConfig& config,
                       std::unique_ptr<TsSource> source)
    : config_(config),
      source_(std::move(source)),
      frontend_(config.tune_delay_ms),
      dmxdev_(this, config.mmap, config.exportable, config.tscheck,
              NodePath(config.adapter, Node::kDvr)) {
  rate_bps_ = source_->RateBps();
  frontend_.SetRate(rate_bps_, MonotonicNs());
}

DvbAdapter::~DvbAdapter() { Kill(); }

std::string DvbAdapter::NodePath(int adapter, Node node) {
  std::string base = "/dev/dvb/adapter" + std::to_string(adapter) + "/";
  switch (node) {
    case Node::kFrontend: return base + "frontend0";
    case Node::kDemux: return base + "demux0";
    default: return base + "dvr0";
  }
}

int DvbAdapter::Open(Node node, int fd, int flags,
                     std::shared_ptr<SimFile>* out) {
  std::unique_lock<std::mutex> lock(mu);
  if (dead) return -ENODEV;
  std::string path = NodePath(config_.adapter, node);
  int r = 0;
  switch (node) {
    case Node::kFrontend:
      r = frontend_.Open(flags);
      if (r == 0)
        *out = std::make_shared<FrontendFile>(shared_from_this(), fd, flags,
                                              path);
      break;
    case Node::kDemux: {
      DmxdevFilter* f = nullptr;
      r = dmxdev_.DemuxOpen(lock, flags, path, &f);
      if (r == 0)
        *out = std::make_shared<DemuxFile>(shared_from_this(), f, fd, flags,
                                           path);
      break;
    }
    case Node::kDvr:
      r = dmxdev_.DvrOpen(lock, flags);
      if (r == 0)
        *out = std::make_shared<DvrFile>(shared_from_this(), fd, flags, path);
      break;
  }
  if (r == 0 && !producer_.joinable() && !stop_)
    producer_ = std::thread(&DvbAdapter::ProducerMain, this);
  ChangedLocked();
  return r;
}

void DvbAdapter::Kill() {
  {
    std::lock_guard<std::mutex> lock(mu);
    dead = true;
    stop_ = true;
    ChangedLocked();
  }
  if (producer_.joinable() && producer_.get_id() != std::this_thread::get_id())
    producer_.join();
}

void DvbAdapter::InjectFault(const SimFault& fault) {
  if (fault.kind == SimFault::Kind::kAllocFail) {
    dmxdev_.FailAllocations(fault.count);
    return;
  }
  if (fault.kind == SimFault::Kind::kHang) {
    std::lock_guard<std::mutex> lock(mu);
    hang_until_ns_ = std::max(hang_until_ns_,
                              MonotonicNs() + uint64_t{fault.duration_ms} * 1000000);
    return;
  }
  uint16_t pid;
  {
    std::lock_guard<std::mutex> lock(source_mu_);
    pid = source_->DefaultFaultPid();
  }
  faults_.Inject(fault, pid, MonotonicNs());
  std::lock_guard<std::mutex> lock(mu);
  ChangedLocked();  // the producer re-plans around stall/burst windows
}

void DvbAdapter::WaitOutHangLocked(std::unique_lock<std::mutex>& lock) {
  // Short sleeps rather than a wakeup: nothing but the clock ends a hang, and
  // the producer keeps filling buffers meanwhile (it needs mu too).
  while (!dead && !stop_ && MonotonicNs() < hang_until_ns_) {
    lock.unlock();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    lock.lock();
  }
}

void DvbAdapter::SetBitrate(uint64_t bits_per_second) {
  {
    std::lock_guard<std::mutex> lock(source_mu_);
    source_->SetBitrate(bits_per_second);
  }
  std::lock_guard<std::mutex> lock(mu);
  ChangedLocked();
}

SimAdapterStats DvbAdapter::Stats() {
  std::lock_guard<std::mutex> lock(mu);
  SimAdapterStats s;
  s.adapter = config_.adapter;
  s.packets_produced = packets_produced_;
  s.bytes_produced = packets_produced_ * kTsPacketSize;
  dmxdev_.AppendStats(&s);
  return s;
}

void DvbAdapter::WaitUntil(std::unique_lock<std::mutex>& lock,
                           uint64_t deadline_ns) {
  if (!deadline_ns) {
    cv.wait(lock);
    return;
  }
  // libstdc++'s steady_clock is CLOCK_MONOTONIC.
  cv.wait_until(lock, std::chrono::steady_clock::time_point(
                          std::chrono::nanoseconds(deadline_ns)));
}

void DvbAdapter::ProducerMain() {
  pthread_setname_np(pthread_self(), "dmx-sim-ts");
  StreamPacer pacer;
  bool producing = false;
  bool at_rate_boundary = false;
  std::vector<uint8_t> batch;
  std::unique_lock<std::mutex> lock(mu);
  while (!stop_) {
    uint64_t now = MonotonicNs();
    bool changed = false;
    uint64_t wake = frontend_.Advance(now, &changed);
    wake = Earliest(wake, dmxdev_.ProcessTimeouts(now));
    if (changed) ChangedLocked();
    if (!dmxdev_.AnyFeedStarted()) {
      producing = false;  // no catching up on what idle time would owe
      WaitUntil(lock, wake);
      continue;
    }
    lock.unlock();

    wake = Earliest(wake, faults_.NextWindowEnd(now));
    double factor = faults_.RateFactorAt(now);
    size_t n = 0;
    uint64_t rate = 0;
    batch.clear();
    {
      std::lock_guard<std::mutex> source_lock(source_mu_);
      rate = static_cast<uint64_t>(static_cast<double>(source_->RateBps()) *
                                   factor);
      if (rate == 0) rate = 1;
      if (!producing) {
        pacer.Start(now, rate);
        producing = true;
      } else if (rate != pacer.rate()) {
        if (at_rate_boundary)
          pacer.SetRateAtSent(rate);
        else
          pacer.SetRateNow(now, rate);
      }
      uint64_t due = pacer.DueAt(now) - pacer.sent();
      size_t until_change = source_->PacketsAtCurrentRate();
      n = static_cast<size_t>(std::min<uint64_t>(due, kMaxBatch));
      n = std::min(n, until_change);
      at_rate_boundary = n > 0 && n == until_change;
      if (n > 0) {
        source_->Generate(n, &batch);
        pacer.AddSent(n);
      } else {
        uint64_t target = std::max<uint64_t>(
            1, MulDivFloor(rate, kBatchNs, 1000000000ull) /
                   StreamPacer::kBitsPerPacket);
        wake = Earliest(wake, pacer.TimeOfCount(pacer.sent() + target));
      }
    }
    bool stalled = n > 0 && faults_.StalledAt(now);
    size_t tei = (n > 0 && !stalled) ? faults_.Apply(batch.data(), n) : 0;

    lock.lock();
    if (stop_) break;
    if (rate != rate_bps_) {
      rate_bps_ = rate;
      frontend_.SetRate(rate, now);
    }
    if (n == 0) {
      WaitUntil(lock, wake);
      continue;
    }
    if (stalled) continue;  // lost before the demux, like a signal drop
    packets_produced_ += n;
    if (!config_.require_tune || frontend_.Locked()) {
      dmxdev_.FeedPackets(batch.data(), n);
      frontend_.CountErrorBlocks(tei);
      ChangedLocked();
    }
  }
}

}  // namespace sim
}  // namespace dmx
