// Errors shaped exactly as the native layer builds them (native/src/errors.cc
// SysErrorMessage and FillErrorFields; the args each call site attaches in
// demux.cc, decoder.cc, frontend.cc and pump.cc), for the diagnosis tests.

import { strerrorOf } from '../../agent/diagnosis/causes.js';
import type { DiagnosableError } from '../../agent/diagnosis/diagnose.js';

export const DEMUX = '/dev/dvb/adapter0/demux0';
export const DVR = '/dev/dvb/adapter0/dvr0';
export const FRONTEND = '/dev/dvb/adapter0/frontend0';
export const VIDEO = '/dev/video0';

export const O_RDWR = 0o2;
export const O_NONBLOCK = 0o4000;
export const O_APPEND = 0o2000;
export const O_CLOEXEC = 0o2000000;
/** What DemuxCore::Open and DecoderCore::Open pass. */
export const OPEN_FLAGS = O_RDWR | O_NONBLOCK | O_CLOEXEC;

const ERRNO: Record<string, number> = {
  EPERM: 1,
  ENOENT: 2,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  ENODEV: 19,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  EPIPE: 32,
  EOPNOTSUPP: 95,
  E524: 524,
};

/** A DmxError's fields and message, as errors.cc builds them. */
export function nativeError(fields: {
  code: string;
  syscall?: string;
  request?: string;
  path?: string;
  args?: Record<string, number>;
  detail?: string;
  reason?: string;
  prevented?: boolean;
}): DiagnosableError {
  const syscall = fields.syscall ?? 'ioctl';
  const what = fields.request ?? syscall;
  const on = fields.path ? ` on ${fields.path}` : '';
  const text = strerrorOf(fields.code) ?? 'Unknown error';
  const detail = fields.detail ? `: ${fields.detail}` : '';
  const number = ERRNO[fields.code];
  if (number === undefined) throw new Error(`add ${fields.code} to ERRNO`);
  return {
    message: `${what} failed${on}: ${fields.code} (${text})${detail}`,
    code: fields.code,
    errno: -number,
    syscall,
    ...(fields.request !== undefined ? { request: fields.request } : {}),
    ...(fields.path !== undefined ? { path: fields.path } : {}),
    args: fields.args ?? {},
    ...(fields.detail !== undefined ? { detail: fields.detail } : {}),
    ...(fields.reason !== undefined ? { reason: fields.reason } : {}),
    ...(fields.prevented !== undefined ? { prevented: fields.prevented } : {}),
  };
}
