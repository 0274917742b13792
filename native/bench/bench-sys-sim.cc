// bench-sys.h on the agent's simulated kernel: one SimSys (native/src/sim/),
// configured like test/bench/lib/data-path.mjs configures the Simulation the
// pump runs against, so both sides see the same devices and the same stream.
#include <errno.h>
#include <stdio.h>

#include <memory>
#include <stdexcept>

#include "../src/sim/sim_sys.h"
#include "bench-sys.h"

namespace {

std::unique_ptr<dmx::SimSys> sim;

// Keep in step with simConfig() in test/bench/lib/data-path.mjs.
dmx::SimConfig Config(const bench_sim_options& o) {
  dmx::SimConfig c;
  dmx::SimAdapterConfig a;
  a.adapter = 0;
  a.source.kind = dmx::SimSourceConfig::Kind::kSynthetic;
  a.source.bitrate = o.bitrate;
  dmx::SimProgramConfig p;
  p.number = 1;
  p.pmt_pid = 0x101;
  p.streams.push_back({0x100, dmx::SimStreamConfig::Type::kVideo, 0.5});
  p.streams.push_back({0x111, dmx::SimStreamConfig::Type::kAudio, 0.3});
  a.source.programs.push_back(p);
  c.adapters.push_back(a);
  dmx::SimDecoderConfig d;
  d.name = "vim2m";
  d.processing_delay_ms = o.processing_delay_ms;
  c.decoders.push_back(d);
  return c;
}

}  // namespace

extern "C" {

int bsys_init(const struct bench_sim_options* options) {
  try {
    sim = std::make_unique<dmx::SimSys>(Config(*options));
  } catch (const std::exception& e) {
    fprintf(stderr, "simulation: %s\n", e.what());
    return -1;
  }
  return 0;
}

void bsys_shutdown(void) {
  if (sim) sim->Close();
  sim.reset();
}

const char* bsys_name(void) { return "sim"; }

int bsys_open(const char* path, int flags) { return sim->Open(path, flags); }

int bsys_close(int fd) { return sim->Close(fd); }

int bsys_ioctl(int fd, unsigned long request, void* arg) { return sim->Ioctl(fd, request, arg); }

void* bsys_mmap(size_t length, int prot, int flags, int fd, off_t offset) {
  return sim->Mmap(length, prot, flags, fd, offset);
}

int bsys_munmap(void* addr, size_t length) { return sim->Munmap(addr, length); }

int bsys_poll(struct pollfd* fds, nfds_t nfds, int timeout_ms) { return sim->Poll(fds, nfds, timeout_ms); }

ssize_t bsys_read(int fd, void* buf, size_t count) { return sim->Read(fd, buf, count); }

int bsys_find_video(const char* name, char* path, size_t size) {
  std::vector<std::string> entries;
  if (sim->ListDir("/sys/class/video4linux", &entries) < 0) return -1;
  for (const std::string& entry : entries) {
    if (entry.rfind("video", 0) != 0) continue;
    std::string text;
    if (sim->ReadTextFile("/sys/class/video4linux/" + entry + "/name", &text) < 0) continue;
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    if (text == name) {
      snprintf(path, size, "/dev/%s", entry.c_str());
      return 0;
    }
  }
  errno = ENOENT;
  return -1;
}

}  // extern "C"
