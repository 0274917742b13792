// SimSys: a Sys whose device nodes exist only inside this object.
//
// It serves /dev/dvb/adapterN/{frontend0,demux0,dvr0} for each configured
// adapter and /dev/videoN for each configured decoder (N in config order),
// with the kernel's semantics (drivers/media/dvb-core, videobuf2, vim2m;
// see kernel-facts.md in the team docs). Every fd it hands out is a real fd
// of this process (an eventfd), so fd accounting in tests is real; calls on
// fds it did not create go to libc unchanged. Many SimSys may live in one
// process; each is fully independent (own devices, threads and fd table).
#pragma once

#include <stdint.h>

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "../sys/sys.h"

namespace dmx {

namespace sim {  // the device models behind SimSys, internal
class DvbAdapter;
class M2mDecoder;
class SimFile;
}  // namespace sim

struct SimStreamConfig {
  enum class Type { kVideo, kAudio, kData };
  uint16_t pid = 0;
  Type type = Type::kVideo;
  double share = 0;  // fraction of the adapter's total bitrate
};

struct SimProgramConfig {
  uint16_t number = 1;
  uint16_t pmt_pid = 0x1000;
  std::vector<SimStreamConfig> streams;
};

struct SimSourceConfig {
  enum class Kind { kSynthetic, kFile };
  Kind kind = Kind::kSynthetic;
  // Synthetic: the total rate. File: the rate used when the file has no
  // usable PCRs (0 = 8 Mbit/s).
  uint64_t bitrate = 8000000;
  std::vector<SimProgramConfig> programs;  // synthetic; empty = the default
  std::string path;                        // file
};

struct SimAdapterConfig {
  int adapter = 0;           // N in /dev/dvb/adapterN
  bool mmap = true;          // false: a kernel without CONFIG_DVB_MMAP
  // false: the vb2 allocator has no get_dmabuf, so DMX_EXPBUF is EINVAL
  // (vb2_core_expbuf).
  bool exportable = true;
  bool require_tune = true;  // as vidtv: nothing flows before a tune+lock
  SimSourceConfig source;
  int tune_delay_ms = 5;     // DTV_TUNE to FE_HAS_LOCK
  // Module parameter dvb_demux_tscheck: the demux checks every packet's
  // continuity counter and flags DMX_BUFFER_PKT_COUNTER_MISMATCH.
  bool tscheck = false;
};

struct SimCompressedFormat {
  uint32_t fourcc = 0;
  uint32_t sizeimage = 0;
};

struct SimDecoderConfig {
  std::string name = "vim2m";
  int processing_delay_ms = 2;  // vim2m's transtime
  std::vector<SimCompressedFormat> compressed_formats;  // extra OUTPUT formats
  // The allocator is videobuf2-dma-contig instead of vmalloc: an imported
  // dmabuf must be physically contiguous, and the sim's dmabufs (vmalloc
  // demux buffers, memfds) are contiguous only within a page.
  bool contiguous = false;
  // The OUTPUT queue's io_modes as V4L2_BUF_CAP_SUPPORTS_{MMAP,USERPTR,
  // DMABUF} bits (vim2m: all three).
  uint32_t output_memory = 0x7;
};

struct SimConfig {
  std::vector<SimAdapterConfig> adapters;
  std::vector<SimDecoderConfig> decoders;

  // One adapter 0 (synthetic, 8 Mbit/s) and one "vim2m" decoder.
  static SimConfig Default();
  // The default program of a synthetic source: number 1, PMT 0x1000,
  // video 0x100 and audio 0x101.
  static std::vector<SimProgramConfig> DefaultPrograms();
  // Empty when valid, else a message naming the offending field.
  std::string Validate() const;
};

struct SimFault {
  // kAllocFail: the next `count` vb2 buffer allocations of the adapter fail;
  // vb2 stops at the first that fails, so a REQBUFS whose first allocation
  // fails gets ENOMEM, a later one a short grant (__vb2_queue_alloc).
  // kHang: for `duration_ms` every demux and DVR ioctl of the adapter blocks,
  // as they do in the kernel while a blocking DMX_DQBUF sleeps holding the
  // adapter-wide dmxdev mutex: a pump stuck inside the driver.
  enum class Kind { kCcGap, kTei, kCrcDiscard, kStall, kBurst, kAllocFail, kHang };
  Kind kind = Kind::kCcGap;
  int pid = -1;            // -1: the fault's default PID
  uint32_t count = 1;      // cc-gap, tei, crc-discard
  uint32_t duration_ms = 1000;  // stall, burst, hang
  double factor = 2.0;     // burst
};

struct SimFilterStats {
  std::string path;
  int pid = -1;  // the filter's (first) PID; 0x2000 for the DVR; -1 unset
  uint64_t bytes_delivered = 0;
  uint64_t bytes_dropped_no_buffer = 0;
  bool streaming = false;
  bool dead = false;  // REQBUFS failed while streaming (dvb_vb2_reqbufs)
};

struct SimAdapterStats {
  int adapter = 0;
  uint64_t packets_produced = 0;
  uint64_t bytes_produced = 0;
  uint64_t bytes_delivered = 0;
  uint64_t bytes_dropped_no_buffer = 0;
  std::vector<SimFilterStats> filters;
};

struct SimDecoderStats {
  std::string path;
  std::string name;
  uint64_t output_imported = 0;
  uint64_t import_rejected = 0;
  uint64_t jobs_done = 0;
};

struct SimStats {
  std::vector<SimAdapterStats> adapters;
  std::vector<SimDecoderStats> decoders;
};

class SimSys : public Sys {
 public:
  // Throws std::invalid_argument when the config is invalid or a source
  // file cannot be read. A device starts its thread at its first open.
  explicit SimSys(SimConfig config);
  ~SimSys() override;

  SimSys(const SimSys&) = delete;
  SimSys& operator=(const SimSys&) = delete;

  const char* Name() const override { return "sim"; }
  int Open(const char* path, int flags) override;
  int Close(int fd) override;
  int Ioctl(int fd, unsigned long request, void* arg) override;
  void* Mmap(size_t length, int prot, int flags, int fd, off_t offset) override;
  int Munmap(void* addr, size_t length) override;
  int Poll(struct pollfd* fds, nfds_t nfds, int timeout_ms) override;
  ssize_t Read(int fd, void* buf, size_t count) override;
  int ListDir(const std::string& path, std::vector<std::string>* names) override;
  int ReadTextFile(const std::string& path, std::string* out) override;

  // Control surface. Each returns 0 or a negative errno: -ENOENT for an
  // adapter number or path this simulation does not have, -ENODEV after
  // Close().
  int InjectFault(int adapter, const SimFault& fault);
  int SetBitrate(int adapter, uint64_t bits_per_second);
  // Hot-unplug: every later call on the device's fds fails ENODEV and poll
  // reports an error; the node disappears (open: ENOENT) until restored.
  // An adapter is removed as a whole, by any of its node paths or by
  // /dev/dvb/adapterN. Removing a removed device does nothing.
  int RemoveDevice(const std::string& path);
  // The node reappears as a fresh device; fds opened before stay dead.
  int RestoreDevice(const std::string& path);
  SimStats Stats() const;
  // Idempotent. Stops every thread; open fds answer ENODEV until closed.
  void Close();
  bool closed() const;

  const SimConfig& config() const { return config_; }

 private:
  struct AdapterSlot {
    SimAdapterConfig config;
    std::shared_ptr<sim::DvbAdapter> instance;  // the last one, even if removed
    bool removed = false;
    bool bitrate_overridden = false;  // by SetBitrate(), kept across restore
  };
  struct DecoderSlot {
    SimDecoderConfig config;
    int index = 0;
    std::shared_ptr<sim::M2mDecoder> instance;
    bool removed = false;
  };

  std::shared_ptr<sim::SimFile> Find(int fd) const;
  AdapterSlot* FindAdapterLocked(int adapter);
  // Resolves a device path to its slot; returns false when unknown.
  bool ResolveLocked(const std::string& path, AdapterSlot** adapter,
                     DecoderSlot** decoder, std::string* node);

  const SimConfig config_;
  mutable std::mutex mu_;
  bool closed_ = false;
  std::vector<AdapterSlot> adapters_;
  std::vector<DecoderSlot> decoders_;
  std::unordered_map<int, std::shared_ptr<sim::SimFile>> files_;
};

}  // namespace dmx
