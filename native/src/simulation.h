// JS class `Simulation`: a simulated receiver (DVB adapters with frontend,
// demux and DVR, and V4L2 memory-to-memory decoders) behind a SimSys. Objects
// opened with `{simulation}` in their options talk to it instead of the
// kernel. See native/src/sim/ for the device model.
#pragma once

#include <napi.h>

#include <memory>

#include "addon.h"
#include "sys/sys.h"

namespace dmx {

class SimSys;

class Simulation : public Napi::ObjectWrap<Simulation>, public Closable {
 public:
  static Napi::Function DefineClass(Napi::Env env);
  // The Simulation behind `value`, or nullptr when it is not one.
  static Simulation* FromValue(Napi::Env env, const Napi::Value& value);

  explicit Simulation(const Napi::CallbackInfo& info);
  ~Simulation() override;

  // The backend for objects opened against this simulation. Stays valid
  // after close() (its devices then answer ENODEV).
  std::shared_ptr<Sys> sys() const;

  void CloseFromCleanup() override;
  int CloseOrder() const override { return 3; }

 private:
  Napi::Value JS_injectFault(const Napi::CallbackInfo& info);
  Napi::Value JS_setBitrate(const Napi::CallbackInfo& info);
  Napi::Value JS_removeDevice(const Napi::CallbackInfo& info);
  Napi::Value JS_restoreDevice(const Napi::CallbackInfo& info);
  Napi::Value JS_stats(const Napi::CallbackInfo& info);
  Napi::Value JS_close(const Napi::CallbackInfo& info);

  // Throws unless `value` names an adapter of this simulation.
  int AdapterArg(const Napi::Value& value, const char* name) const;
  void ThrowIfClosed(Napi::Env env) const;
  // Leaves the addon's registry (once; never after the cleanup hook ran).
  void Unregister();

  std::shared_ptr<SimSys> sim_;
  AddonData* addon_ = nullptr;  // set while registered in addon_->live
};

}  // namespace dmx
