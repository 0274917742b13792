// The frontend node of one adapter: the ioctl and property handling of
// drivers/media/dvb-core/dvb_frontend.c in front of a demod that behaves
// like vidtv's (vidtv_demod.c): any in-range frequency locks shortly after
// DTV_TUNE and stays locked, even after the frontend fd is closed.
//
// There is no frontend thread: the tune completes when the adapter's
// producer thread (or a caller) advances the model past the tune deadline.
// Every method runs with the adapter's instance mutex held.
#pragma once

#include <linux/dvb/frontend.h>
#include <stdint.h>

#include <mutex>

#include "sim_file.h"

namespace dmx {
namespace sim {

class DvbFrontend {
 public:
  explicit DvbFrontend(int tune_delay_ms);

  // dvb_frontend_open()/_release() (dvb_generic_open's one-writer rule).
  int Open(int flags);
  void Release(int flags);
  // dvb_frontend_do_ioctl(); may sleep in FE_GET_EVENT.
  int Ioctl(std::unique_lock<std::mutex>& lock, SimInstance& instance,
            const SimFile* file, unsigned long cmd, void* arg);
  // dvb_frontend_poll()
  short Poll() const;

  // Completes a pending tune once its deadline passed. Returns the next
  // deadline in ns (0: none); sets *changed when the status changed.
  uint64_t Advance(uint64_t now_ns, bool* changed);
  bool Locked() const { return (status_ & FE_HAS_LOCK) != 0; }
  // The rate the statistics counters advance at while locked.
  void SetRate(uint64_t bits_per_second, uint64_t now_ns);
  // Transport packets received with errors (TEI), for the block counters.
  void CountErrorBlocks(uint64_t n) { error_blocks_ += n; }

 private:
  void ClearCache();
  int SetProperty(uint32_t cmd, uint32_t data);
  int GetProperty(struct dtv_property* p, uint64_t now_ns);
  int Tune();
  void AddEvent(uint32_t status);
  void Accumulate(uint64_t now_ns);
  uint32_t Random(uint32_t range);

  const uint64_t tune_delay_ns_;
  int writers_ = 1;  // dvbdev->writers
  bool tune_pending_ = false;
  uint64_t tune_done_at_ns_ = 0;
  uint32_t status_ = 0;
  unsigned tune_mode_flags_ = 0;

  // dtv_frontend_properties (the DVB-T/T2/C subset the demod uses)
  uint32_t delivery_system_ = SYS_DVBT;
  uint32_t frequency_ = 0;
  uint32_t modulation_ = QAM_AUTO;
  uint32_t bandwidth_hz_ = 0;
  uint32_t inversion_ = INVERSION_AUTO;
  uint32_t symbol_rate_ = 0;
  uint32_t fec_inner_ = FEC_AUTO;
  uint32_t code_rate_hp_ = FEC_AUTO;
  uint32_t code_rate_lp_ = FEC_AUTO;
  uint32_t guard_interval_ = GUARD_INTERVAL_AUTO;
  uint32_t transmission_mode_ = TRANSMISSION_MODE_AUTO;
  uint32_t hierarchy_ = HIERARCHY_AUTO;
  uint32_t pilot_ = PILOT_AUTO;
  uint32_t rolloff_ = ROLLOFF_AUTO;
  uint32_t interleaving_ = 0;
  uint32_t stream_id_ = NO_STREAM_ID_FILTER;
  uint32_t lna_ = LNA_AUTO;
  uint32_t voltage_ = SEC_VOLTAGE_OFF;
  uint32_t tone_ = SEC_TONE_OFF;

  // Frontend events (struct dvb_fe_events, MAX_EVENT = 8).
  struct dvb_frontend_event events_[8] = {};
  int eventw_ = 0;
  int eventr_ = 0;
  bool overflow_ = false;

  // Statistics.
  uint64_t rate_bps_ = 0;
  uint64_t last_ns_ = 0;
  uint64_t bits_ = 0;  // received while locked
  uint64_t error_blocks_ = 0;
  uint32_t rng_ = 0x2545F491u;
};

}  // namespace sim
}  // namespace dmx
