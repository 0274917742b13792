// JS class Simulation: validates its options into a SimConfig, owns the
// SimSys, and exposes the control surface (faults, rate, hot-unplug,
// stats). Every argument is checked here, so that a wrong call fails with
// a TypeError or RangeError naming the option, and nothing is built before
// everything checked out.
#include "simulation.h"

#include <errno.h>
#include <string.h>

#include <cmath>
#include <set>
#include <stdexcept>
#include <string>

#include "sim/sim_sys.h"

namespace dmx {

namespace {

constexpr double kMaxBitrate = 10e9;

[[noreturn]] void ThrowType(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

[[noreturn]] void ThrowRange(Napi::Env env, const std::string& message) {
  throw Napi::RangeError::New(env, message);
}

bool IsMissing(const Napi::Value& v) { return v.IsUndefined(); }

Napi::Object ObjectAt(Napi::Env env, const Napi::Value& v,
                      const std::string& name) {
  if (!v.IsObject() || v.IsArray() || v.IsFunction())
    ThrowType(env, name + " must be an object");
  return v.As<Napi::Object>();
}

Napi::Array ArrayAt(Napi::Env env, const Napi::Value& v,
                    const std::string& name) {
  if (!v.IsArray()) ThrowType(env, name + " must be an array");
  return v.As<Napi::Array>();
}

double NumberAt(Napi::Env env, const Napi::Value& v, const std::string& name) {
  if (!v.IsNumber()) ThrowType(env, name + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d)) ThrowRange(env, name + " must be a finite number");
  return d;
}

// An integer in [min, max]; `what` completes "must be ...".
int64_t IntegerAt(Napi::Env env, const Napi::Value& v, const std::string& name,
                  int64_t min, int64_t max, const std::string& what) {
  double d = NumberAt(env, v, name);
  if (d != std::floor(d) || d < static_cast<double>(min) ||
      d > static_cast<double>(max))
    ThrowRange(env, name + " must be " + what);
  return static_cast<int64_t>(d);
}

bool BoolAt(Napi::Env env, const Napi::Value& v, const std::string& name) {
  if (!v.IsBoolean()) ThrowType(env, name + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

std::string StringAt(Napi::Env env, const Napi::Value& v,
                     const std::string& name) {
  if (!v.IsString()) ThrowType(env, name + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

uint64_t BitrateAt(Napi::Env env, const Napi::Value& v,
                   const std::string& name) {
  double d = NumberAt(env, v, name);
  if (d < 1 || d > kMaxBitrate)
    ThrowRange(env, name +
                        " must be a positive number of bits per second (at "
                        "most 10 Gbit/s)");
  return static_cast<uint64_t>(std::llround(d));
}

std::string Hex(int v) {
  char buf[16];
  snprintf(buf, sizeof(buf), "0x%x", v);
  return buf;
}

SimStreamConfig ParseStream(Napi::Env env, const Napi::Value& value,
                            const std::string& at) {
  Napi::Object o = ObjectAt(env, value, at);
  SimStreamConfig s;
  s.pid = static_cast<uint16_t>(IntegerAt(env, o.Get("pid"), at + ".pid", 0x10,
                                          0x1FFE, "a PID from 0x10 to 0x1ffe"));
  std::string type = StringAt(env, o.Get("type"), at + ".type");
  if (type == "video")
    s.type = SimStreamConfig::Type::kVideo;
  else if (type == "audio")
    s.type = SimStreamConfig::Type::kAudio;
  else if (type == "data")
    s.type = SimStreamConfig::Type::kData;
  else
    ThrowRange(env, at + ".type must be 'video', 'audio' or 'data'");
  s.share = NumberAt(env, o.Get("share"), at + ".share");
  if (s.share < 0 || s.share > 1)
    ThrowRange(env, at + ".share must be a fraction of the bitrate from 0 to 1");
  return s;
}

SimSourceConfig ParseSource(Napi::Env env, const Napi::Value& value,
                            const std::string& at) {
  SimSourceConfig c;
  if (IsMissing(value)) return c;
  Napi::Object o = ObjectAt(env, value, at);
  std::string kind = StringAt(env, o.Get("kind"), at + ".kind");
  if (kind == "file") {
    c.kind = SimSourceConfig::Kind::kFile;
    c.path = StringAt(env, o.Get("path"), at + ".path");
    if (c.path.empty()) ThrowRange(env, at + ".path must not be empty");
    if (!IsMissing(o.Get("bitrate")))
      c.bitrate = BitrateAt(env, o.Get("bitrate"), at + ".bitrate");
    return c;
  }
  if (kind != "synthetic")
    ThrowRange(env, at + ".kind must be 'synthetic' or 'file'");
  if (!IsMissing(o.Get("bitrate")))
    c.bitrate = BitrateAt(env, o.Get("bitrate"), at + ".bitrate");
  Napi::Value programs = o.Get("programs");
  if (IsMissing(programs)) return c;
  Napi::Array list = ArrayAt(env, programs, at + ".programs");
  if (list.Length() == 0)
    ThrowRange(env, at + ".programs must hold at least one program");
  std::set<int> pids, numbers;
  double share = 0;
  for (uint32_t i = 0; i < list.Length(); ++i) {
    std::string pat = at + ".programs[" + std::to_string(i) + "]";
    Napi::Object p = ObjectAt(env, list.Get(i), pat);
    SimProgramConfig prog;
    prog.number = static_cast<uint16_t>(IntegerAt(
        env, p.Get("number"), pat + ".number", 1, 65535,
        "an integer from 1 to 65535"));
    if (!numbers.insert(prog.number).second)
      ThrowRange(env, pat + ".number " + std::to_string(prog.number) +
                          " is used twice");
    prog.pmt_pid = static_cast<uint16_t>(IntegerAt(
        env, p.Get("pmtPid"), pat + ".pmtPid", 0x10, 0x1FFE,
        "a PID from 0x10 to 0x1ffe"));
    if (!pids.insert(prog.pmt_pid).second)
      ThrowRange(env, pat + ".pmtPid " + Hex(prog.pmt_pid) + " is used twice");
    Napi::Array streams = ArrayAt(env, p.Get("streams"), pat + ".streams");
    if (streams.Length() == 0)
      ThrowRange(env, pat + ".streams must hold at least one stream");
    for (uint32_t k = 0; k < streams.Length(); ++k) {
      std::string sat = pat + ".streams[" + std::to_string(k) + "]";
      SimStreamConfig s = ParseStream(env, streams.Get(k), sat);
      if (!pids.insert(s.pid).second)
        ThrowRange(env, sat + ".pid " + Hex(s.pid) + " is used twice");
      share += s.share;
      prog.streams.push_back(s);
    }
    c.programs.push_back(std::move(prog));
  }
  if (share > 1 + 1e-9)
    ThrowRange(env, at + ".programs: the stream shares add up to more than 1");
  return c;
}

SimAdapterConfig ParseAdapter(Napi::Env env, const Napi::Value& value,
                              uint32_t index) {
  std::string at = "adapters[" + std::to_string(index) + "]";
  Napi::Object o = ObjectAt(env, value, at);
  SimAdapterConfig a;
  a.adapter = static_cast<int>(index);
  if (!IsMissing(o.Get("adapter")))
    a.adapter = static_cast<int>(IntegerAt(env, o.Get("adapter"),
                                           at + ".adapter", 0, 255,
                                           "an integer from 0 to 255"));
  if (!IsMissing(o.Get("mmap"))) a.mmap = BoolAt(env, o.Get("mmap"), at + ".mmap");
  if (!IsMissing(o.Get("exportable")))
    a.exportable = BoolAt(env, o.Get("exportable"), at + ".exportable");
  if (!IsMissing(o.Get("requireTune")))
    a.require_tune = BoolAt(env, o.Get("requireTune"), at + ".requireTune");
  if (!IsMissing(o.Get("tuneDelayMs")))
    a.tune_delay_ms = static_cast<int>(IntegerAt(
        env, o.Get("tuneDelayMs"), at + ".tuneDelayMs", 0, 60000,
        "an integer number of milliseconds from 0 to 60000"));
  if (!IsMissing(o.Get("tscheck")))
    a.tscheck = BoolAt(env, o.Get("tscheck"), at + ".tscheck");
  a.source = ParseSource(env, o.Get("source"), at + ".source");
  return a;
}

uint32_t FourccAt(Napi::Env env, const Napi::Value& v, const std::string& name) {
  std::string s = StringAt(env, v, name);
  if (s.size() != 4) ThrowRange(env, name + " must be four characters");
  return static_cast<uint32_t>(static_cast<uint8_t>(s[0])) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[1])) << 8) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[2])) << 16) |
         (static_cast<uint32_t>(static_cast<uint8_t>(s[3])) << 24);
}

SimDecoderConfig ParseDecoder(Napi::Env env, const Napi::Value& value,
                              uint32_t index) {
  std::string at = "decoders[" + std::to_string(index) + "]";
  Napi::Object o = ObjectAt(env, value, at);
  SimDecoderConfig d;
  if (!IsMissing(o.Get("name"))) {
    d.name = StringAt(env, o.Get("name"), at + ".name");
    if (d.name.empty() || d.name.size() > 31)
      ThrowRange(env, at + ".name must be 1 to 31 characters");
  }
  if (!IsMissing(o.Get("processingDelayMs")))
    d.processing_delay_ms = static_cast<int>(IntegerAt(
        env, o.Get("processingDelayMs"), at + ".processingDelayMs", 0, 10001,
        "an integer number of milliseconds from 0 to 10001"));
  if (!IsMissing(o.Get("contiguous")))
    d.contiguous = BoolAt(env, o.Get("contiguous"), at + ".contiguous");
  Napi::Value memory = o.Get("outputMemory");
  if (!IsMissing(memory)) {
    Napi::Array list = ArrayAt(env, memory, at + ".outputMemory");
    if (list.Length() == 0)
      ThrowRange(env, at + ".outputMemory must hold at least one memory type");
    d.output_memory = 0;
    for (uint32_t k = 0; k < list.Length(); ++k) {
      std::string mat = at + ".outputMemory[" + std::to_string(k) + "]";
      std::string m = StringAt(env, list.Get(k), mat);
      uint32_t bit;
      if (m == "mmap")
        bit = 0x1;  // V4L2_BUF_CAP_SUPPORTS_MMAP
      else if (m == "userptr")
        bit = 0x2;  // V4L2_BUF_CAP_SUPPORTS_USERPTR
      else if (m == "dmabuf")
        bit = 0x4;  // V4L2_BUF_CAP_SUPPORTS_DMABUF
      else
        ThrowRange(env, mat + " must be 'mmap', 'userptr' or 'dmabuf'");
      if (d.output_memory & bit) ThrowRange(env, mat + " '" + m + "' is listed twice");
      d.output_memory |= bit;
    }
  }
  Napi::Value formats = o.Get("compressedFormats");
  if (!IsMissing(formats)) {
    Napi::Array list = ArrayAt(env, formats, at + ".compressedFormats");
    std::set<uint32_t> seen;
    for (uint32_t k = 0; k < list.Length(); ++k) {
      std::string fat = at + ".compressedFormats[" + std::to_string(k) + "]";
      Napi::Object f = ObjectAt(env, list.Get(k), fat);
      SimCompressedFormat cf;
      cf.fourcc = FourccAt(env, f.Get("fourcc"), fat + ".fourcc");
      if (!seen.insert(cf.fourcc).second)
        ThrowRange(env, fat + ".fourcc is used twice");
      cf.sizeimage = static_cast<uint32_t>(
          IntegerAt(env, f.Get("sizeimage"), fat + ".sizeimage", 1,
                    16 * 1024 * 1024, "an integer from 1 to 16777216 bytes"));
      d.compressed_formats.push_back(cf);
    }
  }
  return d;
}

SimConfig ParseOptions(Napi::Env env, const Napi::Value& value) {
  SimConfig c = SimConfig::Default();
  if (IsMissing(value)) return c;
  Napi::Object o = ObjectAt(env, value, "options");
  Napi::Value adapters = o.Get("adapters");
  if (!IsMissing(adapters)) {
    Napi::Array list = ArrayAt(env, adapters, "options.adapters");
    c.adapters.clear();
    std::set<int> numbers;
    for (uint32_t i = 0; i < list.Length(); ++i) {
      SimAdapterConfig a = ParseAdapter(env, list.Get(i), i);
      if (!numbers.insert(a.adapter).second)
        ThrowRange(env, "adapters[" + std::to_string(i) + "].adapter " +
                            std::to_string(a.adapter) + " is used twice");
      c.adapters.push_back(std::move(a));
    }
  }
  Napi::Value decoders = o.Get("decoders");
  if (!IsMissing(decoders)) {
    Napi::Array list = ArrayAt(env, decoders, "options.decoders");
    c.decoders.clear();
    for (uint32_t i = 0; i < list.Length(); ++i)
      c.decoders.push_back(ParseDecoder(env, list.Get(i), i));
  }
  return c;
}

SimFault ParseFault(Napi::Env env, const Napi::Value& value) {
  Napi::Object o = ObjectAt(env, value, "fault");
  SimFault f;
  std::string kind = StringAt(env, o.Get("kind"), "fault.kind");
  if (kind == "cc-gap")
    f.kind = SimFault::Kind::kCcGap;
  else if (kind == "tei")
    f.kind = SimFault::Kind::kTei;
  else if (kind == "crc-discard")
    f.kind = SimFault::Kind::kCrcDiscard;
  else if (kind == "stall")
    f.kind = SimFault::Kind::kStall;
  else if (kind == "burst")
    f.kind = SimFault::Kind::kBurst;
  else if (kind == "alloc-fail")
    f.kind = SimFault::Kind::kAllocFail;
  else if (kind == "hang")
    f.kind = SimFault::Kind::kHang;
  else
    ThrowRange(env,
               "fault.kind must be 'cc-gap', 'tei', 'crc-discard', 'stall', "
               "'burst', 'alloc-fail' or 'hang'");
  if (!IsMissing(o.Get("pid")))
    f.pid = static_cast<int>(IntegerAt(env, o.Get("pid"), "fault.pid", 0,
                                       0x1FFF, "a PID from 0 to 0x1fff"));
  if (!IsMissing(o.Get("count")))
    f.count = static_cast<uint32_t>(IntegerAt(env, o.Get("count"),
                                              "fault.count", 1, 1000000,
                                              "an integer from 1 to 1000000"));
  if (!IsMissing(o.Get("durationMs")))
    f.duration_ms = static_cast<uint32_t>(
        IntegerAt(env, o.Get("durationMs"), "fault.durationMs", 1, 3600000,
                  "an integer number of milliseconds from 1 to 3600000"));
  if (!IsMissing(o.Get("factor"))) {
    f.factor = NumberAt(env, o.Get("factor"), "fault.factor");
    if (f.factor <= 0 || f.factor > 1000)
      ThrowRange(env, "fault.factor must be a rate multiplier above 0, at "
                      "most 1000");
  }
  return f;
}

Napi::Object FilterToJs(Napi::Env env, const SimFilterStats& s) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("path", s.path);
  o.Set("pid", s.pid);
  o.Set("bytesDelivered", static_cast<double>(s.bytes_delivered));
  o.Set("bytesDroppedNoBuffer", static_cast<double>(s.bytes_dropped_no_buffer));
  o.Set("streaming", s.streaming);
  o.Set("dead", s.dead);
  return o;
}

}  // namespace

Napi::Function Simulation::DefineClass(Napi::Env env) {
  return ObjectWrap<Simulation>::DefineClass(
      env, "Simulation",
      {
          InstanceMethod<&Simulation::JS_injectFault>("injectFault"),
          InstanceMethod<&Simulation::JS_setBitrate>("setBitrate"),
          InstanceMethod<&Simulation::JS_removeDevice>("removeDevice"),
          InstanceMethod<&Simulation::JS_restoreDevice>("restoreDevice"),
          InstanceMethod<&Simulation::JS_stats>("stats"),
          InstanceMethod<&Simulation::JS_close>("close"),
      });
}

Simulation* Simulation::FromValue(Napi::Env env, const Napi::Value& value) {
  AddonData* data = AddonData::Get(env);
  if (!data || !IsInstanceOf(value, data->simulation_ctor)) return nullptr;
  return Simulation::Unwrap(value.As<Napi::Object>());
}

Simulation::Simulation(const Napi::CallbackInfo& info)
    : Napi::ObjectWrap<Simulation>(info) {
  Napi::Env env = info.Env();
  SimConfig config = ParseOptions(env, info[0]);
  // The parse above covered every rule; SimSys checks again and is the only
  // one that can tell whether a source file is readable.
  try {
    sim_ = std::make_shared<SimSys>(std::move(config));
  } catch (const std::invalid_argument& e) {
    throw Napi::Error::New(env, e.what());
  }
  addon_ = AddonData::Get(env);
  if (addon_) addon_->Register(this);
}

Simulation::~Simulation() {
  // The SimSys lives on while Demux, Decoder... objects still use it; it
  // closes itself when the last of them lets go.
  Unregister();
}

std::shared_ptr<Sys> Simulation::sys() const { return sim_; }

void Simulation::Unregister() {
  if (addon_) addon_->Unregister(this);
  addon_ = nullptr;
}

void Simulation::CloseFromCleanup() {
  // The cleanup hook owns the registry while it runs: do not touch it.
  addon_ = nullptr;
  sim_->Close();
}

void Simulation::ThrowIfClosed(Napi::Env env) const {
  if (sim_->closed()) throw Napi::Error::New(env, "the simulation is closed");
}

int Simulation::AdapterArg(const Napi::Value& value, const char* name) const {
  Napi::Env env = value.Env();
  int adapter = static_cast<int>(
      IntegerAt(env, value, name, 0, 255, "an integer from 0 to 255"));
  for (const SimAdapterConfig& a : sim_->config().adapters)
    if (a.adapter == adapter) return adapter;
  ThrowRange(env, std::string(name) + ": adapter " + std::to_string(adapter) +
                      " does not exist in this simulation");
}

Napi::Value Simulation::JS_injectFault(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int adapter = AdapterArg(info[0], "adapter");
  SimFault fault = ParseFault(env, info[1]);
  ThrowIfClosed(env);
  int r = sim_->InjectFault(adapter, fault);
  if (r < 0) throw Napi::Error::New(env, std::string("injectFault: ") + strerror(-r));
  return env.Undefined();
}

Napi::Value Simulation::JS_setBitrate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int adapter = AdapterArg(info[0], "adapter");
  uint64_t bps = BitrateAt(env, info[1], "bitsPerSecond");
  ThrowIfClosed(env);
  int r = sim_->SetBitrate(adapter, bps);
  if (r < 0) throw Napi::Error::New(env, std::string("setBitrate: ") + strerror(-r));
  return env.Undefined();
}

Napi::Value Simulation::JS_removeDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringAt(env, info[0], "path");
  ThrowIfClosed(env);
  int r = sim_->RemoveDevice(path);
  if (r == -ENOENT)
    ThrowRange(env, "path " + path + " is not a device of this simulation");
  if (r < 0) throw Napi::Error::New(env, std::string("removeDevice: ") + strerror(-r));
  return env.Undefined();
}

Napi::Value Simulation::JS_restoreDevice(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = StringAt(env, info[0], "path");
  ThrowIfClosed(env);
  int r = sim_->RestoreDevice(path);
  if (r == -ENOENT)
    ThrowRange(env, "path " + path + " is not a device of this simulation");
  if (r < 0)
    throw Napi::Error::New(env, "restoreDevice: " + path + ": " + strerror(-r));
  return env.Undefined();
}

Napi::Value Simulation::JS_stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  SimStats stats = sim_->Stats();
  Napi::Array adapters = Napi::Array::New(env, stats.adapters.size());
  for (size_t i = 0; i < stats.adapters.size(); ++i) {
    const SimAdapterStats& a = stats.adapters[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("adapter", a.adapter);
    o.Set("packetsProduced", static_cast<double>(a.packets_produced));
    o.Set("bytesProduced", static_cast<double>(a.bytes_produced));
    o.Set("bytesDelivered", static_cast<double>(a.bytes_delivered));
    o.Set("bytesDroppedNoBuffer",
          static_cast<double>(a.bytes_dropped_no_buffer));
    Napi::Array filters = Napi::Array::New(env, a.filters.size());
    for (size_t k = 0; k < a.filters.size(); ++k)
      filters.Set(static_cast<uint32_t>(k), FilterToJs(env, a.filters[k]));
    o.Set("filters", filters);
    adapters.Set(static_cast<uint32_t>(i), o);
  }
  Napi::Array decoders = Napi::Array::New(env, stats.decoders.size());
  for (size_t i = 0; i < stats.decoders.size(); ++i) {
    const SimDecoderStats& d = stats.decoders[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("path", d.path);
    o.Set("name", d.name);
    o.Set("outputImported", static_cast<double>(d.output_imported));
    o.Set("importRejected", static_cast<double>(d.import_rejected));
    o.Set("jobsDone", static_cast<double>(d.jobs_done));
    decoders.Set(static_cast<uint32_t>(i), o);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("adapters", adapters);
  result.Set("decoders", decoders);
  return result;
}

Napi::Value Simulation::JS_close(const Napi::CallbackInfo& info) {
  sim_->Close();
  Unregister();
  return info.Env().Undefined();
}

}  // namespace dmx
