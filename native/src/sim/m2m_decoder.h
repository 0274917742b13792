// A V4L2 memory-to-memory device that behaves like vim2m
// (drivers/media/test-drivers/vim2m.c on v4l2-mem2mem.c): each open is a
// context with an OUTPUT and a CAPTURE queue; a job runs when both queues
// stream and each has a buffer ready, takes the configured processing time,
// then returns the OUTPUT buffer and completes the CAPTURE buffer (payload =
// its sizeimage, sequence numbers, timestamp copied). Jobs of all contexts
// run one at a time on the device's worker thread, as on one m2m_dev.
//
// Extension for the agent's tests: configured compressed OUTPUT formats
// (H.264...) with a fixed sizeimage; their bytes are copied to CAPTURE as
// far as they fit.
#pragma once

#include <stdint.h>

#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "sim_file.h"
#include "sim_sys.h"

namespace dmx {
namespace sim {

class M2mContext;

class M2mDecoder : public SimInstance,
                   public std::enable_shared_from_this<M2mDecoder> {
 public:
  M2mDecoder(const SimDecoderConfig& config, int index);
  ~M2mDecoder() override;
  M2mDecoder(const M2mDecoder&) = delete;
  M2mDecoder& operator=(const M2mDecoder&) = delete;

  static std::string NodePath(int index);
  const SimDecoderConfig& config() const { return config_; }

  int Open(int fd, int flags, std::shared_ptr<SimFile>* out);
  // Removal or SimSys::Close: every later call fails ENODEV, poll reports
  // POLLERR|POLLHUP|POLLPRI, jobs stop. Idempotent.
  void Kill();
  SimDecoderStats Stats();

 private:
  friend class M2mContext;

  // v4l2_m2m_try_schedule(): queue the context if it is ready, then run
  // the next job if the device is idle. mu held.
  void TrySchedule(M2mContext* ctx);
  void TryRun();
  // device_run(): processes one buffer pair now; it completes later.
  void StartPair(M2mContext* ctx);
  // device_work(): completes the running pair.
  void FinishPair();
  // Takes `ctx` off the job queue; waits for its running job to finish
  // unless the device is dead (v4l2_m2m_cancel_job()).
  void CancelJob(std::unique_lock<std::mutex>& lock, M2mContext* ctx);
  void WorkerMain();

  const SimDecoderConfig config_;
  const int index_;
  std::deque<M2mContext*> job_queue_;
  M2mContext* running_ = nullptr;
  uint64_t running_done_at_ns_ = 0;
  std::thread worker_;
  bool stop_ = false;
  uint64_t output_imported_ = 0;
  uint64_t import_rejected_ = 0;
  uint64_t jobs_done_ = 0;
};

}  // namespace sim
}  // namespace dmx
