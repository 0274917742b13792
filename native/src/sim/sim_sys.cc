#include "sim_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

#include "dvb_adapter.h"
#include "m2m_decoder.h"
#include "memfd_buffer.h"
#include "ts_source.h"

namespace dmx {

using sim::DvbAdapter;
using sim::M2mDecoder;
using sim::MonotonicNs;
using sim::PageSize;
using sim::PollWaiter;
using sim::SimFile;
using sim::SimInstance;

namespace {

constexpr uint64_t kMaxBitrate = 10000000000ull;  // 10 Gbit/s
constexpr int kMaxDelayMs = 10001;                 // vim2m's control range

// libc conventions at the Sys boundary.
int Fail(int negative_errno) {
  errno = -negative_errno;
  return -1;
}

bool ValidEsPid(int pid) { return pid >= 0x10 && pid <= 0x1FFE; }

// One blocking SimSys::Poll call: an eventfd that the devices it waits on
// write when one of its files becomes ready (see PollHub).
class ScopedWaiter {
 public:
  ScopedWaiter() { waiter_.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }
  ~ScopedWaiter() {
    for (SimInstance* i : instances_) {
      std::lock_guard<std::mutex> lock(i->mu);
      i->hub.Remove(&waiter_);
    }
    if (waiter_.efd >= 0) close(waiter_.efd);
  }
  ScopedWaiter(const ScopedWaiter&) = delete;
  ScopedWaiter& operator=(const ScopedWaiter&) = delete;

  bool ok() const { return waiter_.efd >= 0; }
  int efd() const { return waiter_.efd; }
  // Instance lock held.
  void Register(SimInstance* i, SimFile* f, short events) {
    i->hub.Add(&waiter_, f, events);
    if (std::find(instances_.begin(), instances_.end(), i) == instances_.end())
      instances_.push_back(i);
  }
  void Drain() {
    uint64_t v;
    ssize_t n = read(waiter_.efd, &v, sizeof(v));
    (void)n;
  }

 private:
  PollWaiter waiter_;
  std::vector<SimInstance*> instances_;
};

}  // namespace

// ---------------------------------------------------------------------------
// SimConfig

std::vector<SimProgramConfig> SimConfig::DefaultPrograms() {
  SimProgramConfig p;
  p.number = 1;
  p.pmt_pid = 0x1000;
  p.streams.push_back({0x100, SimStreamConfig::Type::kVideo, 0.75});
  p.streams.push_back({0x101, SimStreamConfig::Type::kAudio, 0.05});
  return {p};
}

SimConfig SimConfig::Default() {
  SimConfig c;
  c.adapters.emplace_back();
  c.decoders.emplace_back();
  return c;
}

std::string SimConfig::Validate() const {
  std::set<int> numbers;
  for (size_t i = 0; i < adapters.size(); ++i) {
    const SimAdapterConfig& a = adapters[i];
    std::string at = "adapters[" + std::to_string(i) + "]";
    if (a.adapter < 0 || a.adapter > 255)
      return at + ".adapter must be an integer from 0 to 255";
    if (!numbers.insert(a.adapter).second)
      return at + ".adapter " + std::to_string(a.adapter) + " is used twice";
    if (a.tune_delay_ms < 0) return at + ".tuneDelayMs must not be negative";
    const SimSourceConfig& s = a.source;
    if (s.bitrate == 0 || s.bitrate > kMaxBitrate)
      return at + ".source.bitrate must be a positive number of bits per "
                  "second up to 10 Gbit/s";
    if (s.kind == SimSourceConfig::Kind::kFile) {
      if (s.path.empty()) return at + ".source.path must be a file path";
      continue;
    }
    std::set<int> pids, programs;
    double share = 0;
    for (size_t j = 0; j < s.programs.size(); ++j) {
      const SimProgramConfig& p = s.programs[j];
      std::string pat = at + ".source.programs[" + std::to_string(j) + "]";
      if (p.number == 0)
        return pat + ".number must be an integer from 1 to 65535";
      if (!programs.insert(p.number).second)
        return pat + ".number " + std::to_string(p.number) + " is used twice";
      if (!ValidEsPid(p.pmt_pid))
        return pat + ".pmtPid must be a PID from 0x10 to 0x1ffe";
      if (!pids.insert(p.pmt_pid).second)
        return pat + ".pmtPid " + std::to_string(p.pmt_pid) + " is used twice";
      if (p.streams.empty()) return pat + ".streams must not be empty";
      for (size_t k = 0; k < p.streams.size(); ++k) {
        const SimStreamConfig& st = p.streams[k];
        std::string sat = pat + ".streams[" + std::to_string(k) + "]";
        if (!ValidEsPid(st.pid))
          return sat + ".pid must be a PID from 0x10 to 0x1ffe";
        if (!pids.insert(st.pid).second)
          return sat + ".pid " + std::to_string(st.pid) + " is used twice";
        if (!std::isfinite(st.share) || st.share < 0 || st.share > 1)
          return sat + ".share must be a fraction from 0 to 1";
        share += st.share;
      }
    }
    if (share > 1 + 1e-9)
      return at + ".source.programs: the stream shares add up to more than 1";
  }
  for (size_t i = 0; i < decoders.size(); ++i) {
    const SimDecoderConfig& d = decoders[i];
    std::string at = "decoders[" + std::to_string(i) + "]";
    if (d.name.empty() || d.name.size() > 31)
      return at + ".name must be 1 to 31 characters";
    if (d.processing_delay_ms < 0 || d.processing_delay_ms > kMaxDelayMs)
      return at + ".processingDelayMs must be from 0 to 10001";
    // vb2_core_queue_init() refuses a queue without io_modes.
    if (d.output_memory == 0 || (d.output_memory & ~0x7u) != 0)
      return at + ".outputMemory must hold at least one of 'mmap', "
                  "'userptr', 'dmabuf'";
    std::set<uint32_t> fourccs;
    for (size_t k = 0; k < d.compressed_formats.size(); ++k) {
      const SimCompressedFormat& f = d.compressed_formats[k];
      std::string fat = at + ".compressedFormats[" + std::to_string(k) + "]";
      if (f.fourcc == 0) return fat + ".fourcc must be four characters";
      if (!fourccs.insert(f.fourcc).second)
        return fat + ".fourcc is used twice";
      if (f.sizeimage == 0 || f.sizeimage > 16 * 1024 * 1024)
        return fat + ".sizeimage must be from 1 byte to 16 MiB";
    }
  }
  return std::string();
}

// ---------------------------------------------------------------------------
// SimSys

SimSys::SimSys(SimConfig config) : config_(std::move(config)) {
  std::string error = config_.Validate();
  if (!error.empty()) throw std::invalid_argument(error);
  for (size_t i = 0; i < config_.adapters.size(); ++i) {
    const SimAdapterConfig& a = config_.adapters[i];
    std::unique_ptr<sim::TsSource> source;
    try {
      source = sim::MakeTsSource(a.source);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("adapters[" + std::to_string(i) +
                                  "].source.path: " + e.what());
    }
    AdapterSlot slot;
    slot.config = a;
    slot.instance = std::make_shared<DvbAdapter>(a, std::move(source));
    adapters_.push_back(std::move(slot));
  }
  for (size_t i = 0; i < config_.decoders.size(); ++i) {
    DecoderSlot slot;
    slot.config = config_.decoders[i];
    slot.index = static_cast<int>(i);
    slot.instance = std::make_shared<M2mDecoder>(slot.config, slot.index);
    decoders_.push_back(std::move(slot));
  }
}

SimSys::~SimSys() {
  Close();
  // Nobody can reach these fds through this Sys any more: release them.
  for (auto& entry : files_) {
    entry.second->MarkClosed();
    entry.second->Release();
    close(entry.first);
  }
  files_.clear();
}

void SimSys::Close() {
  std::vector<std::shared_ptr<SimInstance>> victims;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    for (AdapterSlot& s : adapters_) victims.push_back(s.instance);
    for (DecoderSlot& s : decoders_) victims.push_back(s.instance);
  }
  for (auto& v : victims) {
    if (auto* a = dynamic_cast<DvbAdapter*>(v.get())) a->Kill();
    if (auto* d = dynamic_cast<M2mDecoder*>(v.get())) d->Kill();
  }
}

bool SimSys::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

std::shared_ptr<SimFile> SimSys::Find(int fd) const {
  if (fd < 0) return nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(fd);
  return it == files_.end() ? nullptr : it->second;
}

SimSys::AdapterSlot* SimSys::FindAdapterLocked(int adapter) {
  for (AdapterSlot& s : adapters_)
    if (s.config.adapter == adapter) return &s;
  return nullptr;
}

bool SimSys::ResolveLocked(const std::string& path, AdapterSlot** adapter,
                           DecoderSlot** decoder, std::string* node) {
  *adapter = nullptr;
  *decoder = nullptr;
  for (AdapterSlot& s : adapters_) {
    std::string dir = "/dev/dvb/adapter" + std::to_string(s.config.adapter);
    if (path == dir) {
      *adapter = &s;
      node->clear();
      return true;
    }
    for (const char* n : {"frontend0", "demux0", "dvr0"}) {
      if (path == dir + "/" + n) {
        *adapter = &s;
        *node = n;
        return true;
      }
    }
  }
  for (DecoderSlot& s : decoders_) {
    if (path == M2mDecoder::NodePath(s.index)) {
      *decoder = &s;
      return true;
    }
  }
  return false;
}

int SimSys::Open(const char* path, int flags) {
  if (!path) return Fail(-EFAULT);
  if ((flags & O_ACCMODE) == O_ACCMODE) return Fail(-EINVAL);
  std::shared_ptr<DvbAdapter> adapter;
  std::shared_ptr<M2mDecoder> decoder;
  DvbAdapter::Node node = DvbAdapter::Node::kFrontend;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return Fail(-ENODEV);
    AdapterSlot* a;
    DecoderSlot* d;
    std::string name;
    if (!ResolveLocked(path, &a, &d, &name)) return Fail(-ENOENT);
    if (a) {
      // A removed node is gone from /dev; the adapter directory is no node.
      if (a->removed || name.empty()) return Fail(a->removed ? -ENOENT : -EISDIR);
      adapter = a->instance;
      node = name == "frontend0" ? DvbAdapter::Node::kFrontend
             : name == "demux0"  ? DvbAdapter::Node::kDemux
                                 : DvbAdapter::Node::kDvr;
    } else {
      if (d->removed) return Fail(-ENOENT);
      decoder = d->instance;
    }
  }
  int efd_flags = ((flags & O_CLOEXEC) ? EFD_CLOEXEC : 0) |
                  ((flags & O_NONBLOCK) ? EFD_NONBLOCK : 0);
  int fd = eventfd(0, efd_flags);
  if (fd < 0) return -1;
  std::shared_ptr<SimFile> file;
  int r = adapter ? adapter->Open(node, fd, flags, &file)
                  : decoder->Open(fd, flags, &file);
  if (r < 0) {
    close(fd);
    return Fail(r);
  }
  std::lock_guard<std::mutex> lock(mu_);
  files_[fd] = std::move(file);
  return fd;
}

int SimSys::Close(int fd) {
  std::shared_ptr<SimFile> file;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = files_.find(fd);
    if (it != files_.end()) {
      file = std::move(it->second);
      files_.erase(it);
    }
  }
  if (!file) return close(fd);
  file->MarkClosed();
  file->Release();
  // Only now may the number be reused.
  close(fd);
  return 0;
}

int SimSys::Ioctl(int fd, unsigned long request, void* arg) {
  std::shared_ptr<SimFile> file = Find(fd);
  if (!file) return ioctl(fd, request, arg);
  // dvb_usercopy()/video_usercopy() copy the argument in first.
  if (_IOC_DIR(request) != _IOC_NONE && !arg) return Fail(-EFAULT);
  int r = file->Ioctl(request, arg);
  return r < 0 ? Fail(r) : r;
}

void* SimSys::Mmap(size_t length, int prot, int flags, int fd, off_t offset) {
  std::shared_ptr<SimFile> file = Find(fd);
  if (!file) return mmap(nullptr, length, prot, flags, fd, offset);
  // What do_mmap() checks before the driver sees the call.
  int type = flags & MAP_TYPE;
  int r = 0;
  if (length == 0 || (offset & static_cast<off_t>(PageSize() - 1)) ||
      (type != MAP_SHARED && type != MAP_PRIVATE && type != MAP_SHARED_VALIDATE))
    r = -EINVAL;
  else if (file->accmode() == O_WRONLY)
    r = -EACCES;
  else if (type != MAP_PRIVATE && (prot & PROT_WRITE) &&
           file->accmode() != O_RDWR)
    r = -EACCES;
  void* out = MAP_FAILED;
  if (r == 0) r = file->Mmap(length, prot, flags, offset, &out);
  if (r < 0) {
    errno = -r;
    return MAP_FAILED;
  }
  return out;
}

int SimSys::Munmap(void* addr, size_t length) { return munmap(addr, length); }

ssize_t SimSys::Read(int fd, void* buf, size_t count) {
  std::shared_ptr<SimFile> file = Find(fd);
  if (!file) return read(fd, buf, count);
  ssize_t r = file->Read(buf, count);
  if (r < 0) {
    errno = static_cast<int>(-r);
    return -1;
  }
  return r;
}

int SimSys::Poll(struct pollfd* fds, nfds_t nfds, int timeout_ms) {
  std::vector<std::shared_ptr<SimFile>> sim(nfds);
  bool any = false;
  for (nfds_t i = 0; i < nfds; ++i) {
    sim[i] = Find(fds[i].fd);
    any = any || sim[i];
  }
  if (!any) return poll(fds, nfds, timeout_ms);

  // Sim fds are answered from their driver's poll mask; the others go to
  // the real poll(), together with one eventfd the sim devices write when
  // one of our files becomes ready. No sim lock is held while blocking.
  std::vector<struct pollfd> real;
  std::vector<nfds_t> real_index;
  for (nfds_t i = 0; i < nfds; ++i) {
    if (sim[i]) continue;
    real.push_back(fds[i]);
    real_index.push_back(i);
  }
  std::unique_ptr<ScopedWaiter> waiter;
  // The sim fds' masks now (poll() always asks for POLLERR and POLLHUP),
  // registering the waiter on their devices when asked to.
  auto sample = [&](bool register_waiter) {
    int ready = 0;
    for (nfds_t i = 0; i < nfds; ++i) {
      if (!sim[i]) continue;
      SimInstance& inst = sim[i]->instance();
      std::lock_guard<std::mutex> lock(inst.mu);
      short want = static_cast<short>(fds[i].events | POLLERR | POLLHUP);
      if (register_waiter) waiter->Register(&inst, sim[i].get(), want);
      fds[i].revents = static_cast<short>(sim[i]->PollMaskLocked(want) & want);
      if (fds[i].revents) ++ready;
    }
    return ready;
  };
  // The passthrough fds, waiting up to block_ms (plus the waiter).
  auto poll_real = [&](int block_ms, int* real_ready) {
    std::vector<struct pollfd> set = real;
    if (block_ms != 0) set.push_back({waiter->efd(), POLLIN, 0});
    int n = poll(set.data(), set.size(), block_ms);
    if (n < 0) return -1;
    *real_ready = 0;
    for (size_t k = 0; k < real.size(); ++k) {
      fds[real_index[k]].revents = set[k].revents;
      if (set[k].revents) ++*real_ready;
    }
    return 0;
  };

  uint64_t deadline =
      timeout_ms < 0 ? 0 : MonotonicNs() + uint64_t(timeout_ms) * 1000000;
  int ready = sample(false);
  int real_ready = 0;
  if (ready || timeout_ms == 0) {
    if (poll_real(0, &real_ready) < 0) return -1;
    return ready + real_ready;
  }
  waiter = std::make_unique<ScopedWaiter>();
  if (!waiter->ok()) return -1;
  ready = sample(true);  // registered first: no wakeup can be lost
  for (;;) {
    if (ready) {
      if (poll_real(0, &real_ready) < 0) return -1;
      return ready + real_ready;
    }
    int block_ms = -1;
    if (timeout_ms > 0) {
      uint64_t now = MonotonicNs();
      if (now >= deadline) {
        for (nfds_t i = 0; i < nfds; ++i) fds[i].revents = 0;
        return 0;
      }
      block_ms = static_cast<int>((deadline - now + 999999) / 1000000);
    }
    if (poll_real(block_ms, &real_ready) < 0) return -1;
    waiter->Drain();
    ready = sample(false);
    if (ready || real_ready) return ready + real_ready;
  }
}

int SimSys::ListDir(const std::string& path, std::vector<std::string>* names) {
  std::lock_guard<std::mutex> lock(mu_);
  names->clear();
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  if (closed_) return Fail(-ENOENT);
  if (p == "/sys/class/video4linux") {
    for (const DecoderSlot& d : decoders_)
      if (!d.removed) names->push_back("video" + std::to_string(d.index));
    return 0;
  }
  for (const DecoderSlot& d : decoders_) {
    if (!d.removed &&
        p == "/sys/class/video4linux/video" + std::to_string(d.index)) {
      *names = {"index", "name"};
      return 0;
    }
  }
  if (p == "/dev/dvb" || p == "/dev") {
    if (p == "/dev") {
      bool any = std::any_of(adapters_.begin(), adapters_.end(),
                             [](const AdapterSlot& a) { return !a.removed; });
      if (any) names->push_back("dvb");
      for (const DecoderSlot& d : decoders_)
        if (!d.removed) names->push_back("video" + std::to_string(d.index));
      return 0;
    }
    for (const AdapterSlot& a : adapters_)
      if (!a.removed) names->push_back("adapter" + std::to_string(a.config.adapter));
    if (names->empty()) return Fail(-ENOENT);
    return 0;
  }
  for (const AdapterSlot& a : adapters_) {
    if (!a.removed && p == "/dev/dvb/adapter" + std::to_string(a.config.adapter)) {
      *names = {"demux0", "dvr0", "frontend0"};
      return 0;
    }
  }
  return Fail(-ENOENT);
}

int SimSys::ReadTextFile(const std::string& path, std::string* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!closed_) {
    for (const DecoderSlot& d : decoders_) {
      if (d.removed) continue;
      std::string dir = "/sys/class/video4linux/video" + std::to_string(d.index);
      if (path == dir + "/name") {
        *out = d.config.name + "\n";
        return 0;
      }
      if (path == dir + "/index") {
        *out = "0\n";
        return 0;
      }
    }
  }
  return Fail(-ENOENT);
}

int SimSys::InjectFault(int adapter, const SimFault& fault) {
  std::shared_ptr<DvbAdapter> a;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return -ENODEV;
    AdapterSlot* s = FindAdapterLocked(adapter);
    if (!s) return -ENOENT;
    a = s->instance;
  }
  a->InjectFault(fault);
  return 0;
}

int SimSys::SetBitrate(int adapter, uint64_t bits_per_second) {
  if (bits_per_second == 0 || bits_per_second > kMaxBitrate) return -EINVAL;
  std::shared_ptr<DvbAdapter> a;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return -ENODEV;
    AdapterSlot* s = FindAdapterLocked(adapter);
    if (!s) return -ENOENT;
    // A restored adapter keeps the rate it was last given.
    s->config.source.bitrate = bits_per_second;
    s->bitrate_overridden = true;
    a = s->instance;
  }
  a->SetBitrate(bits_per_second);
  return 0;
}

int SimSys::RemoveDevice(const std::string& path) {
  std::shared_ptr<DvbAdapter> a;
  std::shared_ptr<M2mDecoder> d;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return -ENODEV;
    AdapterSlot* as;
    DecoderSlot* ds;
    std::string node;
    if (!ResolveLocked(path, &as, &ds, &node)) return -ENOENT;
    if (as) {
      if (as->removed) return 0;
      as->removed = true;
      a = as->instance;
    } else {
      if (ds->removed) return 0;
      ds->removed = true;
      d = ds->instance;
    }
  }
  // Outside mu_: Kill() joins the device's thread.
  if (a) a->Kill();
  if (d) d->Kill();
  return 0;
}

int SimSys::RestoreDevice(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return -ENODEV;
  AdapterSlot* as;
  DecoderSlot* ds;
  std::string node;
  if (!ResolveLocked(path, &as, &ds, &node)) return -ENOENT;
  if (as) {
    if (!as->removed) return 0;
    std::unique_ptr<sim::TsSource> source;
    try {
      source = sim::MakeTsSource(as->config.source);
    } catch (const std::exception&) {
      return -EIO;
    }
    if (as->bitrate_overridden) source->SetBitrate(as->config.source.bitrate);
    as->instance = std::make_shared<DvbAdapter>(as->config, std::move(source));
    as->removed = false;
  } else {
    if (!ds->removed) return 0;
    ds->instance = std::make_shared<M2mDecoder>(ds->config, ds->index);
    ds->removed = false;
  }
  return 0;
}

SimStats SimSys::Stats() const {
  std::vector<std::shared_ptr<DvbAdapter>> adapters;
  std::vector<std::shared_ptr<M2mDecoder>> decoders;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const AdapterSlot& s : adapters_) adapters.push_back(s.instance);
    for (const DecoderSlot& s : decoders_) decoders.push_back(s.instance);
  }
  SimStats stats;
  for (auto& a : adapters) stats.adapters.push_back(a->Stats());
  for (auto& d : decoders) stats.decoders.push_back(d->Stats());
  return stats;
}

}  // namespace dmx
