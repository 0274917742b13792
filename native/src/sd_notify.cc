#include "sd_notify.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>

#include "errors.h"

namespace dmx {

Napi::Value JS_sdNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string state = ArgString(env, info[0], "state");
  if (state.empty() || state.size() > 4096) ThrowRangeError(env, "state must be 1 to 4096 bytes");
  std::string path;
  if (!info[1].IsUndefined() && !info[1].IsNull()) {
    path = ArgString(env, info[1], "socketPath");
  } else {
    const char* p = getenv("NOTIFY_SOCKET");
    if (p == nullptr || *p == '\0') return Napi::Boolean::New(env, false);
    path = p;
  }
  sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path || (path[0] != '/' && path[0] != '@'))
    ThrowRangeError(env, "the notify socket must be an absolute path or '@abstract', shorter than 108 bytes");
  memcpy(addr.sun_path, path.data(), path.size());
  if (path[0] == '@') addr.sun_path[0] = '\0';  // abstract namespace
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) ThrowSysError(env, SysError(errno, "socket", "", path));
  ssize_t n = sendto(fd, state.data(), state.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&addr), len);
  int err = errno;
  close(fd);
  if (n < 0) ThrowSysError(env, SysError(err, "sendto", "", path));
  return Napi::Boolean::New(env, true);
}

}  // namespace dmx
