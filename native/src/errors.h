// JS errors with Node's shape. A failed syscall becomes a DmxError (the class
// agent/native/dmx-error.ts registers at load) carrying `code` ('EINVAL'),
// `errno` (negative, as Node's own errors), `syscall`, `request` (the ioctl
// name), `path`, `args`, and where the native layer knows more than the
// errno a `reason` (a cause code) and `prevented` (refused before the kernel
// saw it). Bad arguments become TypeError/RangeError before anything reaches
// the kernel.
#pragma once

#include <napi.h>

#include <string>

#include "sys_error.h"

namespace dmx {

Napi::Error MakeSysError(Napi::Env env, const SysError& error);
[[noreturn]] void ThrowSysError(Napi::Env env, const SysError& error);

// The same fields as a plain object (for events posted from native threads).
Napi::Object SysErrorToObject(Napi::Env env, const SysError& error);

// "DMX_EXPBUF failed on /dev/dvb/adapter0/demux0: EINVAL (Invalid argument)"
std::string SysErrorMessage(const SysError& error);

[[noreturn]] void ThrowTypeError(Napi::Env env, const std::string& message);
[[noreturn]] void ThrowRangeError(Napi::Env env, const std::string& message);

// Argument readers: each throws TypeError/RangeError naming `what`.
uint32_t ArgUint32(Napi::Env env, const Napi::Value& v, const char* what,
                   uint32_t min = 0, uint32_t max = UINT32_MAX);
int64_t ArgInt64(Napi::Env env, const Napi::Value& v, const char* what,
                 int64_t min, int64_t max);
std::string ArgString(Napi::Env env, const Napi::Value& v, const char* what);
Napi::Object ArgObject(Napi::Env env, const Napi::Value& v, const char* what);
bool ArgBool(Napi::Env env, const Napi::Value& v, const char* what);

// Reads an optional property: returns `fallback` when absent or undefined.
uint32_t OptUint32(Napi::Env env, const Napi::Object& o, const char* key,
                   uint32_t fallback, uint32_t min = 0,
                   uint32_t max = UINT32_MAX);
bool OptBool(Napi::Env env, const Napi::Object& o, const char* key,
             bool fallback);

}  // namespace dmx
