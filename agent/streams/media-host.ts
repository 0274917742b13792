/**
 * The one door from the stream supervisors to devices: opens demux pools,
 * decoders, consumer sockets, frontends and pumps on the real kernel or on
 * the simulated receiver. Supervisors never construct native objects
 * themselves, so the backend is chosen in one place (and a test can hand
 * them another host).
 */
import type { Backend } from '../config/types.js';
import {
  ConsumerSink,
  Decoder,
  Demux,
  Frontend,
  type FrontendTuning,
  type PesFilterParams,
  Pump,
  type PumpEvent,
  Simulation,
  type SimulationConfig,
} from '../native/index.js';

export interface PumpOptions {
  demux: Demux;
  sink: Decoder | ConsumerSink | null;
  onEvents: (events: PumpEvent[]) => void;
}

export interface MediaHost {
  readonly backend: Backend;
  /** The simulated receiver behind this host, when backend = sim (for tests and the development console). */
  readonly simulation: Simulation | null;
  openDemux(path: string, kind: 'demux' | 'dvr'): Demux;
  openFrontend(path: string): Frontend;
  /** A decoder's /dev/videoN path by name, or the path itself when given one; null when absent. */
  findDecoder(nameOrPath: string): string | null;
  openDecoder(path: string): Decoder;
  openConsumerSink(options: {
    socketPath: string;
    streamId: string;
    maxInFlight?: number;
    holdTimeoutMs: number;
  }): ConsumerSink;
  createPump(options: PumpOptions): Pump;
  close(): void;
}

export class NativeMediaHost implements MediaHost {
  readonly simulation: Simulation | null;
  private readonly opts: { simulation?: Simulation };

  constructor(
    readonly backend: Backend,
    simConfig: SimulationConfig = {},
  ) {
    this.simulation = backend === 'sim' ? new Simulation(simConfig) : null;
    this.opts = this.simulation ? { simulation: this.simulation } : {};
  }

  openDemux(path: string, kind: 'demux' | 'dvr'): Demux {
    return new Demux(path, { ...this.opts, kind });
  }

  openFrontend(path: string): Frontend {
    return new Frontend(path, this.opts);
  }

  findDecoder(nameOrPath: string): string | null {
    if (nameOrPath.startsWith('/')) {
      return Decoder.list(this.opts).some((d) => d.path === nameOrPath) ? nameOrPath : null;
    }
    return Decoder.find(nameOrPath, this.opts);
  }

  openDecoder(path: string): Decoder {
    return new Decoder(path, this.opts);
  }

  openConsumerSink(options: {
    socketPath: string;
    streamId: string;
    maxInFlight?: number;
    holdTimeoutMs: number;
  }): ConsumerSink {
    return new ConsumerSink(options);
  }

  createPump(options: PumpOptions): Pump {
    return new Pump({ demux: options.demux, sink: options.sink, onEvents: options.onEvents });
  }

  close(): void {
    this.simulation?.close();
  }
}

/** Applies a stream's PID list to a demux fd: the first PID by DMX_SET_PES_FILTER, the rest by DMX_ADD_PID. */
export function applyPesFilter(demux: Demux, pids: number[], output: PesFilterParams['output']): void {
  const [first, ...rest] = pids;
  if (first === undefined) throw new RangeError('a stream filter needs at least one PID');
  demux.setPesFilter({ pid: first, output, start: rest.length === 0 });
  if (rest.length > 0) {
    for (const pid of rest) demux.addPid(pid);
    demux.start();
  }
}

/** Frontend tuning shared by the streams of one adapter: tuned once, released when the last stream lets go. */
export class Tuners {
  private readonly held = new Map<number, { frontend: Frontend; tuning: FrontendTuning; users: number }>();

  constructor(private readonly media: MediaHost) {}

  /** Tunes adapter N's frontend0 (or joins an identical tuning); throws when another stream tuned it elsewhere. */
  acquire(adapter: number, tuning: FrontendTuning): Frontend {
    const current = this.held.get(adapter);
    if (current) {
      if (!sameTuning(current.tuning, tuning)) {
        throw new RangeError(
          `adapter ${adapter} is already tuned to ${describeTuning(current.tuning)}; a stream cannot retune it to ${describeTuning(tuning)}`,
        );
      }
      current.users++;
      return current.frontend;
    }
    const frontend = this.media.openFrontend(`/dev/dvb/adapter${adapter}/frontend0`);
    try {
      frontend.tune(tuning);
    } catch (err) {
      frontend.close();
      throw err;
    }
    this.held.set(adapter, { frontend, tuning, users: 1 });
    return frontend;
  }

  release(adapter: number): void {
    const current = this.held.get(adapter);
    if (!current) return;
    if (--current.users > 0) return;
    this.held.delete(adapter);
    current.frontend.close();
  }

  closeAll(): void {
    for (const { frontend } of this.held.values()) frontend.close();
    this.held.clear();
  }
}

function sameTuning(a: FrontendTuning, b: FrontendTuning): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof FrontendTuning>;
  for (const k of keys) if (a[k] !== b[k]) return false;
  return true;
}

function describeTuning(t: FrontendTuning): string {
  return `${t.deliverySystem} ${t.frequency} Hz`;
}
