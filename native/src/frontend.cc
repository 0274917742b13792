#include "frontend.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <linux/dvb/frontend.h>
#include <string.h>

#include <vector>

#include "backend.h"
#include "errors.h"

namespace dmx {

namespace {

struct PropertyName {
  const char* name;
  uint32_t cmd;
};

// The tuning parameters tune() accepts, by their JS names.
constexpr PropertyName kTuneProperties[] = {
    {"frequency", DTV_FREQUENCY},
    {"modulation", DTV_MODULATION},
    {"symbolRate", DTV_SYMBOL_RATE},
    {"bandwidthHz", DTV_BANDWIDTH_HZ},
    {"innerFec", DTV_INNER_FEC},
    {"inversion", DTV_INVERSION},
    {"guardInterval", DTV_GUARD_INTERVAL},
    {"transmissionMode", DTV_TRANSMISSION_MODE},
    {"hierarchy", DTV_HIERARCHY},
    {"pilot", DTV_PILOT},
    {"rolloff", DTV_ROLLOFF},
    {"streamId", DTV_STREAM_ID},
    {"voltage", DTV_VOLTAGE},
    {"tone", DTV_TONE},
};

struct DeliverySystemName {
  const char* name;
  uint32_t value;
};

constexpr DeliverySystemName kDeliverySystems[] = {
    {"DVBT", SYS_DVBT},     {"DVBT2", SYS_DVBT2},     {"DVBC/ANNEX_A", SYS_DVBC_ANNEX_A},
    {"DVBC", SYS_DVBC_ANNEX_A}, {"DVBC/ANNEX_B", SYS_DVBC_ANNEX_B}, {"DVBC/ANNEX_C", SYS_DVBC_ANNEX_C},
    {"DVBS", SYS_DVBS},     {"DVBS2", SYS_DVBS2},     {"ATSC", SYS_ATSC},
    {"ISDBT", SYS_ISDBT},   {"ISDBS", SYS_ISDBS},     {"DTMB", SYS_DTMB},
};

Napi::Value StatToJs(Napi::Env env, const dtv_property& p) {
  // Layer 0 (the global value) is enough for health; scale says the unit.
  if (p.u.st.len == 0 || p.u.st.stat[0].scale == FE_SCALE_NOT_AVAILABLE) return env.Null();
  const dtv_stats& s = p.u.st.stat[0];
  Napi::Object o = Napi::Object::New(env);
  switch (s.scale) {
    case FE_SCALE_DECIBEL:
      o.Set("scale", "decibel");
      o.Set("value", Napi::Number::New(env, static_cast<double>(s.svalue) / 1000.0));  // 0.001 dB steps
      break;
    case FE_SCALE_RELATIVE:
      o.Set("scale", "relative");
      o.Set("value", Napi::Number::New(env, static_cast<double>(s.uvalue) / 65535.0));  // 0..65535
      break;
    default:
      o.Set("scale", "counter");
      o.Set("value", Napi::Number::New(env, static_cast<double>(s.uvalue)));
      break;
  }
  return o;
}

}  // namespace

Napi::Function Frontend::DefineClass(Napi::Env env) {
  return ObjectWrap<Frontend>::DefineClass(env, "Frontend",
                                           {
                                               InstanceMethod<&Frontend::JS_info>("info"),
                                               InstanceMethod<&Frontend::JS_tune>("tune"),
                                               InstanceMethod<&Frontend::JS_status>("status"),
                                               InstanceMethod<&Frontend::JS_statistics>("statistics"),
                                               InstanceMethod<&Frontend::JS_close>("close"),
                                               InstanceAccessor<&Frontend::JS_getFd>("fd"),
                                           });
}

// new Frontend(path, { readOnly = false, simulation? })
Frontend::Frontend(const Napi::CallbackInfo& info) : ObjectWrap<Frontend>(info) {
  Napi::Env env = info.Env();
  path_ = ArgString(env, info[0], "path");
  Napi::Object options = info[1].IsUndefined() ? Napi::Object::New(env) : ArgObject(env, info[1], "options");
  bool read_only = OptBool(env, options, "readOnly", false);
  sys_ = SysFromOptions(env, options);
  int flags = (read_only ? O_RDONLY : O_RDWR) | O_NONBLOCK | O_CLOEXEC;
  fd_ = sys_->Open(path_.c_str(), flags);
  if (fd_ < 0) ThrowSysError(env, SysError(errno, "open", "", path_).Arg("flags", flags));
  AddonData::Get(env)->Register(this);
  registered_ = true;
}

Frontend::~Frontend() {
  if (fd_ >= 0) sys_->Close(fd_);
  if (registered_) AddonData::Get(Env())->Unregister(this);
}

void Frontend::CloseNow() {
  if (fd_ >= 0) sys_->Close(fd_);
  fd_ = -1;
  if (registered_) AddonData::Get(Env())->Unregister(this);
  registered_ = false;
}

void Frontend::CloseFromCleanup() {
  if (fd_ >= 0) sys_->Close(fd_);
  fd_ = -1;
  registered_ = false;
}

int Frontend::OpenFd(Napi::Env env) {
  if (fd_ < 0) ThrowSysError(env, SysError(EBADF, "ioctl", "", path_).Arg("closed", 1));
  return fd_;
}

Napi::Value Frontend::JS_info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  dvb_frontend_info fi;
  memset(&fi, 0, sizeof fi);
  if (sys_->Ioctl(OpenFd(env), FE_GET_INFO, &fi) < 0) ThrowSysError(env, SysError(errno, "ioctl", "FE_GET_INFO", path_));
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", std::string(fi.name, strnlen(fi.name, sizeof fi.name)));
  o.Set("frequencyMin", fi.frequency_min);
  o.Set("frequencyMax", fi.frequency_max);
  o.Set("caps", static_cast<uint32_t>(fi.caps));
  return o;
}

// tune({ deliverySystem: 'DVBT', frequency: 474000000, modulation?, symbolRate?, ... })
Napi::Value Frontend::JS_tune(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = ArgObject(env, info[0], "tuning");
  std::string ds = ArgString(env, o.Get("deliverySystem"), "tuning.deliverySystem");
  uint32_t delivery = UINT32_MAX;
  for (const auto& d : kDeliverySystems)
    if (ds == d.name) delivery = d.value;
  if (delivery == UINT32_MAX) ThrowRangeError(env, "tuning.deliverySystem '" + ds + "' is not a known delivery system");
  if (o.Get("frequency").IsUndefined()) ThrowTypeError(env, "tuning.frequency is required");

  std::vector<dtv_property> props;
  auto add = [&props](uint32_t cmd, uint32_t data) {
    dtv_property p;
    memset(&p, 0, sizeof p);
    p.cmd = cmd;
    p.u.data = data;
    props.push_back(p);
  };
  add(DTV_CLEAR, 0);
  add(DTV_DELIVERY_SYSTEM, delivery);
  for (const auto& tp : kTuneProperties) {
    Napi::Value v = o.Get(tp.name);
    if (v.IsUndefined()) continue;
    add(tp.cmd, ArgUint32(env, v, tp.name));
  }
  add(DTV_TUNE, 0);
  dtv_properties dp;
  dp.num = static_cast<uint32_t>(props.size());
  dp.props = props.data();
  if (sys_->Ioctl(OpenFd(env), FE_SET_PROPERTY, &dp) < 0) {
    SysError e(errno, "ioctl", "FE_SET_PROPERTY", path_);
    e.Arg("deliverySystem", delivery);
    for (const auto& p : props)
      if (p.cmd == DTV_FREQUENCY) e.Arg("frequency", p.u.data);
    if (e.err == EPERM) e.detail = "the frontend was opened read-only";
    ThrowSysError(env, e);
  }
  return env.Undefined();
}

// status() -> { raw, signal, carrier, viterbi, sync, lock, timedout }
Napi::Value Frontend::JS_status(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  fe_status_t st = static_cast<fe_status_t>(0);
  if (sys_->Ioctl(OpenFd(env), FE_READ_STATUS, &st) < 0)
    ThrowSysError(env, SysError(errno, "ioctl", "FE_READ_STATUS", path_));
  Napi::Object o = Napi::Object::New(env);
  o.Set("raw", static_cast<uint32_t>(st));
  o.Set("signal", (st & FE_HAS_SIGNAL) != 0);
  o.Set("carrier", (st & FE_HAS_CARRIER) != 0);
  o.Set("viterbi", (st & FE_HAS_VITERBI) != 0);
  o.Set("sync", (st & FE_HAS_SYNC) != 0);
  o.Set("lock", (st & FE_HAS_LOCK) != 0);
  o.Set("timedout", (st & FE_TIMEDOUT) != 0);
  return o;
}

// statistics() -> { signal, cnr, preErrorBits, preTotalBits, postErrorBits,
//                   postTotalBits, errorBlocks, totalBlocks } (each null or { scale, value })
Napi::Value Frontend::JS_statistics(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  static const PropertyName kStats[] = {
      {"signal", DTV_STAT_SIGNAL_STRENGTH},
      {"cnr", DTV_STAT_CNR},
      {"preErrorBits", DTV_STAT_PRE_ERROR_BIT_COUNT},
      {"preTotalBits", DTV_STAT_PRE_TOTAL_BIT_COUNT},
      {"postErrorBits", DTV_STAT_POST_ERROR_BIT_COUNT},
      {"postTotalBits", DTV_STAT_POST_TOTAL_BIT_COUNT},
      {"errorBlocks", DTV_STAT_ERROR_BLOCK_COUNT},
      {"totalBlocks", DTV_STAT_TOTAL_BLOCK_COUNT},
  };
  constexpr size_t n = sizeof kStats / sizeof kStats[0];
  dtv_property props[n];
  memset(props, 0, sizeof props);
  for (size_t i = 0; i < n; i++) props[i].cmd = kStats[i].cmd;
  dtv_properties dp;
  dp.num = n;
  dp.props = props;
  if (sys_->Ioctl(OpenFd(env), FE_GET_PROPERTY, &dp) < 0)
    ThrowSysError(env, SysError(errno, "ioctl", "FE_GET_PROPERTY", path_));
  Napi::Object o = Napi::Object::New(env);
  for (size_t i = 0; i < n; i++) o.Set(kStats[i].name, StatToJs(env, props[i]));
  return o;
}

Napi::Value Frontend::JS_close(const Napi::CallbackInfo& info) {
  CloseNow();
  return info.Env().Undefined();
}

Napi::Value Frontend::JS_getFd(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), fd_); }

}  // namespace dmx
