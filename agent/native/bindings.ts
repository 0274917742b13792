/**
 * Loads the native addon once and declares its exact shape. Nothing outside
 * agent/native/ imports this file: the rest of the agent uses index.ts.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DmxError, type DmxErrorFields } from './dmx-error.js';

export type PesOutput = 'tsdemux-tap' | 'ts-tap' | 'tap' | 'decoder';
export type QueueName = 'output' | 'capture';
export type MemoryType = 'dmabuf' | 'mmap' | 'userptr';
export type BufferOwner = 'agent' | 'kernel' | 'decoder' | 'consumer';

export interface SimulationOptions {
  simulation?: NativeSimulation;
}

export interface DmxBufferInfo {
  index: number;
  bytesused: number;
  offset: number;
  length: number;
  flags: number;
  count: number;
}

export interface LedgerEntry {
  index: number;
  owner: BufferOwner;
  exportFd: number;
  dmabufSize: number;
  mapped: boolean;
  length: number;
  bytesused: number;
  flags: number;
  sequence: number;
  sinceMs: number;
}

export interface PesFilterParams {
  pid: number;
  output?: PesOutput;
  pesType?: number;
  start?: boolean;
}

export interface SectionFilterParams {
  pid: number;
  filter?: number[];
  mask?: number[];
  mode?: number[];
  timeoutMs?: number;
  checkCrc?: boolean;
  oneshot?: boolean;
  start?: boolean;
}

export interface NativeDemux {
  readonly fd: number;
  readonly path: string;
  readonly streaming: boolean;
  readonly bufferCount: number;
  readonly bufferSize: number;
  setPesFilter(params: PesFilterParams): void;
  setSectionFilter(params: SectionFilterParams): void;
  addPid(pid: number): void;
  start(): void;
  stop(): void;
  setBufferSize(bytes: number): void;
  requestBuffers(
    count: number,
    size: number,
    options?: { allowWhileStreaming?: boolean },
  ): {
    count: number;
    size: number;
  };
  /**
   * The index-taking calls refuse an index the pool lacks before the kernel
   * sees it, with the EINVAL the kernel would give (`prevented: true`,
   * `reason` 'index-out-of-range' or 'no-buffers-allocated'); `raw` sends it.
   */
  queryBuffer(index: number, options?: { raw?: boolean }): DmxBufferInfo;
  mapBuffers(): void;
  exportBuffer(index: number, options?: { flags?: number; raw?: boolean }): number;
  exportBuffers(options?: { flags?: number }): number[];
  queueBuffer(index: number, options?: { raw?: boolean }): void;
  dequeueBuffer(): DmxBufferInfo | null;
  peek(index: number, start?: number, length?: number, options?: { raw?: boolean }): Buffer;
  ledger(): LedgerEntry[];
  poll(timeoutMs: number): { readable: boolean; priority: boolean; error: boolean; hangup: boolean };
  close(): void;
}

export interface FrontendTuning {
  deliverySystem: string;
  frequency: number;
  modulation?: number;
  symbolRate?: number;
  bandwidthHz?: number;
  innerFec?: number;
  inversion?: number;
  guardInterval?: number;
  transmissionMode?: number;
  hierarchy?: number;
  pilot?: number;
  rolloff?: number;
  streamId?: number;
  voltage?: number;
  tone?: number;
}

export interface FrontendStatus {
  raw: number;
  signal: boolean;
  carrier: boolean;
  viterbi: boolean;
  sync: boolean;
  lock: boolean;
  timedout: boolean;
}

export interface FrontendStat {
  scale: 'decibel' | 'relative' | 'counter';
  value: number;
}

export interface FrontendStatistics {
  signal: FrontendStat | null;
  cnr: FrontendStat | null;
  preErrorBits: FrontendStat | null;
  preTotalBits: FrontendStat | null;
  postErrorBits: FrontendStat | null;
  postTotalBits: FrontendStat | null;
  errorBlocks: FrontendStat | null;
  totalBlocks: FrontendStat | null;
}

export interface NativeFrontend {
  readonly fd: number;
  info(): { name: string; frequencyMin: number; frequencyMax: number; caps: number };
  tune(tuning: FrontendTuning): void;
  status(): FrontendStatus;
  statistics(): FrontendStatistics;
  close(): void;
}

export interface VideoFormat {
  fourcc: string;
  width: number;
  height: number;
  bytesperline: number;
  sizeimage: number;
}

export interface BufferCapabilities {
  capabilities: number;
  supportsMmap: boolean;
  supportsUserptr: boolean;
  supportsDmabuf: boolean;
  supportsRequests: boolean;
  supportsOrphanedBufs: boolean;
}

export interface DecodedBuffer {
  index: number;
  bytesused: number;
  flags: number;
  sequence: number;
}

export interface DecoderStats {
  imported: number;
  importRejected: number;
  returned: number;
  captureFrames: number;
  events: number;
  noFreeSlot: number;
  gone: boolean;
  outputCount: number;
  captureCount: number;
  outputSizeimage: number;
}

export interface NativeDecoder {
  readonly fd: number;
  readonly path: string;
  querycap(): {
    driver: string;
    card: string;
    busInfo: string;
    capabilities: number;
    deviceCaps: number;
    multiplanar: boolean;
    streaming: boolean;
  };
  enumFormats(queue: QueueName): Array<{ fourcc: string; description: string; compressed: boolean }>;
  getFormat(queue: QueueName): VideoFormat;
  setFormat(
    queue: QueueName,
    format: { fourcc: string; width: number; height: number; sizeimage?: number },
  ): VideoFormat;
  probeBuffers(queue: QueueName, memory?: MemoryType): BufferCapabilities;
  /**
   * VIDIOC_REQBUFS. `raw` sends a v4l2_buf_type / v4l2_memory number as is
   * (for diagnosis tests: a type or memory the queue does not support).
   */
  requestBuffers(
    queue: QueueName,
    memory: MemoryType,
    count: number,
    options?: { raw?: { type?: number; memory?: number } },
  ): number;
  queueDmabuf(slot: number, fd: number, bytesused: number): void;
  dequeueOutput(): DecodedBuffer | null;
  setupCapture(count: number): number;
  dequeueCapture(): DecodedBuffer | null;
  queueCapture(index: number): void;
  streamOn(queue: QueueName): void;
  streamOff(queue: QueueName): void;
  prepare(options: { outputCount: number; captureCount?: number }): {
    outputCount: number;
    captureCount: number;
    outputSizeimage: number;
  };
  stats(): DecoderStats;
  close(): void;
}

export interface ConsumerSinkStats {
  connected: boolean;
  connects: number;
  rejects: number;
  buffersSent: number;
  released: number;
  recoveredOnDisconnect: number;
  timeouts: number;
  protocolErrors: number;
  backpressure: number;
  held: number;
  peerPid?: number;
  peerUid?: number;
  [key: string]: number | boolean | undefined;
}

export interface NativeConsumerSink {
  readonly socketPath: string;
  stats(): ConsumerSinkStats;
  close(): void;
}

/** An error posted by the pump: a DmxError's fields as a plain object. */
export type PumpErrorObject = DmxErrorFields & { message: string };

export type PumpEvent =
  | { type: 'state'; state: string; detail?: string; atMs: number }
  | { type: 'note'; what: string; detail?: string; atMs: number }
  | { type: 'error'; error: PumpErrorObject; repeated: number; atMs: number };

export interface PumpStats {
  state: string;
  sink: string;
  buffersDequeued: number;
  bytesDequeued: number;
  flags: {
    crc32Discard: number;
    tei: number;
    packetCounterMismatch: number;
    discontinuityDetected: number;
    discontinuityIndicator: number;
  };
  ts: { packets: number; syncErrors: number; teiPackets: number; ccGaps: number; ccGapsByPid: Record<string, number> };
  zeroQueued: { totalMs: number; currentMs: number; episodes: number };
  queuedInKernel: number;
  inSink: number;
  sinkTime: {
    submitted: number;
    declined: number;
    returned: number;
    holdMsTotal: number;
    holdMsMax: number;
    holdMsMean: number;
    /**
     * Hold times of returned buffers: counts[i] is how many took at most
     * boundsMs[i] (and more than boundsMs[i-1]); the last count is above
     * every bound. Cumulative since start; percentiles come from deltas.
     */
    holdHistogram: { boundsMs: number[]; counts: number[] };
  };
  requeueFailures: number;
  errors: Record<string, number>;
  eventsDropped: number;
  polls: number;
  lastDequeueAgoMs: number | null;
  uptimeMs: number;
}

export interface NativePump {
  readonly running: boolean;
  start(): void;
  stop(): void;
  stats(): PumpStats;
  ledger(): Array<{ index: number; owner: BufferOwner; exportFd: number; sinceMs: number }>;
  close(): void;
  ref(): void;
  unref(): void;
}

export interface SimFault {
  /**
   * alloc-fail: the next `count` buffer allocations of the adapter fail (ENOMEM, or a short grant).
   * hang: for `durationMs` every demux and DVR ioctl of the adapter blocks (a pump stuck in the driver).
   */
  kind: 'cc-gap' | 'tei' | 'crc-discard' | 'stall' | 'burst' | 'alloc-fail' | 'hang';
  pid?: number;
  count?: number;
  durationMs?: number;
  factor?: number;
}

export interface SimStreamConfig {
  pid: number;
  type: 'video' | 'audio' | 'data';
  share: number;
}

export interface SimAdapterConfig {
  adapter?: number;
  mmap?: boolean;
  /** false: DMX_EXPBUF answers EINVAL, as with an allocator that cannot export. */
  exportable?: boolean;
  requireTune?: boolean;
  source?:
    | {
        kind: 'synthetic';
        bitrate?: number;
        programs?: Array<{ number: number; pmtPid: number; streams: SimStreamConfig[] }>;
      }
    | { kind: 'file'; path: string; bitrate?: number };
}

export interface SimDecoderConfig {
  name?: string;
  processingDelayMs?: number;
  compressedFormats?: Array<{ fourcc: string; sizeimage: number }>;
  /** Needs physically contiguous memory (dma-contig): importing a vmalloc dmabuf fails with EFAULT. */
  contiguous?: boolean;
  /** Memory types the OUTPUT queue supports (default all three). */
  outputMemory?: MemoryType[];
}

export interface SimulationConfig {
  adapters?: SimAdapterConfig[];
  decoders?: SimDecoderConfig[];
}

export interface SimulationStats {
  adapters: Array<{
    adapter: number;
    packetsProduced: number;
    bytesProduced: number;
    bytesDelivered: number;
    bytesDroppedNoBuffer: number;
    filters: Array<{
      path: string;
      pid: number;
      bytesDelivered: number;
      bytesDroppedNoBuffer: number;
      streaming: boolean;
      dead: boolean;
    }>;
  }>;
  decoders: Array<{ path: string; name: string; outputImported: number; importRejected: number; jobsDone: number }>;
}

export interface NativeSimulation {
  injectFault(adapter: number, fault: SimFault): void;
  setBitrate(adapter: number, bitsPerSecond: number): void;
  removeDevice(path: string): void;
  restoreDevice(path: string): void;
  stats(): SimulationStats;
  close(): void;
}

export interface NativeAddon {
  Demux: new (path: string, options?: SimulationOptions & { kind?: 'demux' | 'dvr' }) => NativeDemux;
  Frontend: new (path: string, options?: SimulationOptions & { readOnly?: boolean }) => NativeFrontend;
  Decoder: {
    new (pathOrName: string, options?: SimulationOptions): NativeDecoder;
    find(name: string, options?: SimulationOptions): string | null;
    list(options?: SimulationOptions): Array<{ path: string; name: string }>;
  };
  ConsumerSink: new (options: {
    socketPath: string;
    streamId: string;
    maxInFlight?: number;
    holdTimeoutMs?: number;
  }) => NativeConsumerSink;
  Pump: new (options: {
    demux: NativeDemux;
    sink?: NativeDecoder | NativeConsumerSink | null;
    tsCheck?: boolean;
    eventLimit?: number;
    onEvents?: (events: PumpEvent[]) => void;
  }) => NativePump;
  Simulation: new (config?: SimulationConfig) => NativeSimulation;
  sdNotify(state: string, socketPath?: string): boolean;
  setErrorClass(errorClass: typeof DmxError): void;
}

/** The repository (or installed package) root: where native/ lives. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'native'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('dmx-agent: cannot find the package root (no native/ beside a package.json)');
}

/**
 * The addon path: DMX_NATIVE_ADDON overrides it (the sanitizer build,
 * test/asan/run.sh); otherwise node-gyp's Release build.
 */
export function addonPath(): string {
  const override = process.env.DMX_NATIVE_ADDON;
  if (override) return override;
  return join(packageRoot(), 'native', 'build', 'Release', 'dmx_native.node');
}

function load(): NativeAddon {
  const path = addonPath();
  const require = createRequire(import.meta.url);
  let addon: NativeAddon;
  try {
    addon = require(path) as NativeAddon;
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(`dmx-agent: cannot load the native addon at ${path} (run \`npm install\` to build it): ${reason}`);
  }
  addon.setErrorClass(DmxError);
  return addon;
}

export const native: NativeAddon = load();
