#include "dvb_ringbuffer.h"

#include <errno.h>
#include <string.h>

#include <algorithm>

namespace dmx {
namespace sim {

void DvbRingBuffer::Init(size_t size) {
  data_.clear();
  data_.shrink_to_fit();
  size_ = size;
  pread_ = pwrite_ = 0;
  error_ = 0;
}

void DvbRingBuffer::Allocate() {
  data_.assign(size_, 0);
  pread_ = pwrite_ = 0;
  error_ = 0;
}

void DvbRingBuffer::Free() {
  data_.clear();
  data_.shrink_to_fit();
  pread_ = pwrite_ = 0;
}

void DvbRingBuffer::Resize(size_t size) {
  // "reset and not flush in case the buffer shrinks"
  size_ = size;
  Allocate();
}

size_t DvbRingBuffer::avail() const {
  return pwrite_ >= pread_ ? pwrite_ - pread_ : pwrite_ + size_ - pread_;
}

size_t DvbRingBuffer::free() const {
  if (size_ == 0) return 0;
  size_t f = pread_ > pwrite_ ? pread_ - pwrite_ : pread_ + size_ - pwrite_;
  return f - 1;
}

ssize_t DvbRingBuffer::Write(const uint8_t* src, size_t len) {
  if (len == 0 || data_.empty()) return 0;
  if (len > free()) return -EOVERFLOW;
  size_t first = std::min(len, size_ - pwrite_);
  memcpy(data_.data() + pwrite_, src, first);
  memcpy(data_.data(), src + first, len - first);
  pwrite_ = (pwrite_ + len) % size_;
  return static_cast<ssize_t>(len);
}

size_t DvbRingBuffer::Read(uint8_t* dst, size_t count) {
  if (data_.empty()) return 0;
  size_t n = std::min(count, avail());
  size_t first = std::min(n, size_ - pread_);
  memcpy(dst, data_.data() + pread_, first);
  memcpy(dst + first, data_.data(), n - first);
  pread_ = (pread_ + n) % size_;
  return n;
}

}  // namespace sim
}  // namespace dmx
