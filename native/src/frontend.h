// A DVB frontend: tune by DTV properties, lock status, DVBv5 statistics.
#pragma once

#include <napi.h>

#include <memory>
#include <mutex>
#include <string>

#include "addon.h"
#include "sys/sys.h"

namespace dmx {

class Frontend : public Napi::ObjectWrap<Frontend>, public Closable {
 public:
  static Napi::Function DefineClass(Napi::Env env);
  explicit Frontend(const Napi::CallbackInfo& info);
  ~Frontend() override;

  void CloseFromCleanup() override;
  int CloseOrder() const override { return 2; }

 private:
  int OpenFd(Napi::Env env);
  Napi::Value JS_info(const Napi::CallbackInfo& info);
  Napi::Value JS_tune(const Napi::CallbackInfo& info);
  Napi::Value JS_status(const Napi::CallbackInfo& info);
  Napi::Value JS_statistics(const Napi::CallbackInfo& info);
  Napi::Value JS_close(const Napi::CallbackInfo& info);
  Napi::Value JS_getFd(const Napi::CallbackInfo& info);
  void CloseNow();

  std::shared_ptr<Sys> sys_;
  std::string path_;
  int fd_ = -1;
  bool registered_ = false;
};

}  // namespace dmx
