// The pieces every simulated device shares: the device instance (its lock,
// its condition variable and the waiters of in-flight Poll calls), one open
// file, and a kernel mutex that can be held across a sleep.
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <sys/types.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

namespace dmx {
namespace sim {

class SimFile;

// One in-flight SimSys::Poll call: the device writes `efd` when a file the
// call waits for becomes ready.
struct PollWaiter {
  int efd = -1;
};

// The waiters registered on one device instance. Instance lock held.
class PollHub {
 public:
  void Add(PollWaiter* waiter, SimFile* file, short events);
  void Remove(PollWaiter* waiter);
  // Wakes every waiter one of whose files now has a non-zero poll mask.
  void Notify();

 private:
  struct Registration {
    PollWaiter* waiter;
    SimFile* file;
    short events;
  };
  std::vector<Registration> regs_;
};

// A device instance (an adapter, a decoder). Removal or SimSys::Close marks
// it dead: every later call on its files fails ENODEV.
class SimInstance {
 public:
  virtual ~SimInstance() = default;

  std::mutex mu;
  std::condition_variable cv;  // any state change; blocking calls wait here
  PollHub hub;
  bool dead = false;  // guarded by mu

  // After a state change: wakes blocked calls and Poll waiters. mu held.
  void ChangedLocked() {
    cv.notify_all();
    hub.Notify();
  }
};

// One open file of a simulated node. `fd` is the real eventfd the caller
// holds; it is closed by SimSys after Release().
class SimFile {
 public:
  SimFile(SimInstance* instance, int fd, int flags, std::string path)
      : instance_(instance), fd_(fd), flags_(flags), path_(std::move(path)) {}
  virtual ~SimFile() = default;

  SimFile(const SimFile&) = delete;
  SimFile& operator=(const SimFile&) = delete;

  int fd() const { return fd_; }
  int open_flags() const { return flags_; }
  int accmode() const { return flags_ & O_ACCMODE; }
  const std::string& path() const { return path_; }
  SimInstance& instance() const { return *instance_; }
  // O_NONBLOCK as the fd has it now: fcntl(F_SETFL) after open counts, as
  // for file->f_flags in the kernel.
  bool NonblockingNow() const;

  // Each returns >= 0 or a negative errno. Called with no sim lock held.
  virtual int Ioctl(unsigned long request, void* arg) = 0;
  // The driver's mmap, after SimSys checked what do_mmap checks.
  virtual int Mmap(size_t /*length*/, int /*prot*/, int /*flags*/,
                   off_t /*offset*/, void** /*out*/) {
    return -ENODEV;  // do_mmap: no f_op->mmap
  }
  // No f_op->read: read(2) says EINVAL.
  virtual ssize_t Read(void* /*buf*/, size_t /*count*/) { return -EINVAL; }
  // The driver's release, once, after the fd left SimSys's table.
  virtual void Release() = 0;
  // The driver's poll for `events`. instance().mu held.
  virtual short PollMaskLocked(short events) = 0;

  // Set when close() races a blocking call on the same fd: the kernel would
  // keep the file until the call returns; the sim wakes it with EBADF so
  // that nothing hangs. instance().mu held.
  bool closed_locked() const { return closed_; }
  void MarkClosed();

 private:
  SimInstance* instance_;
  const int fd_;
  const int flags_;
  const std::string path_;
  bool closed_ = false;
};

// Waits on instance.cv until pred() holds. Returns 0, -ENODEV when the
// instance dies or -EBADF when `file` (may be null) is closed meanwhile.
template <typename Pred>
int WaitLocked(std::unique_lock<std::mutex>& lock, SimInstance& instance,
               const SimFile* file, Pred pred) {
  for (;;) {
    if (instance.dead) return -ENODEV;
    if (file && file->closed_locked()) return -EBADF;
    if (pred()) return 0;
    instance.cv.wait(lock);
  }
}

// A kernel mutex that its holder keeps across a sleep (dmxdev->mutex, held
// by a blocking DMX_DQBUF). The flag lives under instance.mu.
class ModelMutex {
 public:
  // mutex_lock_interruptible: gives up when the device dies or the caller's
  // fd is closed (the sim's stand-in for a signal).
  int Lock(std::unique_lock<std::mutex>& lock, SimInstance& instance,
           const SimFile* file) {
    int r = WaitLocked(lock, instance, file, [this] { return !held_; });
    if (r == 0) held_ = true;
    return r;
  }
  // mutex_lock (release paths): waits whatever happens to the device.
  void LockUninterruptible(std::unique_lock<std::mutex>& lock,
                           SimInstance& instance) {
    instance.cv.wait(lock, [this] { return !held_; });
    held_ = true;
  }
  void Unlock(SimInstance& instance) {
    held_ = false;
    instance.cv.notify_all();
  }

 private:
  bool held_ = false;
};

// Holds a ModelMutex for a scope. instance.mu must be held at construction
// and destruction.
class ModelMutexGuard {
 public:
  ModelMutexGuard(ModelMutex& m, SimInstance& i) : m_(&m), i_(&i) {}
  ~ModelMutexGuard() { m_->Unlock(*i_); }
  ModelMutexGuard(const ModelMutexGuard&) = delete;
  ModelMutexGuard& operator=(const ModelMutexGuard&) = delete;

 private:
  ModelMutex* m_;
  SimInstance* i_;
};

// The kernel's ENOTSUPP (524), which the frontend core returns for ioctls
// it does not know; not in the userspace headers.
constexpr int kENOTSUPP = 524;

uint64_t MonotonicNs();

}  // namespace sim
}  // namespace dmx
