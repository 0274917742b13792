// Chooses the Sys an object opens its device through: the simulation passed
// as `options.simulation`, or the kernel.
#pragma once

#include <napi.h>

#include <memory>

#include "sys/sys.h"

namespace dmx {

// Throws a TypeError when options.simulation is set but is not a Simulation.
std::shared_ptr<Sys> SysFromOptions(Napi::Env env, const Napi::Object& options);

}  // namespace dmx
