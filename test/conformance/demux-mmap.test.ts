// The DVB demux mmap API as kernel-facts.md describes it, point by point.
// Runs on the simulation (npm test) and on vidtv under qemu (npm run test:kernel).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Demux, DMX_BUFFER_FLAG, DmxError, EXPORT_FLAGS, MAX_DEMUX_BUFFER_SIZE } from '../../agent/native/index.js';
import {
  DEMUX_PATH,
  DVR_PATH,
  ES_PID,
  type MediaEnv,
  onKernel,
  openMediaEnv,
  pageAligned,
  sleep,
  tsPids,
  tsSyncErrors,
  waitFor,
} from '../support/media-env.js';

let env: MediaEnv;
beforeAll(async () => {
  env = await openMediaEnv();
});
afterAll(() => env?.close());

const SIZE = 64 * 188; // 12032: the size seen working on vidtv + vim2m

function openDemux(): Demux {
  const demux = new Demux(DEMUX_PATH, env.opts);
  demux.setPesFilter({ pid: ES_PID, output: 'tsdemux-tap', start: true });
  return demux;
}

function expectDmxError(fn: () => unknown, code: string, request?: string): DmxError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(DmxError);
    const e = err as DmxError;
    expect(e.code).toBe(code);
    expect(e.errno).toBeLessThan(0);
    if (request) expect(e.request).toBe(request);
    return e;
  }
  throw new Error(`expected ${request ?? 'the call'} to fail with ${code}`);
}

async function dequeueOne(demux: Demux, deadlineMs = 15_000) {
  return waitFor(() => demux.dequeueBuffer(), deadlineMs, 'a filled demux buffer');
}

describe('DMX_REQBUFS', () => {
  it('clamps the size to 770048 and reports what it granted', () => {
    const demux = openDemux();
    try {
      const granted = demux.requestBuffers(4, MAX_DEMUX_BUFFER_SIZE + 188 * 10);
      expect(granted.size).toBe(MAX_DEMUX_BUFFER_SIZE);
      expect(granted.count).toBe(4);
      expect(demux.bufferSize).toBe(MAX_DEMUX_BUFFER_SIZE);
    } finally {
      demux.close();
    }
  });

  it('grants fewer buffers than asked beyond the vb2 limit, and never rounds the size to 188', () => {
    const demux = openDemux();
    try {
      const granted = demux.requestBuffers(64, 1000);
      expect(granted.count).toBeGreaterThan(0);
      expect(granted.count).toBeLessThanOrEqual(32);
      expect(granted.size).toBe(1000);
      expect(demux.bufferCount).toBe(granted.count);
    } finally {
      demux.close();
    }
  });

  it('QUERYBUF gives the requested length, distinct page-aligned offsets, and EINVAL for a bad index', () => {
    const demux = openDemux();
    try {
      demux.requestBuffers(4, SIZE);
      const offsets = new Set<number>();
      for (let i = 0; i < 4; i++) {
        const b = demux.queryBuffer(i);
        expect(b.index).toBe(i);
        expect(b.length).toBe(SIZE);
        expect(b.offset % 4096).toBe(0);
        offsets.add(b.offset);
      }
      expect(offsets.size).toBe(4);
      const raw = expectDmxError(() => demux.queryBuffer(7, { raw: true }), 'EINVAL', 'DMX_QUERYBUF');
      expect(raw).toMatchObject({ reason: 'index-out-of-range', args: { index: 7, count: 4 } });
      expect(raw.prevented).toBeUndefined();
      // Without raw the same index is refused before the kernel, with the kernel's answer.
      const refused = expectDmxError(() => demux.queryBuffer(7), 'EINVAL', 'DMX_QUERYBUF');
      expect(refused).toMatchObject({ reason: 'index-out-of-range', prevented: true, args: { index: 7, count: 4 } });
    } finally {
      demux.close();
    }
  });
});

describe('streaming', () => {
  it('starts on the first QBUF; DQBUF before that is EINVAL, then EAGAIN until a buffer is full', async () => {
    const demux = openDemux();
    try {
      demux.requestBuffers(4, SIZE);
      demux.mapBuffers();
      expect(demux.streaming).toBe(false);
      expectDmxError(() => demux.dequeueBuffer(), 'EINVAL', 'DMX_DQBUF');
      demux.queueBuffer(0);
      expect(demux.streaming).toBe(true);
      // Immediately after QBUF nothing is full yet: non-blocking DQBUF says EAGAIN (null).
      expect(demux.dequeueBuffer()).toBeNull();
      for (let i = 1; i < 4; i++) demux.queueBuffer(i);
      const b = await dequeueOne(demux);
      // TS buffers complete only when full.
      expect(b.bytesused).toBe(SIZE);
      expect(b.length).toBe(SIZE);
      expect(b.count).toBe(0);
    } finally {
      demux.close();
    }
  });

  it('fills mapped buffers with whole TS packets of the filtered PID', async () => {
    const demux = openDemux();
    try {
      demux.requestBuffers(4, SIZE);
      demux.mapBuffers();
      for (let i = 0; i < 4; i++) demux.queueBuffer(i);
      for (let n = 0; n < 3; n++) {
        const b = await dequeueOne(demux);
        const bytes = demux.peek(b.index, 0, b.bytesused);
        expect(bytes.length).toBe(SIZE);
        expect(tsSyncErrors(bytes)).toBe(0);
        expect([...tsPids(bytes)]).toEqual([ES_PID]);
        demux.queueBuffer(b.index);
      }
    } finally {
      demux.close();
    }
  });

  it('counts dequeues in `count`, in order', async () => {
    const demux = openDemux();
    try {
      demux.requestBuffers(3, SIZE);
      for (let i = 0; i < 3; i++) demux.queueBuffer(i);
      const counts: number[] = [];
      for (let n = 0; n < 5; n++) {
        const b = await dequeueOne(demux);
        counts.push(b.count);
        demux.queueBuffer(b.index);
      }
      expect(counts).toEqual([0, 1, 2, 3, 4]);
    } finally {
      demux.close();
    }
  });

  it('poll() reports readable only once a buffer is done', async () => {
    const demux = openDemux();
    try {
      demux.requestBuffers(2, SIZE);
      demux.queueBuffer(0);
      demux.queueBuffer(1);
      expect(demux.poll(0).readable).toBe(false);
      await waitFor(() => demux.poll(100).readable, 15_000, 'poll readiness');
      expect(demux.dequeueBuffer()).not.toBeNull();
    } finally {
      demux.close();
    }
  });

  it('QBUF of a buffer already queued, or of a bad index, is EINVAL', () => {
    const demux = openDemux();
    try {
      demux.requestBuffers(2, SIZE);
      demux.queueBuffer(0);
      const e = expectDmxError(() => demux.queueBuffer(0), 'EINVAL', 'DMX_QBUF');
      expect(e.args.index).toBe(0);
      expectDmxError(() => demux.queueBuffer(9, { raw: true }), 'EINVAL', 'DMX_QBUF');
    } finally {
      demux.close();
    }
  });

  it('drops data silently when nothing is queued: no errno, no flag, no count gap', async () => {
    const demux = openDemux();
    try {
      demux.requestBuffers(2, SIZE);
      demux.mapBuffers();
      demux.queueBuffer(0);
      demux.queueBuffer(1);
      const first = await dequeueOne(demux);
      const second = await dequeueOne(demux);
      // Both buffers are out: whatever arrives now is lost. Wait for more
      // than a buffer's worth of data to pass.
      await sleep(onKernel ? 1500 : 300);
      demux.queueBuffer(first.index);
      const third = await dequeueOne(demux);
      // The kernel says nothing: the count goes on and no flag is set. Only
      // the agent's own measures (time with nothing queued, TS continuity
      // counters) can show the loss; test/conformance/pump.test.ts checks those.
      expect(third.count).toBe(second.count + 1);
      expect(third.flags).toBe(0);
      if (env.simulation) {
        const filter = env.simulation
          .stats()
          .adapters[0]!.filters.find((f) => f.path === DEMUX_PATH && f.pid === ES_PID);
        expect(filter?.bytesDroppedNoBuffer).toBeGreaterThan(0);
      }
    } finally {
      demux.close();
    }
  });

  it('has no STREAMOFF: DMX_STOP leaves the queue streaming', async () => {
    const demux = openDemux();
    try {
      demux.requestBuffers(2, SIZE);
      demux.queueBuffer(0);
      demux.stop();
      // The queue still streams, so the kernel refuses a new REQBUFS.
      expectDmxError(() => demux.requestBuffers(2, SIZE, { allowWhileStreaming: true }), 'EBUSY', 'DMX_REQBUFS');
    } finally {
      demux.close();
    }
  });
});

describe('REQBUFS while streaming', () => {
  it('is refused by the agent before the kernel sees it, and the stream keeps flowing', async () => {
    const demux = openDemux();
    try {
      demux.requestBuffers(3, SIZE);
      for (let i = 0; i < 3; i++) demux.queueBuffer(i);
      const e = expectDmxError(() => demux.requestBuffers(3, SIZE), 'EBUSY', 'DMX_REQBUFS');
      expect(e.detail).toMatch(/reopen/);
      const b = await dequeueOne(demux);
      demux.queueBuffer(b.index);
      await dequeueOne(demux);
    } finally {
      demux.close();
    }
  });

  it('when it does reach the kernel, fails EBUSY and leaves the stream dead until the next QBUF', async () => {
    const demux = openDemux();
    try {
      demux.requestBuffers(3, SIZE);
      for (let i = 0; i < 3; i++) demux.queueBuffer(i);
      const b = await dequeueOne(demux);
      expectDmxError(() => demux.requestBuffers(3, SIZE, { allowWhileStreaming: true }), 'EBUSY', 'DMX_REQBUFS');
      // Two buffers are still queued, yet none completes: the failed call
      // reset the stream (dvb_vb2_reqbufs sets the state to NONE). Give it
      // several buffers' worth of data.
      await sleep(onKernel ? 2500 : 400);
      expect(demux.dequeueBuffer()).toBeNull();
      if (env.simulation) {
        const filter = env.simulation.stats().adapters[0]!.filters.find((f) => f.path === DEMUX_PATH);
        expect(filter?.dead).toBe(true);
      }
      // The rejected call freed nothing: the pool is intact, and the next
      // successful QBUF turns streaming back on (dmxdev.c calls
      // dvb_vb2_stream_on when the state says not streaming).
      expect(demux.bufferCount).toBe(3);
      demux.queueBuffer(b.index);
      await dequeueOne(demux);
    } finally {
      demux.close();
    }
  });
});

describe('DMX_EXPBUF', () => {
  it('exports a new page-aligned DMABUF fd per call', () => {
    const demux = openDemux();
    try {
      demux.requestBuffers(2, 3008);
      const a = demux.exportBuffer(0);
      const b = demux.exportBuffer(0);
      expect(a).toBeGreaterThanOrEqual(0);
      expect(b).not.toBe(a);
      const ledger = demux.ledger();
      expect(ledger[0]!.exportFd).toBe(a);
      expect(ledger[0]!.dmabufSize).toBe(pageAligned(3008));
    } finally {
      demux.close();
    }
  });

  it('is EINVAL for flags beyond O_CLOEXEC | O_ACCMODE and for a bad index', () => {
    const demux = openDemux();
    try {
      demux.requestBuffers(2, SIZE);
      const e = expectDmxError(
        () => demux.exportBuffer(0, { flags: EXPORT_FLAGS.O_CLOEXEC | EXPORT_FLAGS.O_APPEND }),
        'EINVAL',
        'DMX_EXPBUF',
      );
      expect(e.detail).toMatch(/O_CLOEXEC/);
      expect(e.reason).toBe('expbuf-flags-unsupported');
      expect(e.args.flags).toBe(EXPORT_FLAGS.O_CLOEXEC | EXPORT_FLAGS.O_APPEND);
      expect(e.path).toBe(DEMUX_PATH);
      expect(e.syscall).toBe('ioctl');
      const refused = expectDmxError(() => demux.exportBuffer(5), 'EINVAL', 'DMX_EXPBUF');
      expect(refused).toMatchObject({ reason: 'index-out-of-range', prevented: true, args: { index: 5, count: 2 } });
    } finally {
      demux.close();
    }
  });
});

describe('the DVR', () => {
  it('streams every PID through mmap when opened O_RDWR with a TS tap on 0x2000', async () => {
    const demux = new Demux(DEMUX_PATH, env.opts);
    const dvr = new Demux(DVR_PATH, { ...env.opts, kind: 'dvr' });
    try {
      demux.setPesFilter({ pid: 0x2000, output: 'ts-tap', start: true });
      dvr.requestBuffers(4, SIZE);
      dvr.mapBuffers();
      dvr.exportBuffers();
      for (let i = 0; i < 4; i++) dvr.queueBuffer(i);
      const b = await waitFor(() => dvr.dequeueBuffer(), 15_000, 'a DVR buffer');
      const bytes = dvr.peek(b.index, 0, b.bytesused);
      expect(tsSyncErrors(bytes)).toBe(0);
      const pids = tsPids(bytes);
      expect(pids.size).toBeGreaterThan(1);
      expect(pids.has(ES_PID) || pids.has(0)).toBe(true);
    } finally {
      dvr.close();
      demux.close();
    }
  });
});

describe('the DVR, reopened', () => {
  it('can be closed and reopened O_RDWR with a new pool size (resize), and streams again', async () => {
    const demux = new Demux(DEMUX_PATH, env.opts);
    try {
      demux.setPesFilter({ pid: 0x2000, output: 'ts-tap', start: true });
      for (const size of [SIZE, 2 * SIZE]) {
        const dvr = new Demux(DVR_PATH, { ...env.opts, kind: 'dvr' });
        try {
          expect(dvr.requestBuffers(3, size).size).toBe(size);
          dvr.mapBuffers();
          for (let i = 0; i < 3; i++) dvr.queueBuffer(i);
          const b = await waitFor(() => dvr.dequeueBuffer(), 15_000, `a DVR buffer of ${size} bytes`);
          expect(b.bytesused).toBe(size);
        } finally {
          dvr.close();
        }
      }
    } finally {
      demux.close();
    }
  });
});

describe('flags', () => {
  // vidtv cannot inject faults; the simulation models dvb_vb2_fill_buffer's
  // rule that flags seen while filling are reported on the next dequeue.
  it.skipIf(onKernel)('reports a TEI seen while filling on the next dequeued buffer', async () => {
    const demux = openDemux();
    try {
      demux.requestBuffers(4, SIZE);
      for (let i = 0; i < 4; i++) demux.queueBuffer(i);
      const before = await dequeueOne(demux);
      expect(before.flags).toBe(0);
      demux.queueBuffer(before.index);
      env.simulation!.injectFault(0, { kind: 'tei', pid: ES_PID, count: 1 });
      let flagged = 0;
      for (let n = 0; n < 6 && !flagged; n++) {
        const b = await dequeueOne(demux);
        flagged = b.flags & DMX_BUFFER_FLAG.TEI;
        demux.queueBuffer(b.index);
      }
      expect(flagged).toBe(DMX_BUFFER_FLAG.TEI);
    } finally {
      demux.close();
    }
  });
});
