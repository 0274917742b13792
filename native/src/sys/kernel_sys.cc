// KernelSys: every Sys call straight to libc. open/close/ioctl retry EINTR
// (a signal must not turn into a spurious device error); poll and read
// report it, so that their callers can re-check their own state.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "sys.h"

namespace dmx {

namespace {

class KernelSys : public Sys {
 public:
  const char* Name() const override { return "kernel"; }

  int Open(const char* path, int flags) override {
    int fd;
    do {
      fd = open(path, flags);
    } while (fd < 0 && errno == EINTR);
    return fd;
  }

  int Close(int fd) override {
    // Linux releases the fd even when close() reports EINTR; retrying
    // could close a number another thread just got.
    return close(fd);
  }

  int Ioctl(int fd, unsigned long request, void* arg) override {
    int r;
    do {
      r = ioctl(fd, request, arg);
    } while (r < 0 && errno == EINTR);
    return r;
  }

  void* Mmap(size_t length, int prot, int flags, int fd,
             off_t offset) override {
    return mmap(nullptr, length, prot, flags, fd, offset);
  }

  int Munmap(void* addr, size_t length) override {
    return munmap(addr, length);
  }

  int Poll(struct pollfd* fds, nfds_t nfds, int timeout_ms) override {
    return poll(fds, nfds, timeout_ms);
  }

  ssize_t Read(int fd, void* buf, size_t count) override {
    return read(fd, buf, count);
  }

  int ListDir(const std::string& path,
              std::vector<std::string>* names) override {
    names->clear();
    DIR* dir = opendir(path.c_str());
    if (!dir) return -1;
    errno = 0;
    while (struct dirent* e = readdir(dir)) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      names->emplace_back(e->d_name);
    }
    int err = errno;
    closedir(dir);
    if (err != 0) {
      errno = err;
      return -1;
    }
    return 0;
  }

  int ReadTextFile(const std::string& path, std::string* out) override {
    out->clear();
    int fd = Open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[4096];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
      }
      if (n == 0) break;
      out->append(buf, static_cast<size_t>(n));
    }
    close(fd);
    return 0;
  }
};

}  // namespace

std::shared_ptr<Sys> KernelSysInstance() {
  static const std::shared_ptr<Sys> instance = std::make_shared<KernelSys>();
  return instance;
}

}  // namespace dmx
