#include "errors.h"

#include <errno.h>
#include <string.h>

#include <cmath>

#include "addon.h"

namespace dmx {

const char* ErrnoName(int err) {
  // The errnos the media path can produce; anything else falls back to E<n>.
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case ENXIO: return "ENXIO";
    case E2BIG: return "E2BIG";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENFILE: return "ENFILE";
    case EMFILE: return "EMFILE";
    case ENOTTY: return "ENOTTY";
    case EFBIG: return "EFBIG";
    case ENOSPC: return "ENOSPC";
    case ESPIPE: return "ESPIPE";
    case EROFS: return "EROFS";
    case EPIPE: return "EPIPE";
    case ERANGE: return "ERANGE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case ENODATA: return "ENODATA";
    case ETIME: return "ETIME";
    case EOVERFLOW: return "EOVERFLOW";
    case ENOTSOCK: return "ENOTSOCK";
    case EMSGSIZE: return "EMSGSIZE";
    case EPROTO: return "EPROTO";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EADDRINUSE: return "EADDRINUSE";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case ENETDOWN: return "ENETDOWN";
    case ECONNABORTED: return "ECONNABORTED";
    case ECONNRESET: return "ECONNRESET";
    case ENOBUFS: return "ENOBUFS";
    case ENOTCONN: return "ENOTCONN";
    case ETIMEDOUT: return "ETIMEDOUT";
    case ECONNREFUSED: return "ECONNREFUSED";
    case EALREADY: return "EALREADY";
    case EINPROGRESS: return "EINPROGRESS";
    case ECANCELED: return "ECANCELED";
    default: {
      static thread_local char buf[16];
      snprintf(buf, sizeof buf, "E%d", err);
      return buf;
    }
  }
}

std::string SysErrorMessage(const SysError& e) {
  std::string what = e.request.empty() ? e.syscall : e.request;
  std::string msg = what + " failed";
  if (!e.path.empty()) msg += " on " + e.path;
  msg += ": ";
  msg += ErrnoName(e.err);
  msg += " (";
  msg += strerror(e.err);
  msg += ")";
  if (!e.detail.empty()) msg += ": " + e.detail;
  return msg;
}

static void FillErrorFields(Napi::Env env, Napi::Object obj, const SysError& e) {
  obj.Set("code", ErrnoName(e.err));
  obj.Set("errno", Napi::Number::New(env, -e.err));
  obj.Set("syscall", e.syscall);
  if (!e.request.empty()) obj.Set("request", e.request);
  if (!e.path.empty()) obj.Set("path", e.path);
  Napi::Object args = Napi::Object::New(env);
  for (const auto& [name, value] : e.args)
    args.Set(name, Napi::Number::New(env, static_cast<double>(value)));
  obj.Set("args", args);
  if (!e.detail.empty()) obj.Set("detail", e.detail);
  if (!e.reason.empty()) obj.Set("reason", e.reason);
  if (e.prevented) obj.Set("prevented", true);
}

Napi::Object SysErrorToObject(Napi::Env env, const SysError& e) {
  Napi::Object obj = Napi::Object::New(env);
  obj.Set("message", SysErrorMessage(e));
  FillErrorFields(env, obj, e);
  return obj;
}

Napi::Error MakeSysError(Napi::Env env, const SysError& e) {
  AddonData* data = AddonData::Get(env);
  Napi::Object fields = Napi::Object::New(env);
  FillErrorFields(env, fields, e);
  if (data != nullptr && !data->error_class.IsEmpty()) {
    Napi::Value err = data->error_class.New({Napi::String::New(env, SysErrorMessage(e)), fields});
    return Napi::Error(env, err);
  }
  // Before the JS class is registered: a plain Error with the same fields.
  Napi::Error err = Napi::Error::New(env, SysErrorMessage(e));
  Napi::Object obj = err.Value();
  FillErrorFields(env, obj, e);
  return err;
}

void ThrowSysError(Napi::Env env, const SysError& e) { throw MakeSysError(env, e); }

void ThrowTypeError(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

void ThrowRangeError(Napi::Env env, const std::string& message) {
  throw Napi::RangeError::New(env, message);
}

static double ArgNumber(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsNumber()) ThrowTypeError(env, std::string(what) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d)
    ThrowRangeError(env, std::string(what) + " must be an integer");
  return d;
}

uint32_t ArgUint32(Napi::Env env, const Napi::Value& v, const char* what, uint32_t min, uint32_t max) {
  double d = ArgNumber(env, v, what);
  if (d < min || d > max)
    ThrowRangeError(env, std::string(what) + " must be between " + std::to_string(min) + " and " +
                             std::to_string(max) + ", got " + std::to_string(static_cast<int64_t>(d)));
  return static_cast<uint32_t>(d);
}

int64_t ArgInt64(Napi::Env env, const Napi::Value& v, const char* what, int64_t min, int64_t max) {
  double d = ArgNumber(env, v, what);
  if (d < static_cast<double>(min) || d > static_cast<double>(max))
    ThrowRangeError(env, std::string(what) + " must be between " + std::to_string(min) + " and " +
                             std::to_string(max));
  return static_cast<int64_t>(d);
}

std::string ArgString(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsString()) ThrowTypeError(env, std::string(what) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

Napi::Object ArgObject(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsObject() || v.IsArray() || v.IsFunction())
    ThrowTypeError(env, std::string(what) + " must be an object");
  return v.As<Napi::Object>();
}

bool ArgBool(Napi::Env env, const Napi::Value& v, const char* what) {
  if (!v.IsBoolean()) ThrowTypeError(env, std::string(what) + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

uint32_t OptUint32(Napi::Env env, const Napi::Object& o, const char* key, uint32_t fallback, uint32_t min,
                   uint32_t max) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  return ArgUint32(env, v, key, min, max);
}

bool OptBool(Napi::Env env, const Napi::Object& o, const char* key, bool fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  return ArgBool(env, v, key);
}

}  // namespace dmx
