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
}

export class DmxError extends Error implements DmxErrorFields {
  code: string;
  errno: number;
  syscall: string;
  request?: string;
  path?: string;
  args: Record<string, number>;
  detail?: string;

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
    };
  }
}

export function isDmxError(value: unknown): value is DmxError {
  return value instanceof DmxError;
}
