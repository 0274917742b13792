// Memory behind simulated vb2 buffers, and the sim's view of dmabufs that
// clients pass in.
//
// A vb2 MMAP buffer is a memfd of page-aligned size (vb2 allocates
// PAGE_ALIGN(length), __vb2_buf_mem_alloc). The sim maps it for itself;
// clients map it through the device fd or get their own file for it with
// EXPBUF, so the sim freeing a buffer never pulls memory from under a client:
// the pages live until the last mapping or exported file is gone, as with
// vb2's refcounted vmalloc buffers.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

namespace dmx {
namespace sim {

size_t PageSize();
inline size_t PageAlign(size_t n) {
  size_t p = PageSize();
  return (n + p - 1) / p * p;
}

class MemfdBuffer {
 public:
  MemfdBuffer() = default;
  ~MemfdBuffer() { Reset(); }
  MemfdBuffer(MemfdBuffer&& other) noexcept { *this = static_cast<MemfdBuffer&&>(other); }
  MemfdBuffer& operator=(MemfdBuffer&& other) noexcept;
  MemfdBuffer(const MemfdBuffer&) = delete;
  MemfdBuffer& operator=(const MemfdBuffer&) = delete;

  // Allocates PAGE_ALIGN(length) zeroed bytes. 0 or a negative errno.
  int Allocate(size_t length);
  // Drops the sim's mapping and memfd; client mappings and exports live on.
  void Reset();

  bool valid() const { return fd_ >= 0; }
  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }  // page aligned

  // A client mapping of the first `length` bytes. 0 or a negative errno.
  int MapForClient(size_t length, int prot, int flags, void** out) const;
  // A new open file for the buffer, as dma_buf_fd(): `flags` holds
  // O_CLOEXEC and the access mode. Each call makes a distinct file (vb2
  // exports a new dma_buf per call). The fd, or a negative errno.
  int Export(int flags) const;

 private:
  int fd_ = -1;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// What the sim can tell about an fd passed as a dmabuf.
struct DmabufInfo {
  dev_t dev = 0;
  ino_t ino = 0;
  uint64_t size = 0;
  bool Same(const DmabufInfo& o) const { return dev == o.dev && ino == o.ino; }
};

// dma_buf_get(): -EINVAL unless `fd` is an open file with a size (a memfd,
// a real dmabuf, a regular file).
int InspectDmabuf(int fd, DmabufInfo* out);

// dma_buf_vmap() of an imported buffer: the sim's own mapping of it.
class DmabufMapping {
 public:
  DmabufMapping() = default;
  ~DmabufMapping() { Reset(); }
  DmabufMapping(const DmabufMapping&) = delete;
  DmabufMapping& operator=(const DmabufMapping&) = delete;
  DmabufMapping(DmabufMapping&& o) noexcept { *this = static_cast<DmabufMapping&&>(o); }
  DmabufMapping& operator=(DmabufMapping&& o) noexcept;

  // Maps `size` bytes of `fd`, writable when the file allows it. 0 or
  // -EFAULT (vb2_vmalloc_map_dmabuf's error).
  int Map(int fd, size_t size);
  void Reset();
  bool mapped() const { return addr_ != nullptr; }
  uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
  bool writable() const { return writable_; }
  size_t size() const { return size_; }

 private:
  void* addr_ = nullptr;
  size_t size_ = 0;
  bool writable_ = false;
};

}  // namespace sim
}  // namespace dmx
