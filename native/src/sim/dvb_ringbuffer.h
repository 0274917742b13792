// The classic read() path of demux and DVR fds: dvb_ringbuffer.c and the
// error handling of dvb_dmxdev_buffer_write/_read in dmxdev.c.
//
// Not thread safe: the owning adapter's mutex guards every call.
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <vector>

namespace dmx {
namespace sim {

class DvbRingBuffer {
 public:
  // dvb_ringbuffer_init(buf, NULL, size): a size, no memory yet.
  void Init(size_t size);
  // Allocates (or reallocates) the memory and resets the pointers.
  void Allocate();
  void Free();
  // DMX_SET_BUFFER_SIZE: new memory of `size`, contents dropped.
  void Resize(size_t size);

  bool has_data() const { return !data_.empty(); }
  size_t size() const { return size_; }
  bool empty() const { return pread_ == pwrite_; }
  size_t avail() const;
  size_t free() const;  // one byte always stays free
  void Flush() { pread_ = pwrite_; error_ = 0; }

  int error() const { return error_; }
  void set_error(int e) { error_ = e; }

  // dvb_dmxdev_buffer_write(): all or nothing; -EOVERFLOW when it does not
  // fit, 0 when there is no memory, else len.
  ssize_t Write(const uint8_t* src, size_t len);
  // Copies up to `count` bytes out.
  size_t Read(uint8_t* dst, size_t count);

 private:
  std::vector<uint8_t> data_;
  size_t size_ = 0;
  size_t pread_ = 0;
  size_t pwrite_ = 0;
  int error_ = 0;  // a negative errno reported by the next read
};

}  // namespace sim
}  // namespace dmx
