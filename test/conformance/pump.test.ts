// The native pump: buffers cycle demux -> sink -> demux on a native thread,
// with the counters that make silent loss visible, through a JS stall.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Decoder, type Demux, openDemuxPool, Pump, type PumpEvent } from '../../agent/native/index.js';
import { DEMUX_PATH, ES_PID, type MediaEnv, onKernel, openMediaEnv, sleep, waitFor } from '../support/media-env.js';

let env: MediaEnv;
beforeAll(async () => {
  env = await openMediaEnv();
});
afterAll(() => env?.close());

function pool(size = 12032, count = 8): Demux {
  return openDemuxPool({ path: DEMUX_PATH, filter: { pid: ES_PID, output: 'tsdemux-tap' }, count, size, ...env.opts });
}

/** Bytes the simulated kernel dropped for lack of a queued buffer (sim only). */
function droppedNoBuffer(): number | undefined {
  return env.simulation?.stats().adapters[0]?.filters.find((f) => f.pid === ES_PID)?.bytesDroppedNoBuffer;
}

function blockEventLoop(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // Deliberately busy: the JS thread is stuck, timers and callbacks wait.
  }
}

describe('with no sink (discard)', () => {
  it('cycles every buffer through the kernel and counts bytes, packets and flags', async () => {
    const demux = pool();
    const pump = new Pump({ demux });
    try {
      pump.start();
      expect(pump.running).toBe(true);
      await waitFor(() => pump.stats().buffersDequeued >= 10, 30_000, '10 buffers');
      const s = pump.stats();
      expect(s.bytesDequeued).toBe(s.buffersDequeued * 12032);
      expect(s.ts.packets).toBe(s.buffersDequeued * 64);
      expect(s.ts.syncErrors).toBe(0);
      expect(s.ts.ccGaps).toBe(0);
      expect(s.sink).toBe('discard');
      expect(s.errors).toEqual({});
      // JS-level QBUF/DQBUF are refused while the pump drives the pool.
      expect(() => demux.dequeueBuffer()).toThrow(/pump/);
      expect(() => demux.close()).toThrow(/pump/);
    } finally {
      pump.close();
      demux.close();
    }
    expect(demux.fd).toBe(-1);
  });

  it('loses nothing while the JS event loop is blocked for 2 seconds', async () => {
    const demux = pool();
    const pump = new Pump({ demux });
    try {
      pump.start();
      await waitFor(() => pump.stats().buffersDequeued >= 3, 30_000, 'the stream to start');
      const before = pump.stats();
      const droppedBefore = droppedNoBuffer();
      blockEventLoop(2000);
      const after = pump.stats();
      // The native thread kept dequeuing while JS was stuck...
      expect(after.buffersDequeued).toBeGreaterThan(before.buffersDequeued);
      // ...and never left the kernel without a buffer, so nothing was lost.
      expect(after.zeroQueued.totalMs).toBe(0);
      expect(after.zeroQueued.episodes).toBe(0);
      expect(after.ts.ccGaps).toBe(0);
      if (env.simulation) {
        const droppedAfter = droppedNoBuffer();
        expect(droppedAfter).toBe(droppedBefore);
      }
    } finally {
      pump.close();
      demux.close();
    }
  });

  it.skipIf(onKernel)('counts continuity-counter gaps per PID from the mapped buffers', async () => {
    const demux = pool();
    const pump = new Pump({ demux });
    try {
      pump.start();
      await waitFor(() => pump.stats().buffersDequeued >= 2, 30_000, 'the stream to start');
      env.simulation!.injectFault(0, { kind: 'cc-gap', pid: ES_PID, count: 3 });
      const s = await waitFor(
        () => {
          const st = pump.stats();
          return st.ts.ccGaps >= 3 ? st : null;
        },
        30_000,
        'three CC gaps',
      );
      expect(s.ts.ccGapsByPid[String(ES_PID)]).toBe(3);
      // TS-packet filters never get DISCONTINUITY_DETECTED from the kernel
      // (dvb_demux.c checks continuity only for payload and section
      // filters): the agent's own count is the only one.
      expect(s.flags.discontinuityDetected).toBe(0);
    } finally {
      pump.close();
      demux.close();
    }
  });
});

describe('a dead stream', () => {
  it('is reported once, and the pump backs off instead of spinning on a readable-but-empty demux', async () => {
    const demux = pool();
    // Every buffer queued, then a REQBUFS the kernel rejects: on 6.1 the
    // stream dies and poll falls back to the old ring buffer, so the node
    // polls readable while DMX_DQBUF has nothing.
    for (let i = 0; i < demux.bufferCount; i++) demux.queueBuffer(i);
    expect(() => demux.requestBuffers(demux.bufferCount, 12032, { allowWhileStreaming: true })).toThrow(/EBUSY/);
    const events: PumpEvent[] = [];
    const pump = new Pump({ demux, onEvents: (batch) => events.push(...batch) });
    try {
      pump.start();
      await waitFor(
        () => events.find((e) => e.type === 'note' && e.what === 'demux-poll-spin'),
        30_000,
        'the spin note',
      );
      await sleep(300);
      expect(events.filter((e) => e.type === 'note' && e.what === 'demux-poll-spin')).toHaveLength(1);
      expect(pump.stats().buffersDequeued).toBe(0);
    } finally {
      pump.close();
      demux.close();
    }
  });
});

describe('into a V4L2 decoder', () => {
  function vim2m(): Decoder {
    const decoder = new Decoder('vim2m', env.opts);
    decoder.setFormat('output', { fourcc: 'RGB3', width: 64, height: 64 });
    decoder.setFormat('capture', { fourcc: 'RGB3', width: 64, height: 64 });
    return decoder;
  }

  it('imports every buffer as a DMABUF and requeues it when the decoder returns it', async () => {
    const demux = pool();
    const decoder = vim2m();
    const events: PumpEvent[] = [];
    decoder.prepare({ outputCount: demux.bufferCount, captureCount: 4 });
    const pump = new Pump({ demux, sink: decoder, onEvents: (batch) => events.push(...batch) });
    try {
      pump.start();
      await waitFor(() => decoder.stats().returned >= 8, 60_000, '8 buffers back from the decoder');
      const s = pump.stats();
      const d = decoder.stats();
      expect(d.importRejected).toBe(0);
      expect(d.captureFrames).toBeGreaterThan(0);
      expect(s.sinkTime.returned).toBeGreaterThanOrEqual(8);
      expect(s.sinkTime.holdMsMean).toBeGreaterThan(0);
      // Every returned buffer is in exactly one bucket of the hold-time histogram.
      const { boundsMs, counts } = s.sinkTime.holdHistogram;
      expect(boundsMs).toEqual([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]);
      expect(counts).toHaveLength(boundsMs.length + 1);
      expect(counts.reduce((sum, n) => sum + n, 0)).toBe(s.sinkTime.returned);
      // The longest hold lies in the last non-empty bucket.
      let last = counts.length - 1;
      while (last > 0 && counts[last] === 0) last--;
      expect(s.sinkTime.holdMsMax).toBeLessThanOrEqual(last < boundsMs.length ? boundsMs[last]! : Infinity);
      if (last > 0) expect(s.sinkTime.holdMsMax).toBeGreaterThan(boundsMs[last - 1]!);
      // Every buffer is somewhere known.
      for (const entry of pump.ledger()) expect(['kernel', 'decoder', 'agent']).toContain(entry.owner);
      expect(() => decoder.close()).toThrow(/pump/);
      pump.stop();
      // After stop every buffer is back in the kernel's queue.
      expect(demux.ledger().every((b) => b.owner === 'kernel')).toBe(true);
      await sleep(50);
      expect(events.some((e) => e.type === 'state' && e.state === 'running')).toBe(true);
    } finally {
      pump.close();
      decoder.close();
      demux.close();
    }
  });

  it('reports an import EINVAL with its diagnosis as an event, and keeps the demux cycling', async () => {
    const demux = pool();
    const decoder = new Decoder('vim2m', env.opts);
    decoder.setFormat('output', { fourcc: 'RGB3', width: 32, height: 32 }); // sizeimage 3072 < 12032
    decoder.setFormat('capture', { fourcc: 'RGB3', width: 32, height: 32 });
    decoder.prepare({ outputCount: demux.bufferCount, captureCount: 2 });
    const events: PumpEvent[] = [];
    const pump = new Pump({ demux, sink: decoder, onEvents: (batch) => events.push(...batch) });
    try {
      pump.start();
      const err = await waitFor(
        () => events.find((e): e is Extract<PumpEvent, { type: 'error' }> => e.type === 'error'),
        30_000,
        'an error event',
      );
      expect(err.error.code).toBe('EINVAL');
      expect(err.error.request).toBe('VIDIOC_QBUF');
      expect(err.error.args).toMatchObject({ bytesused: 12032, sizeimage: 3072 });
      // A posted error carries the native reason like a thrown one.
      expect(err.error.reason).toBe('import-bytesused-above-sizeimage');
      expect(err.error.prevented).toBeUndefined();
      await waitFor(() => pump.stats().buffersDequeued >= 5, 30_000, 'the demux to keep cycling');
      const s = pump.stats();
      expect(s.errors['VIDIOC_QBUF:EINVAL']).toBeGreaterThan(0);
      expect(s.sinkTime.declined).toBeGreaterThan(0);
      expect(decoder.stats().importRejected).toBeGreaterThan(0);
    } finally {
      pump.close();
      decoder.close();
      demux.close();
    }
  });

  it.skipIf(onKernel)('keeps the demux pool cycling when the decoder goes away', async () => {
    const demux = pool();
    const decoder = vim2m();
    decoder.prepare({ outputCount: demux.bufferCount, captureCount: 4 });
    const events: PumpEvent[] = [];
    const pump = new Pump({ demux, sink: decoder, onEvents: (batch) => events.push(...batch) });
    try {
      pump.start();
      await waitFor(() => decoder.stats().returned >= 2, 30_000, 'the decoder to work');
      env.simulation!.removeDevice(decoder.path);
      await waitFor(() => events.find((e) => e.type === 'note' && e.what === 'decoder-gone'), 30_000, 'decoder-gone');
      const at = pump.stats().buffersDequeued;
      await waitFor(() => pump.stats().buffersDequeued >= at + 5, 30_000, 'buffers to keep cycling');
      expect(decoder.stats().gone).toBe(true);
      expect(pump.ledger().some((b) => b.owner === 'decoder')).toBe(false);
    } finally {
      pump.close();
      decoder.close();
      demux.close();
    }
  });
});
