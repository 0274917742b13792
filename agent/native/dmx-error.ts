/**
 * The error every failed system call in the native layer is thrown as,
 * shaped like Node's own system errors: `code` ('EINVAL'), `errno`
 * (negative), `syscall` ('ioctl'), plus the ioctl `request`
 * ('DMX_EXPBUF'), the device `path`, and the `args` that were passed.
 */
export interface DmxErrorFields {
  code: string;
  errno: number;
  syscall: string;
  request?: string;
  path?: string;
  args: Record<string, number>;
  detail?: string;
  /**
   * A stable code for why the call failed, set where the native layer knows
   * more than the errno (its ledger, its pool): 'index-out-of-range',
   * 'buffer-already-queued', ... (the full list: agent/diagnosis/causes.ts).
   */
  reason?: string;
  /** True when the native layer refused the call before the kernel saw it. */
  prevented?: boolean;
}

export class DmxError extends Error implements DmxErrorFields {
  code: string;
  errno: number;
  syscall: string;
  request?: string;
  path?: string;
  args: Record<string, number>;
  detail?: string;
  reason?: string;
  prevented?: boolean;

  constructor(message: string, fields: DmxErrorFields) {
    super(message);
    this.name = 'DmxError';
    this.code = fields.code;
    this.errno = fields.errno;
    this.syscall = fields.syscall;
    if (fields.request !== undefined) this.request = fields.request;
    if (fields.path !== undefined) this.path = fields.path;
    this.args = fields.args ?? {};
    if (fields.detail !== undefined) this.detail = fields.detail;
    if (fields.reason !== undefined) this.reason = fields.reason;
    if (fields.prevented !== undefined) this.prevented = fields.prevented;
  }

  /** The same error as a plain object (for logs and MQTT events). */
  toJSON(): DmxErrorFields & { message: string } {
    return {
      message: this.message,
      code: this.code,
      errno: this.errno,
      syscall: this.syscall,
      ...(this.request !== undefined ? { request: this.request } : {}),
      ...(this.path !== undefined ? { path: this.path } : {}),
      args: this.args,
      ...(this.detail !== undefined ? { detail: this.detail } : {}),
      ...(this.reason !== undefined ? { reason: this.reason } : {}),
      ...(this.prevented !== undefined ? { prevented: this.prevented } : {}),
    };
  }
}

export function isDmxError(value: unknown): value is DmxError {
  return value instanceof DmxError;
}
