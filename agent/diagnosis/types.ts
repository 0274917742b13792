/**
 * What a failed (or prevented) system call becomes once diagnosed: a
 * structured event with a stable cause code, a sentence, and a remedy.
 */

/** Stable cause codes. Fleet dashboards and tests key on these: never rename one. */
export type CauseCode =
  // EINVAL on the DVB mmap ioctls
  | 'index-out-of-range'
  | 'expbuf-flags-unsupported'
  | 'no-buffers-allocated'
  | 'export-unsupported'
  | 'buffer-already-queued'
  | 'buffer-smaller-than-expected'
  | 'not-streaming'
  // EINVAL / EFAULT on the V4L2 decoder
  | 'v4l2-buffer-type-unsupported'
  | 'v4l2-memory-type-unsupported'
  | 'import-bytesused-above-sizeimage'
  | 'import-dmabuf-below-sizeimage'
  | 'import-memory-not-contiguous'
  | 'decoder-format-rejected'
  // the kernel's build and the device nodes
  | 'dvb-mmap-missing'
  | 'device-missing'
  | 'device-busy'
  | 'permission-denied'
  | 'frontend-unsupported'
  | 'decoder-gone'
  // the queue and its lifetime
  | 'reqbufs-while-streaming'
  | 'pump-attached'
  | 'stream-dead'
  | 'queue-error'
  | 'end-of-stream'
  // resources
  | 'out-of-memory'
  | 'fd-limit'
  // configuration checked before any call
  | 'pool-size-invalid'
  | 'pool-exceeds-decoder-format'
  // nothing more specific is known
  | 'invalid-argument'
  | 'unexplained';

/** What is known around a failure, beyond the error itself. Every field is optional. */
export interface DiagnosisContext {
  stream?: string;
  /** The pool as the agent set it up (count 0 before DMX_REQBUFS). */
  pool?: { count: number; size: number; streaming: boolean };
  /** The decoder's OUTPUT queue, from querycap, G_FMT and a count-0 REQBUFS probe. */
  decoder?: {
    path: string;
    name?: string;
    multiplanar?: boolean;
    outputSizeimage?: number;
    /** v4l2_requestbuffers.capabilities of the OUTPUT queue (V4L2_BUF_CAP_*). */
    capabilities?: number;
  };
}

export interface Diagnosis {
  cause: CauseCode;
  /** One sentence in plain terms: what went wrong. */
  summary: string;
  /** One sentence: what to do about it. */
  remedy: string;
}

/** The structured event every failed or prevented call becomes (bus, logs, MQTT). */
export interface ErrnoEvent extends Diagnosis {
  stream: string | null;
  /** The device node or socket path. */
  device: string | null;
  /** The ioctl name ('DMX_EXPBUF'), or the syscall ('open') when it was not an ioctl. */
  ioctl: string;
  syscall: string;
  /** 'EINVAL' */
  errno: string;
  /** -22, as in Node's own system errors. */
  errnoNumber: number;
  args: Record<string, number>;
  /** True when the agent or the native layer refused the call before the kernel saw it. */
  prevented: boolean;
  /** The error's own message (with the native layer's detail). */
  message: string;
  /** Identical events in one coalescing window: how many, first and last time (epoch ms). */
  count: number;
  firstAtMs: number;
  lastAtMs: number;
}
