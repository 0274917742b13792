// Smoke run of a cross-built addon on its own architecture's Node, under
// qemu-user (native/cross/smoke.sh <arm64|armhf> runs it):
//   DMX_NATIVE_ADDON=<addon> node test/cross/smoke.mjs <expected process.arch>
// Loads the addon through the agent's own loader (dist/agent/native), opens
// the simulation shaped like vidtv + vim2m (test/support/media-env.ts), and
// streams a demux pool into the simulated decoder through the Pump for a
// short while. Fails (exit 1) unless buffers
// flowed intact, the decoder returned them, and closing released every fd
// and buffer mapping opened on the way. Plain Node, no vitest: it must run
// on Node 18 and under emulation.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const expectedArch = process.argv[2];
const addon = process.env.DMX_NATIVE_ADDON;
const distEntry = fileURLToPath(new URL('../../dist/agent/native/index.js', import.meta.url));

// The same devices and stream as the conformance suite's simulation.
const DEMUX_PATH = '/dev/dvb/adapter0/demux0';
const FRONTEND_PATH = '/dev/dvb/adapter0/frontend0';
const ES_PID = 0x111;
const SIM_CONFIG = {
  adapters: [
    {
      adapter: 0,
      source: {
        kind: 'synthetic',
        bitrate: 2_000_000,
        programs: [
          {
            number: 1,
            pmtPid: 0x101,
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
const BUFFER_SIZE = 188 * 64;
const BUFFER_COUNT = 8;
const RETURNED_WANTED = 2 * BUFFER_COUNT; // every buffer round the loop twice
// Liveness bound only (a stream that never flows), generous for emulation.
const DEADLINE_MS = 120_000;

const failures = [];
function check(condition, what) {
  if (!condition) failures.push(what);
}

function fdCount() {
  return readdirSync('/proc/self/fd').length;
}

/** Mappings of the simulation's buffer memfds (as media-env.ts counts them). */
function mappingCount() {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.includes('memfd:dmx-sim-vb2')).length;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitFor(condition, what) {
  const end = Date.now() + DEADLINE_MS;
  while (!condition()) {
    if (Date.now() > end) throw new Error(`no ${what} within ${DEADLINE_MS / 1000} s`);
    await sleep(20);
  }
}

async function main() {
  if (!expectedArch) throw new Error('usage: node test/cross/smoke.mjs <expected process.arch: arm64, arm, ...>');
  if (process.arch !== expectedArch) throw new Error(`running on ${process.arch}, expected ${expectedArch}`);
  if (!addon || !existsSync(addon)) throw new Error(`DMX_NATIVE_ADDON must name the cross-built addon (got ${addon})`);
  if (!existsSync(distEntry)) throw new Error(`${distEntry} is missing: run npm run build:ts`);

  const { Decoder, Frontend, Pump, Simulation, openDemuxPool } = await import(distEntry);
  // The loader took DMX_NATIVE_ADDON: the cross-built file is mapped.
  check(readFileSync('/proc/self/maps', 'utf8').includes(addon), `${addon} is not mapped into this process`);

  const fdsBefore = fdCount();
  const mapsBefore = mappingCount();
  const simulation = new Simulation(SIM_CONFIG);
  const opts = { simulation };
  const frontend = new Frontend(FRONTEND_PATH, opts);
  frontend.tune({ deliverySystem: 'DVBT', frequency: 474_000_000 });
  await waitFor(() => frontend.status().lock, 'frontend lock');

  const demux = openDemuxPool({
    path: DEMUX_PATH,
    filter: { pid: ES_PID, output: 'tsdemux-tap' },
    count: BUFFER_COUNT,
    size: BUFFER_SIZE,
    ...opts,
  });
  const decoder = new Decoder('vim2m', opts);
  decoder.setFormat('output', { fourcc: 'RGB3', width: 64, height: 64 });
  decoder.setFormat('capture', { fourcc: 'RGB3', width: 64, height: 64 });
  decoder.prepare({ outputCount: demux.bufferCount, captureCount: 4 });
  const events = [];
  const pump = new Pump({ demux, sink: decoder, onEvents: (batch) => events.push(...batch) });

  let stats;
  let decoderStats;
  let fdsOpen;
  let mapsOpen;
  try {
    pump.start();
    await waitFor(
      () => decoder.stats().returned >= RETURNED_WANTED,
      `${RETURNED_WANTED} buffers back from the decoder`,
    );
    fdsOpen = fdCount();
    mapsOpen = mappingCount();
    pump.stop();
    stats = pump.stats();
    decoderStats = decoder.stats();
    check(
      demux.ledger().every((b) => b.owner === 'kernel'),
      'after stop every buffer is back in the kernel queue',
    );
  } finally {
    pump.close();
    decoder.close();
    demux.close();
    frontend.close();
    simulation.close();
  }
  // Let the pump's last events arrive before counting what is left open.
  await sleep(50);

  check(stats.buffersDequeued >= RETURNED_WANTED, `dequeued ${stats.buffersDequeued} buffers`);
  check(stats.bytesDequeued === stats.buffersDequeued * BUFFER_SIZE, 'every dequeued buffer was full');
  check(stats.ts.packets === stats.buffersDequeued * 64, `TS packets ${stats.ts.packets} = 64 per buffer`);
  check(stats.ts.syncErrors === 0, `TS sync errors: ${stats.ts.syncErrors}`);
  check(stats.ts.ccGaps === 0, `continuity gaps: ${stats.ts.ccGaps}`);
  check(Object.keys(stats.errors).length === 0, `pump errors: ${JSON.stringify(stats.errors)}`);
  check(stats.sink !== 'discard', `the pump fed the decoder (sink ${stats.sink})`);
  check(decoderStats.importRejected === 0, `decoder rejected ${decoderStats.importRejected} imports`);
  check(decoderStats.captureFrames > 0, 'the decoder produced capture frames');
  check(
    events.some((e) => e.type === 'state' && e.state === 'running'),
    'the pump reported the running state',
  );
  check(!events.some((e) => e.type === 'error'), 'the pump posted no error event');
  // While streaming, the pool held fds (demux, decoder, one DMABUF per
  // buffer) and mappings; closing must give every one back.
  check(mapsOpen >= mapsBefore + BUFFER_COUNT, `${mapsOpen - mapsBefore} buffer mappings while streaming`);
  check(fdsOpen >= fdsBefore + 1 + BUFFER_COUNT, `${fdsOpen - fdsBefore} more fds while streaming`);
  const fdsAfter = fdCount();
  const mapsAfter = mappingCount();
  check(fdsAfter === fdsBefore, `fds ${fdsBefore} before, ${fdsAfter} after close`);
  check(mapsAfter === mapsBefore, `buffer mappings ${mapsBefore} before, ${mapsAfter} after close`);

  const summary =
    `node ${process.version} ${process.arch}: buffers=${stats.buffersDequeued}` +
    ` bytes=${stats.bytesDequeued} packets=${stats.ts.packets} decoder_returned=${decoderStats.returned}` +
    ` capture_frames=${decoderStats.captureFrames} fds=${fdsBefore}/${fdsOpen}/${fdsAfter}` +
    ` buffer_maps=${mapsBefore}/${mapsOpen}/${mapsAfter}`;
  if (failures.length > 0) {
    console.error(`smoke FAILED (${summary}):\n  ${failures.join('\n  ')}`);
    process.exitCode = 1;
  } else {
    console.log(`smoke ok: ${summary}`);
  }
}

main().catch((err) => {
  console.error(`smoke FAILED: ${err instanceof Error ? err.stack : err}`);
  process.exit(1);
});
