// The system-call boundary of the addon.
//
// Every object that talks to a device (Demux, Frontend, Decoder, Pump) does so
// through a Sys. KernelSys passes each call straight to libc; SimSys
// (native/src/sim/) implements the same calls for simulated device nodes with
// the kernel's semantics, so the same object code, the same pump and the same
// conformance suite run on both. Calls follow libc conventions exactly:
// -1 (or MAP_FAILED) with errno set on failure.
//
// Thread safety: every method may be called from any thread at any time
// (the pump thread and the JS thread share a Sys).
#pragma once

#include <poll.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include <memory>
#include <string>
#include <vector>

// A 32-bit build must use a 64-bit time_t: struct v4l2_buffer embeds a
// timeval and v4l2_event a timespec, so their size, and with it the
// VIDIOC_QBUF/DQBUF/QUERYBUF/DQEVENT ioctl numbers, follow time_t. The 32-bit
// layouts only work on kernels with CONFIG_COMPAT_32BIT_TIME, which Y2038-safe
// configurations leave out. native/common.gypi adds the flags for node-gyp
// builds; Yocto adds them to $CC (time64.inc). See native/cross/README.md.
static_assert(sizeof(time_t) == 8,
              "32-bit target: build with -D_TIME_BITS=64 -D_FILE_OFFSET_BITS=64 "
              "(glibc >= 2.34), see native/cross/README.md");

namespace dmx {

class Sys {
 public:
  virtual ~Sys() = default;

  // Short name for errors and logs: "kernel" or "sim".
  virtual const char* Name() const = 0;

  virtual int Open(const char* path, int flags) = 0;
  virtual int Close(int fd) = 0;
  virtual int Ioctl(int fd, unsigned long request, void* arg) = 0;
  virtual void* Mmap(size_t length, int prot, int flags, int fd,
                     off_t offset) = 0;
  virtual int Munmap(void* addr, size_t length) = 0;
  virtual int Poll(struct pollfd* fds, nfds_t nfds, int timeout_ms) = 0;
  virtual ssize_t Read(int fd, void* buf, size_t count) = 0;

  // Directory listing and small-file reads, so V4L2 devices can be found by
  // name under /sys/class/video4linux on either backend.
  // ListDir returns the entry names (no "." or ".."), or fails with errno.
  virtual int ListDir(const std::string& path,
                      std::vector<std::string>* names) = 0;
  // Reads a whole small text file (sysfs attribute); trailing newline kept.
  virtual int ReadTextFile(const std::string& path, std::string* out) = 0;
};

// The process-wide kernel backend.
std::shared_ptr<Sys> KernelSysInstance();

}  // namespace dmx
