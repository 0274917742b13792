#include "sim_file.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

namespace dmx {
namespace sim {

void PollHub::Add(PollWaiter* waiter, SimFile* file, short events) {
  regs_.push_back({waiter, file, events});
}

void PollHub::Remove(PollWaiter* waiter) {
  regs_.erase(std::remove_if(regs_.begin(), regs_.end(),
                             [waiter](const Registration& r) {
                               return r.waiter == waiter;
                             }),
              regs_.end());
}

void PollHub::Notify() {
  for (const Registration& r : regs_) {
    if (r.file->PollMaskLocked(r.events) == 0) continue;
    uint64_t one = 1;
    // A non-blocking eventfd; a full counter (never in practice) already
    // means "wake up".
    ssize_t n = write(r.waiter->efd, &one, sizeof(one));
    (void)n;
  }
}

bool SimFile::NonblockingNow() const {
  int fl = fcntl(fd_, F_GETFL);
  if (fl < 0) return (flags_ & O_NONBLOCK) != 0;
  return (fl & O_NONBLOCK) != 0;
}

void SimFile::MarkClosed() {
  std::lock_guard<std::mutex> lock(instance_->mu);
  closed_ = true;
  instance_->cv.notify_all();
}

uint64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull +
         static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace sim
}  // namespace dmx
