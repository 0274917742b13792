// Per-addon-instance state (one per Node environment / worker), set with
// SetInstanceData. Holds the cached constructors, the JS error class and the
// registry of live native objects the cleanup hook closes at teardown.
#pragma once

#include <napi.h>

#include <functional>
#include <mutex>
#include <set>

namespace dmx {

// Anything that owns fds or threads and must be shut down at environment
// teardown if JS never called close(). Close() must be idempotent.
class Closable {
 public:
  virtual ~Closable() = default;
  virtual void CloseFromCleanup() = 0;
  // Lower closes first: pumps (0) before sinks and decoders (1) before demux
  // pools and frontends (2) before simulations (3).
  virtual int CloseOrder() const = 0;
};

struct AddonData {
  Napi::FunctionReference error_class;  // agent/native/dmx-error.ts, set at load
  Napi::FunctionReference demux_ctor;
  Napi::FunctionReference frontend_ctor;
  Napi::FunctionReference decoder_ctor;
  Napi::FunctionReference consumer_sink_ctor;
  Napi::FunctionReference pump_ctor;
  Napi::FunctionReference simulation_ctor;

  std::set<Closable*> live;  // JS thread only

  static AddonData* Get(Napi::Env env) { return env.GetInstanceData<AddonData>(); }
  void Register(Closable* c) { live.insert(c); }
  void Unregister(Closable* c) { live.erase(c); }
};

// True when `value` is an instance of the class behind `ctor`.
inline bool IsInstanceOf(const Napi::Value& value, const Napi::FunctionReference& ctor) {
  return value.IsObject() && !ctor.IsEmpty() && value.As<Napi::Object>().InstanceOf(ctor.Value());
}

}  // namespace dmx
