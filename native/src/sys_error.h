// A failed system call, captured where it happened (any thread) and turned
// into a JS DmxError later on the JS thread (errors.cc).
#pragma once

#include <stdint.h>

#include <string>
#include <utility>
#include <vector>

namespace dmx {

struct SysError {
  int err = 0;             // positive errno
  std::string syscall;     // "ioctl", "open", "mmap", "sendmsg", ...
  std::string request;     // ioctl name ("DMX_EXPBUF"), empty for plain syscalls
  std::string path;        // device node or socket path, may be empty
  // The arguments passed, as name/value pairs, for diagnosis
  // (index, flags, bytesused, dmabuf size, sizeimage, ...).
  std::vector<std::pair<std::string, int64_t>> args;
  std::string detail;      // optional human hint added by the caller
  // A stable cause code where the native layer knows more than the errno
  // (its ledger, its pool): 'index-out-of-range', 'buffer-already-queued',
  // ... (agent/diagnosis/types.ts CauseCode). Empty when it knows nothing more.
  std::string reason;
  // The native layer refused the call before the kernel saw it.
  bool prevented = false;

  SysError() = default;
  SysError(int e, std::string sc, std::string req, std::string p)
      : err(e), syscall(std::move(sc)), request(std::move(req)),
        path(std::move(p)) {}
  SysError& Arg(const char* name, int64_t value) {
    args.emplace_back(name, value);
    return *this;
  }
  SysError& Reason(const char* why) {
    reason = why;
    return *this;
  }
  SysError& Prevented() {
    prevented = true;
    return *this;
  }
};

// "EINVAL" for 22; "E<n>" for numbers without a name.
const char* ErrnoName(int err);

}  // namespace dmx
