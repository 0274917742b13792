// One simulated DVB adapter: /dev/dvb/adapterN/{frontend0,demux0,dvr0},
// the demux behind them and the producer thread that plays its transport
// stream into the demux in real time.
//
// The producer runs only while a feed is started (vidtv runs its mux only
// then) and delivers only while the frontend reports lock (unless the
// adapter is configured not to require a tune). It paces packets from
// CLOCK_MONOTONIC, generates each batch without the adapter lock and
// takes the lock only to run the batch through the demux.
#pragma once

#include <stdint.h>

#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dmxdev.h"
#include "dvb_frontend.h"
#include "sim_file.h"
#include "sim_sys.h"
#include "ts_faults.h"
#include "ts_source.h"

namespace dmx {
namespace sim {

class DvbAdapter : public SimInstance,
                   public std::enable_shared_from_this<DvbAdapter> {
 public:
  enum class Node { kFrontend, kDemux, kDvr };

  DvbAdapter(const SimAdapterConfig& config, std::unique_ptr<TsSource> source);
  ~DvbAdapter() override;
  DvbAdapter(const DvbAdapter&) = delete;
  DvbAdapter& operator=(const DvbAdapter&) = delete;

  static std::string NodePath(int adapter, Node node);

  // The driver's open of `node`; `fd` is the eventfd that becomes the
  // file's number. 0 or a negative errno.
  int Open(Node node, int fd, int flags, std::shared_ptr<SimFile>* out);
  // Removal or SimSys::Close: every later call fails ENODEV, blocked calls
  // wake, the producer stops. Idempotent.
  void Kill();

  void InjectFault(const SimFault& fault);
  void SetBitrate(uint64_t bits_per_second);
  SimAdapterStats Stats();

 private:
  friend class FrontendFile;
  friend class DemuxFile;
  friend class DvrFile;

  void ProducerMain();
  // Waits on cv until `deadline_ns` (0: until notified).
  void WaitUntil(std::unique_lock<std::mutex>& lock, uint64_t deadline_ns);
  // Blocks a demux or DVR call while a hang fault lasts (mu held on entry and
  // return, released while waiting); ends early when the adapter goes away.
  void WaitOutHangLocked(std::unique_lock<std::mutex>& lock);

  const SimAdapterConfig config_;
  std::mutex source_mu_;  // source_, taken without mu
  std::unique_ptr<TsSource> source_;
  FaultInjector faults_;
  DvbFrontend frontend_;
  Dmxdev dmxdev_;
  std::thread producer_;
  bool stop_ = false;  // guarded by mu
  uint64_t hang_until_ns_ = 0;  // guarded by mu: a hang fault's end
  uint64_t packets_produced_ = 0;
  uint64_t rate_bps_ = 0;  // the rate the producer paces at now
};

}  // namespace sim
}  // namespace dmx
