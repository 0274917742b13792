/**
 * Turns a failed (or prevented) call into an ErrnoEvent with a stable cause.
 * The native layer's `reason` wins when it has one (it knows its ledger);
 * otherwise the cause is decided from the ioctl, the errno, the arguments
 * and what the agent knows about the pool and the decoder, following the
 * kernel's own order of checks where it matters (vb2_core_expbuf,
 * __prepare_dmabuf). Nothing here touches a device.
 */
import { constants as osConstants } from 'node:os';
import type { DmxErrorFields } from '../native/dmx-error.js';
import {
  CAUSES,
  type CauseFacts,
  explainCause,
  isCauseCode,
  m2mBufTypes,
  memoryCapabilityBit,
  memoryName,
  O_ACCMODE,
  O_CLOEXEC,
} from './causes.js';
import type { CauseCode, DiagnosisContext, ErrnoEvent } from './types.js';

/** A DmxError, or the plain object the pump posts (PumpErrorObject). */
export type DiagnosableError = DmxErrorFields & { message: string };

interface Verdict {
  cause: CauseCode;
  ruledOut?: string[];
  caveat?: string;
}

/** The five ioctls of the DVB mmap API: ENOTTY on any of them means no CONFIG_DVB_MMAP. */
const DVB_MMAP_IOCTLS = new Set(['DMX_REQBUFS', 'DMX_QUERYBUF', 'DMX_EXPBUF', 'DMX_QBUF', 'DMX_DQBUF']);

const POOL_SIZE_UNKNOWN = 'the pool size was not known, so an index out of range was not ruled out';

function isDvbPath(device: string | null): boolean {
  return device?.includes('/dvb/') ?? false;
}

function isDvrPath(device: string | null): boolean {
  return device !== null && /\/dvr\d*$/.test(device);
}

function isDecoderCall(facts: CauseFacts): boolean {
  if (facts.ioctl.startsWith('VIDIOC_')) return true;
  const decoderPath = facts.context.decoder?.path;
  if (facts.device !== null && decoderPath !== undefined && facts.device === decoderPath) return true;
  return facts.device?.startsWith('/dev/video') ?? false;
}

const PUMP_REFUSAL = /a pump is (driving|feeding)|another pump drives/;

function isPumpRefusal(errno: string, detail: string | undefined): boolean {
  return errno === 'EBUSY' && PUMP_REFUSAL.test(detail ?? '');
}

/** What the native layer refused itself, when it did not say so with `prevented`. */
function inferPrevented(error: DiagnosableError): boolean {
  return (
    error.syscall === 'pump' ||
    /refused before the kernel/.test(error.detail ?? '') ||
    isPumpRefusal(error.code, error.detail)
  );
}

function poolCountOf(facts: CauseFacts): number | undefined {
  return facts.args.count ?? facts.context.pool?.count;
}

function sizeimageOf(facts: CauseFacts): number | undefined {
  const fromArgs = facts.args.sizeimage;
  if (fromArgs !== undefined && fromArgs > 0) return fromArgs;
  const fromContext = facts.context.decoder?.outputSizeimage;
  return fromContext !== undefined && fromContext > 0 ? fromContext : undefined;
}

// ---------------------------------------------------------------- EINVAL, per ioctl

function demuxIndexVerdict(facts: CauseFacts): Verdict | null {
  const count = poolCountOf(facts);
  const index = facts.args.index;
  if (count === 0) return { cause: 'no-buffers-allocated' };
  if (count !== undefined && index !== undefined && index >= count) return { cause: 'index-out-of-range' };
  if (/index out of range|is out of range/.test(facts.detail ?? '')) return { cause: 'index-out-of-range' };
  return null;
}

function explainExpbuf(facts: CauseFacts): Verdict {
  const count = poolCountOf(facts);
  // vb2_core_expbuf checks MMAP memory (buffers requested) first, then the allocator, the flags, the index.
  if (count === 0) return { cause: 'no-buffers-allocated' };
  const flags = facts.args.flags;
  if (flags !== undefined && ((flags >>> 0) & ~(O_CLOEXEC | O_ACCMODE)) !== 0)
    return { cause: 'expbuf-flags-unsupported' };
  const byIndex = demuxIndexVerdict(facts);
  if (byIndex) return byIndex;
  if (count === undefined) {
    return {
      cause: 'export-unsupported',
      caveat: 'the pool size was not known, so an index out of range or a missing allocation was not ruled out',
    };
  }
  return { cause: 'export-unsupported' };
}

function explainQuerybuf(facts: CauseFacts): Verdict {
  const byIndex = demuxIndexVerdict(facts);
  if (byIndex) return byIndex;
  const count = poolCountOf(facts);
  // dvb_vb2_querybuf refuses only an index at or beyond the kernel's buffer count.
  if (count === undefined)
    return { cause: 'index-out-of-range', caveat: 'the only EINVAL of DMX_QUERYBUF; the pool size was not known' };
  return {
    cause: 'invalid-argument',
    ruledOut: [
      `index ${facts.args.index ?? '?'} is below the pool's ${count} buffers (the only EINVAL of DMX_QUERYBUF)`,
    ],
    caveat: 'the kernel may hold fewer buffers than the pool thinks',
  };
}

function explainDemuxQbuf(facts: CauseFacts): Verdict {
  const byIndex = demuxIndexVerdict(facts);
  if (byIndex) return byIndex;
  const expected = facts.args.expectedSize;
  const length = facts.args.length ?? facts.context.pool?.size;
  if (expected !== undefined && length !== undefined && expected > length)
    return { cause: 'buffer-smaller-than-expected' };
  // What remains of vb2_core_qbuf's EINVALs: the buffer is not in the dequeued state.
  if (poolCountOf(facts) === undefined && !/already queued/.test(facts.detail ?? '')) {
    return { cause: 'buffer-already-queued', caveat: POOL_SIZE_UNKNOWN };
  }
  return { cause: 'buffer-already-queued' };
}

function explainDemuxDqbuf(facts: CauseFacts): Verdict {
  // The pump raises EINVAL itself when the kernel hands back an index the pool lacks.
  if (facts.args.index !== undefined) return { cause: 'index-out-of-range' };
  return { cause: 'not-streaming' };
}

function explainV4l2Reqbufs(facts: CauseFacts): Verdict {
  const { memory, type } = facts.args;
  const decoder = facts.context.decoder;
  const caps = decoder?.capabilities ?? facts.args.capabilities;
  const ruledOut: string[] = [];
  if (memory !== undefined) {
    const bit = memoryCapabilityBit(memory);
    if (bit === 0) return { cause: 'v4l2-memory-type-unsupported' };
    if (caps !== undefined) {
      if ((caps & bit) === 0) return { cause: 'v4l2-memory-type-unsupported' };
      ruledOut.push(`the queue supports ${memoryName(memory)} memory (capabilities 0x${caps.toString(16)})`);
    }
  }
  if (type !== undefined) {
    const multiplanar = decoder?.multiplanar;
    if (multiplanar !== undefined) {
      const types = m2mBufTypes(multiplanar);
      if (type !== types.output && type !== types.capture) return { cause: 'v4l2-buffer-type-unsupported' };
      ruledOut.push(`buffer type ${type} is one of this ${multiplanar ? 'multi' : 'single'}-planar decoder's queues`);
    } else if (![1, 2, 9, 10].includes(type)) {
      return { cause: 'v4l2-buffer-type-unsupported' };
    } else if (caps !== undefined) {
      // The memory type is supported, so the type is what the queue refused.
      return { cause: 'v4l2-buffer-type-unsupported' };
    }
  }
  return {
    cause: 'invalid-argument',
    ruledOut,
    ...(caps === undefined ? { caveat: "the queue's capabilities were not known (no count-0 REQBUFS probe)" } : {}),
  };
}

function explainImport(facts: CauseFacts): Verdict {
  if (/slot out of range/.test(facts.detail ?? '')) return { cause: 'index-out-of-range' };
  const { bytesused, dmabufSize } = facts.args;
  if (bytesused === undefined) {
    return facts.errno === 'EFAULT'
      ? { cause: 'unexplained' }
      : { cause: 'invalid-argument', ruledOut: ['a DMABUF import (no bytesused: a CAPTURE or MMAP buffer)'] };
  }
  // EFAULT: the decoder could not map the dmabuf (vb2_dc_map_dmabuf: "contiguous chunk is too small").
  if (facts.errno === 'EFAULT') return { cause: 'import-memory-not-contiguous' };
  const caps = facts.context.decoder?.capabilities ?? facts.args.capabilities;
  if (caps !== undefined && (caps & 0x4) === 0) return { cause: 'v4l2-memory-type-unsupported' };
  const sizeimage = sizeimageOf(facts);
  if (sizeimage === undefined) {
    return {
      cause: 'invalid-argument',
      caveat: "the decoder's OUTPUT sizeimage was not known, so neither import size rule could be checked",
    };
  }
  // __prepare_dmabuf checks bytesused against the plane length before the dmabuf's size.
  if (bytesused > sizeimage) return { cause: 'import-bytesused-above-sizeimage' };
  if (dmabufSize !== undefined && dmabufSize < sizeimage) return { cause: 'import-dmabuf-below-sizeimage' };
  if (dmabufSize === undefined) {
    return {
      cause: 'invalid-argument',
      ruledOut: [`bytesused ${bytesused} above sizeimage ${sizeimage}`],
      caveat: 'the dmabuf size was not known',
    };
  }
  return { cause: 'import-memory-not-contiguous' };
}

function explainEinval(facts: CauseFacts): Verdict {
  switch (facts.ioctl) {
    case 'DMX_EXPBUF':
      return explainExpbuf(facts);
    case 'DMX_QUERYBUF':
      return explainQuerybuf(facts);
    case 'DMX_QBUF':
      return explainDemuxQbuf(facts);
    case 'DMX_DQBUF':
      return explainDemuxDqbuf(facts);
    case 'VIDIOC_REQBUFS':
      return explainV4l2Reqbufs(facts);
    case 'VIDIOC_QBUF':
      return explainImport(facts);
    case 'VIDIOC_S_FMT':
      return { cause: 'decoder-format-rejected' };
    default:
      if (facts.syscall === 'pump' && /no buffers/.test(facts.detail ?? '')) return { cause: 'no-buffers-allocated' };
      return { cause: 'invalid-argument', caveat: `the catalog knows no EINVAL conditions for ${facts.ioctl}` };
  }
}

// ---------------------------------------------------------------- everything else

function decide(facts: CauseFacts): Verdict {
  const { errno, ioctl, syscall } = facts;
  if (facts.args.closed === 1) return { cause: 'unexplained', caveat: 'the agent had already closed this object' };
  if (errno === 'EMFILE' || errno === 'ENFILE') return { cause: 'fd-limit' };
  if (errno === 'ENOMEM') return { cause: 'out-of-memory' };
  if (errno === 'EACCES' || errno === 'EPERM') return { cause: 'permission-denied' };
  if (isPumpRefusal(errno, facts.detail)) return { cause: 'pump-attached' };

  if (syscall === 'open') {
    if (errno === 'ENOENT' || errno === 'ENODEV' || errno === 'ENXIO') return { cause: 'device-missing' };
    if (errno === 'EBUSY') return { cause: 'device-busy' };
    // dvb_dvr_open() refuses O_RDWR with EOPNOTSUPP only without CONFIG_DVB_MMAP.
    if (errno === 'EOPNOTSUPP' && isDvrPath(facts.device)) return { cause: 'dvb-mmap-missing' };
    return { cause: 'unexplained' };
  }

  if (errno === 'ENOTTY' && (DVB_MMAP_IOCTLS.has(ioctl) || (syscall === 'mmap' && isDvbPath(facts.device)))) {
    return { cause: 'dvb-mmap-missing' };
  }

  if (ioctl.startsWith('FE_')) {
    if (errno === 'E524' || errno === 'ENOTSUPP' || errno === 'EOPNOTSUPP') return { cause: 'frontend-unsupported' };
    if (errno === 'EINVAL' && ioctl === 'FE_SET_PROPERTY') return { cause: 'frontend-unsupported' };
  }

  if (isDecoderCall(facts)) {
    if (errno === 'ENODEV' || errno === 'ENXIO' || errno === 'EPIPE' || errno === 'EBADF')
      return { cause: 'decoder-gone' };
    if (errno === 'EIO') return { cause: 'queue-error' };
    if (errno === 'EBUSY' && ioctl === 'VIDIOC_S_FMT') return { cause: 'decoder-format-rejected' };
  } else if (isDvbPath(facts.device) && (errno === 'ENODEV' || errno === 'ENXIO')) {
    return { cause: 'device-missing' };
  }

  if (errno === 'EBUSY' && (ioctl === 'DMX_REQBUFS' || ioctl === 'VIDIOC_REQBUFS')) {
    return { cause: 'reqbufs-while-streaming' };
  }
  if (errno === 'EIO') return { cause: 'queue-error' };
  if (errno === 'EPIPE') return { cause: 'end-of-stream' };
  if (errno === 'EINVAL') return explainEinval(facts);
  if (errno === 'EFAULT' && ioctl === 'VIDIOC_QBUF') return explainImport(facts);
  return { cause: 'unexplained' };
}

// ---------------------------------------------------------------- events

/** -22 for 'EINVAL', -524 for 'E524'; 0 when the name is unknown. */
export function errnoNumberOf(name: string): number {
  const known = (osConstants.errno as Record<string, number | undefined>)[name];
  if (known !== undefined) return -known;
  const numbered = /^E(\d+)$/.exec(name);
  if (numbered) return -Number(numbered[1]);
  if (name === 'ENOTSUPP') return -524;
  return 0;
}

function event(
  verdict: Verdict,
  facts: CauseFacts,
  fields: { stream: string | null; errnoNumber: number; message: string },
  atMs: number,
): ErrnoEvent {
  const detailed: CauseFacts = {
    ...facts,
    ...(verdict.ruledOut ? { ruledOut: verdict.ruledOut } : {}),
    ...(verdict.caveat ? { caveat: verdict.caveat } : {}),
  };
  const { summary, remedy } = explainCause(verdict.cause, detailed);
  return {
    cause: verdict.cause,
    summary,
    remedy,
    stream: fields.stream,
    device: facts.device,
    ioctl: facts.ioctl,
    syscall: facts.syscall,
    errno: facts.errno,
    errnoNumber: fields.errnoNumber,
    args: { ...facts.args },
    prevented: facts.prevented,
    message: fields.message,
    count: 1,
    firstAtMs: atMs,
    lastAtMs: atMs,
  };
}

/** Diagnoses a failed call from the native layer (a DmxError or a pump's error object). */
export function diagnose(error: DiagnosableError, context: DiagnosisContext = {}, atMs = Date.now()): ErrnoEvent {
  const facts: CauseFacts = {
    ioctl: error.request || error.syscall,
    syscall: error.syscall,
    errno: error.code,
    device: error.path || null,
    args: { ...(error.args ?? {}) },
    ...(error.detail ? { detail: error.detail } : {}),
    prevented: error.prevented ?? inferPrevented(error),
    context,
  };
  const verdict: Verdict = isCauseCode(error.reason) ? { cause: error.reason } : decide(facts);
  return event(
    verdict,
    facts,
    { stream: context.stream ?? null, errnoNumber: error.errno, message: error.message },
    atMs,
  );
}

/** A check the agent makes itself before calling (pool sizing against the decoder, ...): prevented. */
export function preventedEvent(
  cause: CauseCode,
  fields: {
    stream?: string;
    device?: string;
    ioctl: string;
    errno?: string;
    args: Record<string, number>;
    message: string;
    /** The syscall, when `ioctl` is not an ioctl name; 'ioctl' otherwise. */
    syscall?: string;
    detail?: string;
    context?: DiagnosisContext;
  },
  atMs = Date.now(),
): ErrnoEvent {
  const errno = fields.errno ?? CAUSES[cause].errnos[0] ?? 'EINVAL';
  const context = fields.context ?? {};
  const facts: CauseFacts = {
    ioctl: fields.ioctl,
    syscall: fields.syscall ?? (/^[A-Z][A-Z0-9_]+$/.test(fields.ioctl) ? 'ioctl' : fields.ioctl),
    errno,
    device: fields.device ?? null,
    args: { ...fields.args },
    // A prevented call's message is the agent's own explanation: let the summary carry it.
    detail: fields.detail ?? fields.message,
    prevented: true,
    context,
  };
  const stream = fields.stream ?? context.stream ?? null;
  return event({ cause }, facts, { stream, errnoNumber: errnoNumberOf(errno), message: fields.message }, atMs);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** A DmxError, a pump error object, or a Node system error (fs, net): anything with code, errno and syscall. */
function asDiagnosable(error: unknown): DiagnosableError | null {
  if (!isRecord(error)) return null;
  const { code, errno, syscall } = error;
  if (typeof code !== 'string' || typeof errno !== 'number' || typeof syscall !== 'string') return null;
  const args: Record<string, number> = {};
  if (isRecord(error.args)) {
    for (const [name, value] of Object.entries(error.args)) if (typeof value === 'number') args[name] = value;
  }
  const text = (key: string): string | undefined =>
    typeof error[key] === 'string' ? (error[key] as string) : undefined;
  const request = text('request');
  const path = text('path');
  const detail = text('detail');
  const reason = text('reason');
  return {
    code,
    errno: errno > 0 ? -errno : errno,
    syscall,
    args,
    message: text('message') ?? `${request ?? syscall} failed: ${code}`,
    ...(request !== undefined ? { request } : {}),
    ...(path !== undefined ? { path } : {}),
    ...(detail !== undefined ? { detail } : {}),
    ...(reason !== undefined ? { reason } : {}),
    ...(typeof error.prevented === 'boolean' ? { prevented: error.prevented } : {}),
  };
}

const INDEX_REFUSAL = /index (\d+) is out of range: the pool has (\d+) buffers/;
const POOL_REFUSAL = /pool (count|buffer size) must .*got (-?\d+(?:\.\d+)?)/;

/** The argument checks (TypeError, RangeError) of agent/native, as prevented events. */
function argumentCheckEvent(error: Error, context: DiagnosisContext, atMs: number): ErrnoEvent {
  const fields = {
    ioctl: 'argument-check',
    syscall: 'none',
    errno: 'EINVAL',
    message: `${error.name}: ${error.message}`,
    detail: error.message,
    context,
  };
  const index = INDEX_REFUSAL.exec(error.message);
  if (index) {
    const args = { index: Number(index[1]), count: Number(index[2]) };
    return preventedEvent(args.count === 0 ? 'no-buffers-allocated' : 'index-out-of-range', { ...fields, args }, atMs);
  }
  const pool = POOL_REFUSAL.exec(error.message);
  if (pool) {
    const args = { [pool[1] === 'count' ? 'count' : 'size']: Number(pool[2]) };
    return preventedEvent('pool-size-invalid', { ...fields, args }, atMs);
  }
  return preventedEvent('invalid-argument', { ...fields, args: {} }, atMs);
}

/** Anything thrown: DmxErrors and system errors are diagnosed, argument checks become prevented events. */
export function diagnoseUnknown(error: unknown, context: DiagnosisContext = {}, atMs = Date.now()): ErrnoEvent {
  const diagnosable = asDiagnosable(error);
  if (diagnosable) return diagnose(diagnosable, context, atMs);
  if (error instanceof RangeError || error instanceof TypeError) return argumentCheckEvent(error, context, atMs);
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  const code = isRecord(error) && typeof error.code === 'string' ? error.code : 'UNKNOWN';
  const facts: CauseFacts = {
    ioctl: 'unknown',
    syscall: 'unknown',
    errno: code,
    device: null,
    args: {},
    detail: error instanceof Error ? error.message : String(error),
    prevented: false,
    context,
  };
  const fields = { stream: context.stream ?? null, errnoNumber: errnoNumberOf(code), message };
  return event({ cause: 'unexplained' }, facts, fields, atMs);
}
