// What only the simulation can do, checked through the same native API the
// agent uses: faults on demand and replay of a recorded .ts file.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Demux, openDemuxPool, Pump, Simulation } from '../../agent/native/index.js';
import { DEMUX_PATH, ES_PID, type MediaEnv, openMediaEnv, sleep, tsSyncErrors, waitFor } from '../support/media-env.js';

function pool(env: { opts: { simulation?: Simulation } }, pid = ES_PID): Demux {
  return openDemuxPool({
    path: DEMUX_PATH,
    filter: { pid, output: 'tsdemux-tap' },
    count: 8,
    size: 188 * 16,
    ...env.opts,
  });
}

describe('faults', () => {
  let env: MediaEnv;
  beforeAll(async () => {
    env = await openMediaEnv();
  });
  afterAll(() => env?.close());

  it('a stall leaves the pump without buffers to dequeue, and the stream resumes after it', async () => {
    const demux = pool(env);
    const pump = new Pump({ demux });
    try {
      pump.start();
      await waitFor(() => pump.stats().buffersDequeued >= 2, 10_000, 'the stream');
      env.simulation!.injectFault(0, { kind: 'stall', durationMs: 400 });
      await sleep(50);
      const during = pump.stats().buffersDequeued;
      await sleep(200);
      expect(pump.stats().buffersDequeued).toBe(during);
      await waitFor(() => pump.stats().buffersDequeued > during + 2, 10_000, 'the stream to resume');
      expect(pump.stats().ts.ccGaps).toBe(0);
    } finally {
      pump.close();
      demux.close();
    }
  });

  it('a burst raises the delivered rate by its factor', async () => {
    const demux = pool(env);
    const pump = new Pump({ demux });
    /** Bytes per millisecond dequeued over a window of about `ms`. */
    const rate = async (ms: number) => {
      const b0 = pump.stats().bytesDequeued;
      const t0 = performance.now();
      await sleep(ms);
      return (pump.stats().bytesDequeued - b0) / (performance.now() - t0);
    };
    try {
      pump.start();
      await waitFor(() => pump.stats().buffersDequeued >= 2, 10_000, 'the stream');
      const normal = await rate(400);
      env.simulation!.injectFault(0, { kind: 'burst', durationMs: 600, factor: 4 });
      const burst = await rate(400);
      // Rates measured in the same run are compared, never absolute times.
      expect(burst).toBeGreaterThan(normal * 2);
      expect(pump.stats().zeroQueued.totalMs).toBe(0);
    } finally {
      pump.close();
      demux.close();
    }
  });
});

/** A small valid TS: PAT + PMT + one PID with continuous counters. */
function syntheticFile(path: string, packets: number): void {
  const buf = Buffer.alloc(188 * packets, 0xff);
  for (let i = 0; i < packets; i++) {
    const p = i * 188;
    buf[p] = 0x47;
    buf[p + 1] = (ES_PID >> 8) & 0x1f;
    buf[p + 2] = ES_PID & 0xff;
    buf[p + 3] = 0x10 | (i & 0x0f);
  }
  writeFileSync(path, buf);
}

describe('file replay', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'dmx-sim-file-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('replays a .ts file in a loop at the configured rate, with whole packets', async () => {
    const file = join(dir, 'es.ts');
    syntheticFile(file, 1600); // 16 packets per CC cycle: the loop point keeps counters continuous
    const simulation = new Simulation({
      adapters: [{ adapter: 0, requireTune: false, source: { kind: 'file', path: file, bitrate: 2_000_000 } }],
    });
    const demux = pool({ opts: { simulation } });
    const pump = new Pump({ demux });
    try {
      pump.start();
      await waitFor(() => pump.stats().buffersDequeued >= 150, 20_000, 'the file to loop');
      const s = pump.stats();
      expect(s.ts.syncErrors).toBe(0);
      expect(s.ts.ccGaps).toBe(0);
      expect(tsSyncErrors(demux.peek(0))).toBe(0);
    } finally {
      pump.close();
      demux.close();
      simulation.close();
    }
  });

  it('refuses a missing file with a clear error', () => {
    expect(() => new Simulation({ adapters: [{ source: { kind: 'file', path: join(dir, 'absent.ts') } }] })).toThrow(
      /absent\.ts/,
    );
  });
});
