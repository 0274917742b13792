// Every fd and mapping is accounted for: close returns the process to its
// baseline, resize is close-and-reopen and data flows afterwards, and a
// thousand open/resize/close cycles leak nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Demux, openDemuxPool, Pump } from '../../agent/native/index.js';
import {
  DEMUX_PATH,
  ES_PID,
  fdCount,
  type MediaEnv,
  mappingCount,
  openMediaEnv,
  waitFor,
} from '../support/media-env.js';

let env: MediaEnv;
beforeAll(async () => {
  env = await openMediaEnv();
});
afterAll(() => env?.close());

function pool(count: number, size: number): Demux {
  return openDemuxPool({ path: DEMUX_PATH, filter: { pid: ES_PID, output: 'tsdemux-tap' }, count, size, ...env.opts });
}

describe('fd and mapping accounting', () => {
  it('close unmaps every buffer and closes every exported fd', () => {
    const fds = fdCount();
    const maps = mappingCount();
    const demux = pool(8, 12032);
    // At least the node plus one exported DMABUF per buffer, and one
    // mapping per buffer (the simulation also holds a memfd per buffer).
    expect(fdCount()).toBeGreaterThanOrEqual(fds + 1 + 8);
    expect(mappingCount()).toBeGreaterThanOrEqual(maps + 8);
    const before = fdCount();
    demux.exportBuffer(3); // a second export of the same buffer is owned too
    expect(fdCount()).toBe(before + 1);
    demux.close();
    demux.close(); // idempotent
    expect(fdCount()).toBe(fds);
    expect(mappingCount()).toBe(maps);
  });

  it('resizes by close and reopen, and data flows afterwards', async () => {
    const fds = fdCount();
    let demux = pool(4, 12032);
    let pump = new Pump({ demux });
    pump.start();
    await waitFor(() => pump.stats().buffersDequeued >= 2, 30_000, 'data before the resize');
    // REQBUFS on a streaming fd would kill the stream: reopen instead.
    pump.close();
    demux.close();
    demux = pool(6, 188 * 128);
    pump = new Pump({ demux });
    pump.start();
    await waitFor(() => pump.stats().buffersDequeued >= 2, 30_000, 'data after the resize');
    expect(demux.bufferCount).toBe(6);
    expect(pump.stats().bytesDequeued).toBe(pump.stats().buffersDequeued * 188 * 128);
    pump.close();
    demux.close();
    expect(fdCount()).toBe(fds);
  });

  it('leaks nothing across 1000 open/resize/close cycles', () => {
    const cycles = 1000;
    const fds = fdCount();
    const maps = mappingCount();
    for (let i = 0; i < cycles; i++) {
      const demux = pool(2 + (i % 7), 188 * (16 + (i % 5) * 16));
      demux.queueBuffer(0); // streaming, so close must really tear the queue down
      demux.close();
    }
    expect(fdCount()).toBe(fds);
    expect(mappingCount()).toBe(maps);
  }, 300_000);
});
