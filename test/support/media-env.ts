/**
 * The one place the conformance suite learns which backend it runs on
 * (DMX_TEST_BACKEND: 'sim' on the host, 'kernel' inside the qemu VM) and
 * what that backend's devices are. Each backend gives the same paths,
 * PIDs and decoder names, so the tests themselves are identical.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Frontend, Simulation, type SimulationConfig } from '../../agent/native/index.js';

export type Backend = 'sim' | 'kernel';
export const backend: Backend = process.env.DMX_TEST_BACKEND === 'kernel' ? 'kernel' : 'sim';
export const onKernel = backend === 'kernel';

export const ADAPTER = '/dev/dvb/adapter0';
export const DEMUX_PATH = `${ADAPTER}/demux0`;
export const DVR_PATH = `${ADAPTER}/dvr0`;
export const FRONTEND_PATH = `${ADAPTER}/frontend0`;
/** vidtv's audio elementary stream; the simulation carries one on the same PID. */
export const ES_PID = 0x111;
export const PMT_PID = 0x101;

/** A simulated receiver shaped like vidtv + vim2m (same paths, PIDs, names). */
export const SIM_CONFIG: SimulationConfig = {
  adapters: [
    {
      adapter: 0,
      source: {
        kind: 'synthetic',
        bitrate: 2_000_000,
        programs: [
          {
            number: 1,
            pmtPid: PMT_PID,
            streams: [
              { pid: 0x100, type: 'video', share: 0.5 },
              { pid: ES_PID, type: 'audio', share: 0.3 },
            ],
          },
        ],
      },
    },
  ],
  decoders: [{ name: 'vim2m', processingDelayMs: 2 }],
};

/** vidtv's frontend parameters (kernel-facts.md): nothing flows until tuned. */
export const TUNING = { deliverySystem: 'DVBT', frequency: 474_000_000 } as const;

export interface MediaEnv {
  simulation: Simulation | undefined;
  /** Spread into every open: `{ simulation }` on the sim, `{}` on the kernel. */
  opts: { simulation?: Simulation };
  frontend: Frontend;
  close(): void;
}

/** Opens the backend and tunes its frontend, waiting for lock. */
export async function openMediaEnv(config: SimulationConfig = SIM_CONFIG): Promise<MediaEnv> {
  const simulation = onKernel ? undefined : new Simulation(config);
  const opts = simulation ? { simulation } : {};
  const frontend = new Frontend(FRONTEND_PATH, opts);
  frontend.tune(TUNING);
  await waitFor(() => frontend.status().lock, 10_000, 'frontend lock');
  return {
    simulation,
    opts,
    frontend,
    close() {
      frontend.close();
      simulation?.close();
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Polls `check` until it holds. The deadline is a liveness bound (a stream
 * that never delivers), never a performance assertion.
 */
export async function waitFor<T>(
  check: () => T | undefined | null | false,
  deadlineMs: number,
  what: string,
): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const value = check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out after ${deadlineMs} ms waiting for ${what}`);
    await sleep(10);
  }
}

/** Open fds of this process. */
export function fdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/**
 * Mappings of demux buffers in this process: of the DVB device nodes on the
 * kernel, of the simulation's buffer memfds on the simulation. (V8 and
 * malloc map and unmap memory of their own, so a total count is noise.)
 */
export function mappingCount(): number {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.includes('/dev/dvb/') || line.includes('memfd:dmx-sim-vb2')).length;
}

/** Every 188th byte from 0 is a TS sync byte. */
export function tsSyncErrors(bytes: Buffer): number {
  let bad = 0;
  for (let i = 0; i < bytes.length; i += 188) if (bytes[i] !== 0x47) bad++;
  return bad;
}

/** The PIDs of the packets in `bytes`. */
export function tsPids(bytes: Buffer): Set<number> {
  const pids = new Set<number>();
  for (let i = 0; i + 188 <= bytes.length; i += 188) pids.add(((bytes[i + 1]! & 0x1f) << 8) | bytes[i + 2]!);
  return pids;
}

/** Page-aligned size as the kernel allocates it. */
export function pageAligned(bytes: number): number {
  return Math.ceil(bytes / 4096) * 4096;
}
