// Module entry: registers the classes, keeps per-environment state, and
// closes whatever JS left open when the environment tears down (pumps first,
// then sinks and decoders, then demux pools and frontends, then simulations).
#include "addon.h"

#include <algorithm>
#include <vector>

#include "consumer_sink.h"
#include "decoder.h"
#include "demux.h"
#include "frontend.h"
#include "pump.h"
#include "sd_notify.h"
#include "simulation.h"

namespace dmx {

namespace {

void Cleanup(void* arg) {
  auto* data = static_cast<AddonData*>(arg);
  std::vector<Closable*> open(data->live.begin(), data->live.end());
  std::stable_sort(open.begin(), open.end(),
                   [](Closable* a, Closable* b) { return a->CloseOrder() < b->CloseOrder(); });
  for (Closable* c : open) c->CloseFromCleanup();
  data->live.clear();
}

// setErrorClass(DmxError): the JS class every failed syscall is thrown as.
Napi::Value SetErrorClass(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) throw Napi::TypeError::New(info.Env(), "setErrorClass expects a class");
  AddonData::Get(info.Env())->error_class = Napi::Persistent(info[0].As<Napi::Function>());
  return info.Env().Undefined();
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData<AddonData>(data);
  // Runs before the instance data is deleted (hooks run in reverse order of
  // registration, instance data finalizers after them).
  napi_add_env_cleanup_hook(env, Cleanup, data);

  Napi::Function demux = Demux::DefineClass(env);
  Napi::Function frontend = Frontend::DefineClass(env);
  Napi::Function decoder = Decoder::DefineClass(env);
  Napi::Function consumer = ConsumerSink::DefineClass(env);
  Napi::Function pump = Pump::DefineClass(env);
  Napi::Function simulation = Simulation::DefineClass(env);
  data->demux_ctor = Napi::Persistent(demux);
  data->frontend_ctor = Napi::Persistent(frontend);
  data->decoder_ctor = Napi::Persistent(decoder);
  data->consumer_sink_ctor = Napi::Persistent(consumer);
  data->pump_ctor = Napi::Persistent(pump);
  data->simulation_ctor = Napi::Persistent(simulation);

  exports.Set("Demux", demux);
  exports.Set("Frontend", frontend);
  exports.Set("Decoder", decoder);
  exports.Set("ConsumerSink", consumer);
  exports.Set("Pump", pump);
  exports.Set("Simulation", simulation);
  exports.Set("sdNotify", Napi::Function::New(env, JS_sdNotify, "sdNotify"));
  exports.Set("setErrorClass", Napi::Function::New(env, SetErrorClass, "setErrorClass"));
  return exports;
}

}  // namespace

}  // namespace dmx

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return dmx::Init(env, exports); }

NODE_API_MODULE(dmx_native, InitModule)
