// Where an adapter's transport stream comes from: a synthetic multiplex or
// a looped file. Sources only make packets; the adapter's producer thread
// paces them in real time from RateBps().
//
// Not thread safe: the adapter serialises calls with its source mutex.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <memory>
#include <string>
#include <vector>

namespace dmx {

struct SimSourceConfig;

namespace sim {

class TsSource {
 public:
  virtual ~TsSource() = default;
  // The rate the next packet is due at, in bits per second (> 0).
  virtual uint64_t RateBps() const = 0;
  // How many packets may follow before RateBps() changes (a file's PCR
  // segments); SIZE_MAX when it only changes through SetBitrate().
  virtual size_t PacketsAtCurrentRate() const { return SIZE_MAX; }
  // Appends `n` packets of 188 bytes to *out.
  virtual void Generate(size_t n, std::vector<uint8_t>* out) = 0;
  // sim.setBitrate(); a file source then ignores its PCRs.
  virtual void SetBitrate(uint64_t bits_per_second) = 0;
  // The PID cc-gap and tei faults use when none is given.
  virtual uint16_t DefaultFaultPid() const = 0;
};

// Builds the source of an adapter. Throws std::invalid_argument when a file
// cannot be used.
std::unique_ptr<TsSource> MakeTsSource(const SimSourceConfig& config);

}  // namespace sim
}  // namespace dmx
