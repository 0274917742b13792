// JS class `ConsumerSink`: the external consumer sink (a player process on a
// Unix socket, see native/docs/consumer-protocol.md). The socket work is in
// ConsumerSinkCore (consumer_sink_core.{h,cc}, no Napi); this class owns one
// core, shared with the pump that drives it.
//
//   new ConsumerSink({ socketPath, streamId, maxInFlight?, holdTimeoutMs? })
//   sink.stats()      -> snapshot of the counters (plain object)
//   sink.close()      -> closes the socket and unlinks its file; idempotent
//   sink.socketPath   -> the path as given ("@name" for an abstract name)
#pragma once

#include <napi.h>

#include <memory>

#include "addon.h"
#include "consumer_sink_core.h"

namespace dmx {

class ConsumerSink : public Napi::ObjectWrap<ConsumerSink>, public Closable {
 public:
  static Napi::Function DefineClass(Napi::Env env);
  // The ConsumerSink behind `value`, or nullptr when it is not one.
  static ConsumerSink* FromValue(Napi::Env env, const Napi::Value& value);

  explicit ConsumerSink(const Napi::CallbackInfo& info);
  ~ConsumerSink() override;

  // The core the pump drives. Stays valid (and safe to call) after close();
  // a closed core declines every buffer.
  std::shared_ptr<ConsumerSinkCore> core() const { return core_; }

  // Teardown hook (addon.cc): closes without touching AddonData::live, which
  // the hook itself is walking and then clears.
  void CloseFromCleanup() override;
  int CloseOrder() const override { return 1; }

 private:
  Napi::Value JS_stats(const Napi::CallbackInfo& info);
  Napi::Value JS_close(const Napi::CallbackInfo& info);
  Napi::Value JS_getSocketPath(const Napi::CallbackInfo& info);

  // Closes the core and leaves AddonData::live. Idempotent.
  void CloseHandles();

  std::shared_ptr<ConsumerSinkCore> core_;
  // Non-null while registered in AddonData::live.
  AddonData* addon_ = nullptr;
};

}  // namespace dmx
