#include "memfd_buffer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace dmx {
namespace sim {

size_t PageSize() {
  static const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return page;
}

MemfdBuffer& MemfdBuffer::operator=(MemfdBuffer&& other) noexcept {
  if (this != &other) {
    Reset();
    fd_ = other.fd_;
    data_ = other.data_;
    size_ = other.size_;
    other.fd_ = -1;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

int MemfdBuffer::Allocate(size_t length) {
  Reset();
  size_t size = PageAlign(length);
  if (size < length || size == 0) return -ENOMEM;  // wrapped, as vb2 checks
  int fd = memfd_create("dmx-sim-vb2", MFD_CLOEXEC);
  if (fd < 0) return -ENOMEM;
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    close(fd);
    return -ENOMEM;
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    close(fd);
    return -ENOMEM;
  }
  fd_ = fd;
  data_ = static_cast<uint8_t*>(p);
  size_ = size;
  return 0;
}

void MemfdBuffer::Reset() {
  if (data_) munmap(data_, size_);
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  data_ = nullptr;
  size_ = 0;
}

int MemfdBuffer::MapForClient(size_t length, int prot, int flags,
                              void** out) const {
  void* p = mmap(nullptr, length, prot, flags, fd_, 0);
  if (p == MAP_FAILED) return -errno;
  *out = p;
  return 0;
}

int MemfdBuffer::Export(int flags) const {
  int accmode = flags & O_ACCMODE;
  if (accmode == O_ACCMODE) accmode = O_RDWR;
  int cloexec = flags & O_CLOEXEC;
  // Reopening through /proc gives a new open file with its own access mode
  // and offset, as a fresh dma_buf file would be.
  char path[64];
  snprintf(path, sizeof(path), "/proc/self/fd/%d", fd_);
  int fd;
  do {
    fd = open(path, accmode | cloexec);
  } while (fd < 0 && errno == EINTR);
  if (fd >= 0) return fd;
  if (errno == EMFILE || errno == ENFILE) return -errno;
  // No /proc: share the sim's open file instead.
  fd = fcntl(fd_, cloexec ? F_DUPFD_CLOEXEC : F_DUPFD, 0);
  return fd >= 0 ? fd : -errno;
}

int InspectDmabuf(int fd, DmabufInfo* out) {
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) return -EINVAL;
  uint64_t size;
  if (S_ISREG(st.st_mode)) {
    size = static_cast<uint64_t>(st.st_size);
  } else if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode) ||
             S_ISSOCK(st.st_mode) || S_ISDIR(st.st_mode)) {
    return -EINVAL;
  } else {
    // Real dmabufs are anonymous files that report their size this way.
    off_t end = lseek(fd, 0, SEEK_END);
    if (end <= 0) return -EINVAL;
    size = static_cast<uint64_t>(end);
  }
  if (size == 0) return -EINVAL;
  out->dev = st.st_dev;
  out->ino = st.st_ino;
  out->size = size;
  return 0;
}

DmabufMapping& DmabufMapping::operator=(DmabufMapping&& o) noexcept {
  if (this != &o) {
    Reset();
    addr_ = o.addr_;
    size_ = o.size_;
    writable_ = o.writable_;
    o.addr_ = nullptr;
    o.size_ = 0;
    o.writable_ = false;
  }
  return *this;
}

int DmabufMapping::Map(int fd, size_t size) {
  Reset();
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  bool writable = true;
  if (p == MAP_FAILED) {
    p = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
    writable = false;
  }
  if (p == MAP_FAILED) return -EFAULT;
  addr_ = p;
  size_ = size;
  writable_ = writable;
  return 0;
}

void DmabufMapping::Reset() {
  if (addr_) munmap(addr_, size_);
  addr_ = nullptr;
  size_ = 0;
  writable_ = false;
}

}  // namespace sim
}  // namespace dmx
