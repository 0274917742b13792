// ConsumerSink: the JS face of ConsumerSinkCore. Validates options, creates
// the listening socket in the constructor (so a bad path throws there, with
// Node's error shape), and exposes stats()/close()/socketPath.
#include "consumer_sink.h"

#include <string>
#include <utility>

#include "errors.h"

namespace dmx {

namespace {

constexpr uint32_t kMaxStreamId = 31;        // fits the 32-byte wire field with its NUL
constexpr uint32_t kMaxMaxInFlight = 65535;
constexpr uint32_t kMaxHoldTimeoutMs = 3600000;
constexpr size_t kMaxSocketPath = 107;       // sizeof(sun_path) - 1

bool IsStreamIdChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

ConsumerSinkOptions ParseOptions(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = ArgObject(env, info[0], "options");
  ConsumerSinkOptions opts;

  opts.socket_path = ArgString(env, o.Get("socketPath"), "options.socketPath");
  const std::string& p = opts.socket_path;
  if (p.empty() || p == "@") ThrowRangeError(env, "options.socketPath must not be empty");
  if (p.find('\0') != std::string::npos)
    ThrowRangeError(env, "options.socketPath must not contain NUL characters");
  // A path needs its NUL inside sun_path; an abstract name ("@name") takes
  // the place of the leading 0 and needs none.
  size_t room = p[0] == '@' ? kMaxSocketPath + 1 : kMaxSocketPath;
  if (p.size() > room)
    ThrowRangeError(env, "options.socketPath is " + std::to_string(p.size()) +
                             " bytes; a Unix socket path has room for " + std::to_string(room));

  opts.stream_id = ArgString(env, o.Get("streamId"), "options.streamId");
  const std::string& id = opts.stream_id;
  if (id.empty() || id.size() > kMaxStreamId)
    ThrowRangeError(env, "options.streamId must be 1 to " + std::to_string(kMaxStreamId) +
                             " characters, got " + std::to_string(id.size()));
  for (char c : id) {
    if (!IsStreamIdChar(c))
      ThrowRangeError(env, "options.streamId may only contain A-Z a-z 0-9 . _ -");
  }

  Napi::Value v = o.Get("maxInFlight");
  if (!v.IsUndefined()) opts.max_in_flight = ArgUint32(env, v, "options.maxInFlight", 1, kMaxMaxInFlight);
  v = o.Get("holdTimeoutMs");
  if (!v.IsUndefined())
    opts.hold_timeout_ms = ArgUint32(env, v, "options.holdTimeoutMs", 1, kMaxHoldTimeoutMs);
  return opts;
}

}  // namespace

Napi::Function ConsumerSink::DefineClass(Napi::Env env) {
  return ObjectWrap<ConsumerSink>::DefineClass(
      env, "ConsumerSink",
      {
          InstanceMethod<&ConsumerSink::JS_stats>("stats"),
          InstanceMethod<&ConsumerSink::JS_close>("close"),
          InstanceAccessor<&ConsumerSink::JS_getSocketPath>("socketPath"),
      });
}

ConsumerSink* ConsumerSink::FromValue(Napi::Env env, const Napi::Value& value) {
  AddonData* addon = AddonData::Get(env);
  if (addon == nullptr || !IsInstanceOf(value, addon->consumer_sink_ctor)) return nullptr;
  return ObjectWrap<ConsumerSink>::Unwrap(value.As<Napi::Object>());
}

ConsumerSink::ConsumerSink(const Napi::CallbackInfo& info) : ObjectWrap<ConsumerSink>(info) {
  Napi::Env env = info.Env();
  auto core = std::make_shared<ConsumerSinkCore>(ParseOptions(info));
  SysError error;
  if (!core->Listen(&error)) throw MakeSysError(env, error);
  core_ = std::move(core);
  addon_ = AddonData::Get(env);
  if (addon_ != nullptr) addon_->Register(this);
}

ConsumerSink::~ConsumerSink() { CloseHandles(); }

void ConsumerSink::CloseHandles() {
  if (addon_ != nullptr) {
    addon_->Unregister(this);
    addon_ = nullptr;
  }
  if (core_) core_->Close();
}

void ConsumerSink::CloseFromCleanup() {
  addon_ = nullptr;  // the hook owns AddonData::live now
  if (core_) core_->Close();
}

Napi::Value ConsumerSink::JS_stats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ConsumerSinkStats s = core_->Snapshot();
  Napi::Object o = Napi::Object::New(env);
  auto num = [&](const char* key, double value) { o.Set(key, Napi::Number::New(env, value)); };
  num("connects", static_cast<double>(s.connects));
  num("rejects", static_cast<double>(s.rejects));
  num("disconnects", static_cast<double>(s.disconnects));
  num("buffersSent", static_cast<double>(s.buffers_sent));
  num("bytesSent", static_cast<double>(s.bytes_sent));
  num("released", static_cast<double>(s.released));
  num("lateReleases", static_cast<double>(s.late_releases));
  num("recoveredOnDisconnect", static_cast<double>(s.recovered_on_disconnect));
  num("recoveredOnStop", static_cast<double>(s.recovered_on_stop));
  num("timeouts", static_cast<double>(s.timeouts));
  num("protocolErrors", static_cast<double>(s.protocol_errors));
  num("backpressure", static_cast<double>(s.backpressure));
  num("declinedNoPlayer", static_cast<double>(s.declined_no_player));
  num("declinedInFlight", static_cast<double>(s.declined_in_flight));
  num("sendErrors", static_cast<double>(s.send_errors));
  num("held", s.held);
  num("maxHeld", s.max_held);
  num("maxInFlight", s.max_in_flight);  // 0: no limit (pool size not known yet)
  num("holdTimeoutMs", s.hold_timeout_ms);
  num("epoch", s.epoch);
  o.Set("listening", Napi::Boolean::New(env, s.listening));
  o.Set("connected", Napi::Boolean::New(env, s.connected));
  // Absent while nobody is connected (agent/native/bindings.ts: optional).
  if (s.connected) {
    num("peerPid", s.peer_pid);
    num("peerUid", s.peer_uid);
    num("peerGid", s.peer_gid);
  }
  return o;
}

Napi::Value ConsumerSink::JS_close(const Napi::CallbackInfo& info) {
  CloseHandles();
  return info.Env().Undefined();
}

Napi::Value ConsumerSink::JS_getSocketPath(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), core_->socket_path());
}

}  // namespace dmx
