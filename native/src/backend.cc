#include "backend.h"

#include "simulation.h"

namespace dmx {

std::shared_ptr<Sys> SysFromOptions(Napi::Env env,
                                    const Napi::Object& options) {
  Napi::Value value = options.Get("simulation");
  if (value.IsUndefined()) return KernelSysInstance();
  Simulation* simulation = Simulation::FromValue(env, value);
  if (!simulation)
    throw Napi::TypeError::New(env, "options.simulation must be a Simulation");
  return simulation->sys();
}

}  // namespace dmx
