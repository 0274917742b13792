#include "dvb_frontend.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/dvb/version.h>
#include <poll.h>
#include <string.h>
#include <sys/ioctl.h>

#include <algorithm>

#include "mul_div.h"

namespace dmx {
namespace sim {

namespace {

constexpr uint32_t kFreqMinHz = 51000000;    // vidtv demod
constexpr uint32_t kFreqMaxHz = 858000000;   // UHF band IV/V
constexpr uint32_t kFreqStepHz = 62500;
constexpr uint32_t kFreqToleranceHz = 29500000;
constexpr uint32_t kSymbolRateMin = 1000000;
constexpr uint32_t kSymbolRateMax = 45000000;
constexpr uint32_t kDelsys[] = {SYS_DVBT, SYS_DVBT2, SYS_DVBC_ANNEX_A};
constexpr uint32_t kLockStatus =
    FE_HAS_SIGNAL | FE_HAS_CARRIER | FE_HAS_VITERBI | FE_HAS_SYNC | FE_HAS_LOCK;

bool IsSupportedDelsys(uint32_t d) {
  return std::find(std::begin(kDelsys), std::end(kDelsys), d) !=
         std::end(kDelsys);
}

void SetStat(struct dtv_property* p, uint8_t scale, uint64_t value) {
  memset(&p->u.st, 0, sizeof(p->u.st));
  p->u.st.len = 1;
  p->u.st.stat[0].scale = scale;
  p->u.st.stat[0].uvalue = value;
}

}  // namespace

DvbFrontend::DvbFrontend(int tune_delay_ms)
    : tune_delay_ns_(static_cast<uint64_t>(std::max(0, tune_delay_ms)) *
                     1000000) {
  ClearCache();
}

void DvbFrontend::ClearCache() {
  // dvb_frontend_clear_cache(): everything but the delivery system.
  frequency_ = 0;
  modulation_ = QAM_AUTO;
  bandwidth_hz_ = 0;
  inversion_ = INVERSION_AUTO;
  symbol_rate_ = 0;
  fec_inner_ = FEC_AUTO;
  code_rate_hp_ = FEC_AUTO;
  code_rate_lp_ = FEC_AUTO;
  guard_interval_ = GUARD_INTERVAL_AUTO;
  transmission_mode_ = TRANSMISSION_MODE_AUTO;
  hierarchy_ = HIERARCHY_AUTO;
  pilot_ = PILOT_AUTO;
  rolloff_ = ROLLOFF_AUTO;
  interleaving_ = 0;
  stream_id_ = NO_STREAM_ID_FILTER;
  lna_ = LNA_AUTO;
  voltage_ = SEC_VOLTAGE_OFF;
  tone_ = SEC_TONE_OFF;
}

int DvbFrontend::Open(int flags) {
  if ((flags & O_ACCMODE) == O_RDONLY) return 0;
  if (writers_ == 0) return -EBUSY;
  --writers_;
  tune_mode_flags_ &= ~FE_TUNE_MODE_ONESHOT;
  eventr_ = eventw_ = 0;  // "empty event queue"
  overflow_ = false;
  return 0;
}

void DvbFrontend::Release(int flags) {
  if ((flags & O_ACCMODE) != O_RDONLY) ++writers_;
}

short DvbFrontend::Poll() const {
  return eventw_ != eventr_ ? (POLLIN | POLLRDNORM | POLLPRI) : 0;
}

void DvbFrontend::AddEvent(uint32_t status) {
  // dvb_frontend_add_event(): a full queue drops the oldest and remembers.
  int wp = (eventw_ + 1) % 8;
  if (wp == eventr_) {
    overflow_ = true;
    eventr_ = (eventr_ + 1) % 8;
  }
  struct dvb_frontend_event* e = &events_[eventw_];
  memset(e, 0, sizeof(*e));
  e->status = static_cast<fe_status_t>(status);
  e->parameters.frequency = frequency_;
  e->parameters.inversion = static_cast<fe_spectral_inversion_t>(inversion_);
  eventw_ = wp;
}

uint64_t DvbFrontend::Advance(uint64_t now_ns, bool* changed) {
  if (!tune_pending_) return 0;
  if (now_ns < tune_done_at_ns_) return tune_done_at_ns_;
  // vidtv_demod_set_frontend(): any in-range frequency gives a CNR > 0,
  // hence a full lock.
  tune_pending_ = false;
  Accumulate(now_ns);
  status_ = kLockStatus;
  AddEvent(status_);
  *changed = true;
  return 0;
}

void DvbFrontend::SetRate(uint64_t bits_per_second, uint64_t now_ns) {
  Accumulate(now_ns);
  rate_bps_ = bits_per_second;
}

void DvbFrontend::Accumulate(uint64_t now_ns) {
  if (Locked() && now_ns > last_ns_) {
    bits_ += MulDivFloor(now_ns - last_ns_, rate_bps_, 1000000000u);
  }
  last_ns_ = now_ns;
}

uint32_t DvbFrontend::Random(uint32_t range) {
  // xorshift32: signal figures that move, as vidtv's prandom jitter.
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 17;
  rng_ ^= rng_ << 5;
  return range ? rng_ % range : 0;
}

int DvbFrontend::Tune() {
  // dtv_set_frontend(): dvb_frontend_check_parameters() first.
  if (frequency_ < kFreqMinHz || frequency_ > kFreqMaxHz) return -EINVAL;
  if (delivery_system_ == SYS_DVBC_ANNEX_A &&
      (symbol_rate_ < kSymbolRateMin || symbol_rate_ > kSymbolRateMax))
    return -EINVAL;
  if (delivery_system_ == SYS_DVBC_ANNEX_A)
    bandwidth_hz_ = static_cast<uint32_t>(uint64_t{symbol_rate_} * 115 / 100);
  if (hierarchy_ == HIERARCHY_NONE && code_rate_lp_ == FEC_NONE)
    code_rate_lp_ = FEC_AUTO;
  // FESTATE_RETUNE: FE_READ_STATUS says 0 until the thread tuned.
  uint64_t now = MonotonicNs();
  Accumulate(now);
  status_ = 0;
  tune_pending_ = true;
  tune_done_at_ns_ = now + tune_delay_ns_;
  eventr_ = eventw_ = 0;  // dvb_frontend_clear_events()
  overflow_ = false;
  AddEvent(0);
  return 0;
}

int DvbFrontend::SetProperty(uint32_t cmd, uint32_t data) {
  // dtv_property_process_set()
  switch (cmd) {
    case DTV_CLEAR: ClearCache(); return 0;
    case DTV_TUNE: return Tune();
    case DTV_FREQUENCY: frequency_ = data; return 0;
    case DTV_MODULATION: modulation_ = data; return 0;
    case DTV_BANDWIDTH_HZ: bandwidth_hz_ = data; return 0;
    case DTV_INVERSION: inversion_ = data; return 0;
    case DTV_SYMBOL_RATE: symbol_rate_ = data; return 0;
    case DTV_INNER_FEC: fec_inner_ = data; return 0;
    case DTV_PILOT: pilot_ = data; return 0;
    case DTV_ROLLOFF: rolloff_ = data; return 0;
    case DTV_DELIVERY_SYSTEM:
      // dvbv5_set_delivery_system(); SYS_UNDEFINED means the first one.
      if (data == SYS_UNDEFINED) data = kDelsys[0];
      if (!IsSupportedDelsys(data)) return -EINVAL;
      delivery_system_ = data;
      return 0;
    case DTV_VOLTAGE: voltage_ = data; return 0;  // vidtv: set_voltage ok
    case DTV_TONE: tone_ = data; return 0;
    case DTV_CODE_RATE_HP: code_rate_hp_ = data; return 0;
    case DTV_CODE_RATE_LP: code_rate_lp_ = data; return 0;
    case DTV_GUARD_INTERVAL: guard_interval_ = data; return 0;
    case DTV_TRANSMISSION_MODE: transmission_mode_ = data; return 0;
    case DTV_HIERARCHY: hierarchy_ = data; return 0;
    case DTV_INTERLEAVING: interleaving_ = data; return 0;
    case DTV_STREAM_ID: stream_id_ = data; return 0;
    case DTV_LNA: lna_ = data; return 0;
    default: return -EINVAL;
  }
}

int DvbFrontend::GetProperty(struct dtv_property* p, uint64_t now_ns) {
  // dtv_property_process_get()
  switch (p->cmd) {
    case DTV_ENUM_DELSYS: {
      size_t n = sizeof(kDelsys) / sizeof(kDelsys[0]);
      for (size_t i = 0; i < n; ++i)
        p->u.buffer.data[i] = static_cast<uint8_t>(kDelsys[i]);
      p->u.buffer.len = static_cast<uint32_t>(n);
      return 0;
    }
    case DTV_FREQUENCY: p->u.data = frequency_; return 0;
    case DTV_MODULATION: p->u.data = modulation_; return 0;
    case DTV_BANDWIDTH_HZ: p->u.data = bandwidth_hz_; return 0;
    case DTV_INVERSION: p->u.data = inversion_; return 0;
    case DTV_SYMBOL_RATE: p->u.data = symbol_rate_; return 0;
    case DTV_INNER_FEC: p->u.data = fec_inner_; return 0;
    case DTV_PILOT: p->u.data = pilot_; return 0;
    case DTV_ROLLOFF: p->u.data = rolloff_; return 0;
    case DTV_DELIVERY_SYSTEM: p->u.data = delivery_system_; return 0;
    case DTV_VOLTAGE: p->u.data = voltage_; return 0;
    case DTV_TONE: p->u.data = tone_; return 0;
    case DTV_API_VERSION:
      p->u.data = (DVB_API_VERSION << 8) | DVB_API_VERSION_MINOR;
      return 0;
    case DTV_CODE_RATE_HP: p->u.data = code_rate_hp_; return 0;
    case DTV_CODE_RATE_LP: p->u.data = code_rate_lp_; return 0;
    case DTV_GUARD_INTERVAL: p->u.data = guard_interval_; return 0;
    case DTV_TRANSMISSION_MODE: p->u.data = transmission_mode_; return 0;
    case DTV_HIERARCHY: p->u.data = hierarchy_; return 0;
    case DTV_INTERLEAVING: p->u.data = interleaving_; return 0;
    case DTV_STREAM_ID: p->u.data = stream_id_; return 0;
    case DTV_LNA: p->u.data = lna_; return 0;
    default: break;
  }
  // Statistics, as vidtv_demod_update_stats(): strength always (0.001 dBm),
  // CNR (0.001 dB) and the counters only with a lock.
  Accumulate(now_ns);
  bool lock = Locked();
  uint8_t counter = lock ? FE_SCALE_COUNTER : FE_SCALE_NOT_AVAILABLE;
  uint64_t blocks = bits_ / (188 * 8);
  uint64_t pre_errors = bits_ / 400000 + error_blocks_ * 8;  // BER ~2.5e-6
  uint64_t post_errors = bits_ / 2000000000 + error_blocks_ * 8;
  switch (p->cmd) {
    case DTV_STAT_SIGNAL_STRENGTH: {
      int64_t dbm = -38000 - static_cast<int64_t>(Random(600));
      SetStat(p, FE_SCALE_DECIBEL, static_cast<uint64_t>(dbm));
      return 0;
    }
    case DTV_STAT_CNR:
      SetStat(p, lock ? FE_SCALE_DECIBEL : FE_SCALE_NOT_AVAILABLE,
              lock ? 28000 - Random(560) : 0);
      return 0;
    case DTV_STAT_PRE_ERROR_BIT_COUNT:
      SetStat(p, counter, lock ? pre_errors : 0);
      return 0;
    case DTV_STAT_PRE_TOTAL_BIT_COUNT:
      SetStat(p, counter, lock ? bits_ : 0);
      return 0;
    case DTV_STAT_POST_ERROR_BIT_COUNT:
      SetStat(p, counter, lock ? post_errors : 0);
      return 0;
    case DTV_STAT_POST_TOTAL_BIT_COUNT:
      SetStat(p, counter, lock ? bits_ : 0);
      return 0;
    case DTV_STAT_ERROR_BLOCK_COUNT:
      SetStat(p, counter, lock ? error_blocks_ : 0);
      return 0;
    case DTV_STAT_TOTAL_BLOCK_COUNT:
      SetStat(p, counter, lock ? blocks : 0);
      return 0;
    default:
      return -EINVAL;
  }
}

int DvbFrontend::Ioctl(std::unique_lock<std::mutex>& lock,
                       SimInstance& instance, const SimFile* file,
                       unsigned long cmd, void* arg) {
  // Read-only opens may only monitor: every non-_IOR ioctl, and the two
  // that take part in tuning, fail with EPERM.
  if (file->accmode() == O_RDONLY &&
      (_IOC_DIR(cmd) != _IOC_READ || cmd == FE_GET_EVENT ||
       cmd == FE_DISEQC_RECV_SLAVE_REPLY))
    return -EPERM;
  uint64_t now = MonotonicNs();
  bool changed = false;
  Advance(now, &changed);
  switch (cmd) {
    case FE_SET_PROPERTY: {
      auto* tvps = static_cast<struct dtv_properties*>(arg);
      if (tvps->num == 0 || tvps->num > DTV_IOCTL_MAX_MSGS) return -EINVAL;
      if (!tvps->props) return -EFAULT;
      for (uint32_t i = 0; i < tvps->num; ++i) {
        int r = SetProperty(tvps->props[i].cmd, tvps->props[i].u.data);
        if (r < 0) return r;
      }
      return 0;
    }
    case FE_GET_PROPERTY: {
      auto* tvps = static_cast<struct dtv_properties*>(arg);
      if (tvps->num == 0 || tvps->num > DTV_IOCTL_MAX_MSGS) return -EINVAL;
      if (!tvps->props) return -EFAULT;
      // Results are copied back only when every property succeeded.
      struct dtv_property props[DTV_IOCTL_MAX_MSGS];
      memcpy(props, tvps->props, tvps->num * sizeof(props[0]));
      for (uint32_t i = 0; i < tvps->num; ++i) {
        int r = GetProperty(&props[i], now);
        if (r < 0) return r;
      }
      memcpy(tvps->props, props, tvps->num * sizeof(props[0]));
      return 0;
    }
    case FE_GET_INFO: {
      auto* info = static_cast<struct dvb_frontend_info*>(arg);
      memset(info, 0, sizeof(*info));
      strncpy(info->name, "dmx-agent sim DVB-T/T2/C demod",
              sizeof(info->name) - 1);
      info->type = delivery_system_ == SYS_DVBC_ANNEX_A ? FE_QAM : FE_OFDM;
      info->frequency_min = kFreqMinHz;
      info->frequency_max = kFreqMaxHz;
      info->frequency_stepsize = kFreqStepHz;
      info->frequency_tolerance = kFreqToleranceHz;
      info->symbol_rate_min = kSymbolRateMin;
      info->symbol_rate_max = kSymbolRateMax;
      info->caps = static_cast<fe_caps>(
          FE_CAN_FEC_1_2 | FE_CAN_FEC_2_3 | FE_CAN_FEC_3_4 | FE_CAN_FEC_4_5 |
          FE_CAN_FEC_5_6 | FE_CAN_FEC_6_7 | FE_CAN_FEC_7_8 | FE_CAN_FEC_8_9 |
          FE_CAN_FEC_AUTO | FE_CAN_QPSK | FE_CAN_QAM_16 | FE_CAN_QAM_32 |
          FE_CAN_QAM_64 | FE_CAN_QAM_128 | FE_CAN_QAM_256 | FE_CAN_QAM_AUTO |
          FE_CAN_TRANSMISSION_MODE_AUTO | FE_CAN_GUARD_INTERVAL_AUTO |
          FE_CAN_HIERARCHY_AUTO | FE_CAN_2G_MODULATION |
          (!(tune_mode_flags_ & FE_TUNE_MODE_ONESHOT)
               ? static_cast<unsigned>(FE_CAN_INVERSION_AUTO)
               : 0u));
      return 0;
    }
    case FE_READ_STATUS:
      *static_cast<fe_status_t*>(arg) = static_cast<fe_status_t>(status_);
      return 0;
    case FE_READ_SIGNAL_STRENGTH:
      *static_cast<uint16_t*>(arg) =
          static_cast<uint16_t>(Locked() ? 0xC000 + Random(0x400) : 0);
      return 0;
    case FE_GET_EVENT: {
      if (overflow_) {
        overflow_ = false;
        return -EOVERFLOW;
      }
      if (eventw_ == eventr_) {
        if (file->NonblockingNow()) return -EWOULDBLOCK;
        int r = WaitLocked(lock, instance, file,
                           [this] { return eventw_ != eventr_; });
        if (r != 0) return r;
      }
      *static_cast<struct dvb_frontend_event*>(arg) = events_[eventr_];
      eventr_ = (eventr_ + 1) % 8;
      return 0;
    }
    case FE_SET_FRONTEND_TUNE_MODE:
      tune_mode_flags_ =
          static_cast<unsigned>(reinterpret_cast<uintptr_t>(arg));
      return 0;
    case FE_SET_TONE:
      tone_ = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(arg));
      return 0;
    case FE_SET_VOLTAGE:
      voltage_ = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(arg));
      return 0;
    case FE_DISEQC_SEND_BURST:
    case FE_ENABLE_HIGH_LNB_VOLTAGE:
      return 0;
    case FE_DISEQC_SEND_MASTER_CMD: {
      auto* c = static_cast<struct dvb_diseqc_master_cmd*>(arg);
      return c->msg_len > sizeof(c->msg) ? -EINVAL : 0;
    }
    default:
      // dvb_frontend_handle_ioctl(): unknown ioctls and missing demod ops
      // answer the kernel-internal ENOTSUPP.
      return -kENOTSUPP;
  }
}

}  // namespace sim
}  // namespace dmx
