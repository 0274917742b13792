/**
 * Row 3, event-loop independence: a simulated 80 Mbit/s transport stream
 * into a demux pool, and the JS event loop blocked for 2 s. Measured: the
 * native pump (DQBUF/QBUF on its own thread). Baseline: the same pool driven
 * from JS, DQBUF/QBUF through the Demux object on setImmediate, which stops
 * whenever the event loop does. Both are judged by the simulated kernel's
 * own count of bytes it dropped for want of a queued buffer (converted to the
 * time with zero buffers queued) and by continuity-counter gaps.
 */
import { ALL_PIDS, openDemuxPool, Pump, Simulation } from '../../dist/agent/native/index.js';
import { planPool } from '../../dist/agent/streams/sizing.js';
import { sleep, TUNING, waitFor } from './lib/env.mjs';
import { alternate, median, metric } from './lib/harness.mjs';

const DEMUX_PATH = '/dev/dvb/adapter0/demux0';
const FRONTEND_PATH = '/dev/dvb/adapter0/frontend0';
const BITRATE = 80_000_000;
/** The pool the sizing policy gives an 80 Mbit/s stream with the default targets (40 ms, 500 ms). */
const POOL = planPool({
  bitrate: BITRATE,
  latencyMs: 40,
  bufferingMs: 500,
  count: null,
  size: null,
  decoderSizeimage: null,
});

function blockEventLoop(ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // Deliberately busy: the JS thread is stuck, timers and callbacks wait.
  }
}

/** Continuity-counter gaps over whole TS packets, as the native check counts them. */
class ContinuityCheck {
  constructor() {
    this.last = new Int16Array(0x2000).fill(-1);
    this.gaps = 0;
  }

  feed(bytes) {
    for (let i = 0; i + 188 <= bytes.length; i += 188) {
      if (bytes[i] !== 0x47) continue;
      const pid = ((bytes[i + 1] & 0x1f) << 8) | bytes[i + 2];
      if (pid === 0x1fff) continue;
      const hasPayload = (bytes[i + 3] & 0x10) !== 0;
      const cc = bytes[i + 3] & 0x0f;
      const last = this.last[pid];
      if (hasPayload && last >= 0 && cc !== ((last + 1) & 0x0f) && cc !== last) this.gaps++;
      if (hasPayload) this.last[pid] = cc;
    }
  }
}

function droppedBytes(simulation) {
  return simulation.stats().adapters[0].filters.reduce((sum, f) => sum + f.bytesDroppedNoBuffer, 0);
}

function openPool(simulation) {
  return openDemuxPool({
    path: DEMUX_PATH,
    filter: { pid: ALL_PIDS, output: 'tsdemux-tap' },
    count: POOL.count,
    size: POOL.size,
    export: false,
    simulation,
  });
}

/** Native pump: block, and read the drop count, the pump's zero-queued time and its CC gaps across the block. */
async function nativeRound(simulation, blockMs) {
  const demux = openPool(simulation);
  const pump = new Pump({ demux, tsCheck: true });
  try {
    pump.start();
    await waitFor(() => pump.stats().buffersDequeued >= POOL.count, 30_000, 'the native pump to cycle the pool');
    const before = pump.stats();
    const droppedBefore = droppedBytes(simulation);
    blockEventLoop(blockMs);
    await sleep(200);
    const after = pump.stats();
    return {
      droppedBytes: droppedBytes(simulation) - droppedBefore,
      ccGaps: after.ts.ccGaps - before.ts.ccGaps,
      pumpZeroQueuedMs: after.zeroQueued.totalMs - before.zeroQueued.totalMs,
      buffers: after.buffersDequeued - before.buffersDequeued,
    };
  } finally {
    pump.close();
    demux.close();
  }
}

/** JS-driven: DQBUF until empty, check continuity, QBUF; again on the next setImmediate. */
async function jsRound(simulation, blockMs) {
  const demux = openPool(simulation);
  const check = new ContinuityCheck();
  let buffers = 0;
  let running = true;
  const loop = () => {
    if (!running) return;
    for (let b = demux.dequeueBuffer(); b !== null; b = demux.dequeueBuffer()) {
      check.feed(demux.peek(b.index, 0, b.bytesused));
      buffers++;
      demux.queueBuffer(b.index);
    }
    setImmediate(loop);
  };
  try {
    for (let i = 0; i < demux.bufferCount; i++) demux.queueBuffer(i);
    setImmediate(loop);
    await waitFor(() => buffers >= POOL.count, 30_000, 'the JS loop to cycle the pool');
    const gapsBefore = check.gaps;
    const buffersBefore = buffers;
    const droppedBefore = droppedBytes(simulation);
    blockEventLoop(blockMs);
    await sleep(200);
    return {
      droppedBytes: droppedBytes(simulation) - droppedBefore,
      ccGaps: check.gaps - gapsBefore,
      pumpZeroQueuedMs: null,
      buffers: buffers - buffersBefore,
    };
  } finally {
    running = false;
    await sleep(0);
    demux.close();
  }
}

export async function run({ smoke = false, rounds } = {}) {
  const roundCount = rounds ?? 3;
  const blockMs = smoke ? 300 : 2000;
  const simulation = new Simulation({
    adapters: [
      {
        adapter: 0,
        source: {
          kind: 'synthetic',
          bitrate: BITRATE,
          programs: [{ number: 1, pmtPid: 0x101, streams: [{ pid: 0x100, type: 'video', share: 0.9 }] }],
        },
      },
    ],
  });
  const { Frontend } = await import('../../dist/agent/native/index.js');
  const frontend = new Frontend(FRONTEND_PATH, { simulation });
  try {
    frontend.tune(TUNING);
    await waitFor(() => frontend.status().lock, 10_000, 'frontend lock');
    const samples = await alternate(
      { native: () => nativeRound(simulation, blockMs), js: () => jsRound(simulation, blockMs) },
      roundCount,
    );
    const bytesPerMs = BITRATE / 8 / 1000;
    const lostMs = (list) => median(list.map((s) => s.droppedBytes / bytesPerMs));
    const pick = (list, field) => median(list.map((s) => s[field]));
    return {
      id: 3,
      title: `Event-loop independence (${BITRATE / 1e6} Mbit/s, JS blocked ${blockMs} ms)`,
      rounds: roundCount,
      baseline: 'the same pool driven from JS (DQBUF/QBUF on setImmediate), alternating in the same run',
      metrics: [
        metric('time with zero buffers queued (from bytes dropped)', 'ms', lostMs(samples.native), lostMs(samples.js)),
        metric('continuity gaps during the block', '', pick(samples.native, 'ccGaps'), pick(samples.js, 'ccGaps')),
        metric(
          'bytes dropped for want of a buffer',
          'B',
          pick(samples.native, 'droppedBytes'),
          pick(samples.js, 'droppedBytes'),
        ),
        metric('pump zero-queued counter', 'ms', pick(samples.native, 'pumpZeroQueuedMs')),
        metric('buffers cycled across the block', '', pick(samples.native, 'buffers'), pick(samples.js, 'buffers')),
      ],
      reading:
        'Expected 0 for the native pump, so the ratio is 0.00x; the baseline shows what the block costs without the ' +
        `native thread (the pool of ${POOL.count} x ${POOL.size} B holds ${POOL.holdsMs.toFixed(0)} ms, the rest of the block is lost).`,
      notes: [`pool ${POOL.count} x ${POOL.size} B (sizing policy, 40 ms / 500 ms targets)`, 'all PIDs (0x2000)'],
      samples,
    };
  } finally {
    frontend.close();
    simulation.close();
  }
}
