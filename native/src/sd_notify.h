// systemd's notify protocol: one datagram to $NOTIFY_SOCKET (a path, or an
// abstract socket written with a leading '@').
#pragma once

#include <napi.h>

namespace dmx {

// notify(state, socketPath = process.env.NOTIFY_SOCKET) -> boolean (false
// when there is no socket to notify: not run by systemd).
Napi::Value JS_sdNotify(const Napi::CallbackInfo& info);

}  // namespace dmx
