// Tuning by DTV properties, lock status and DVBv5 statistics; and section
// filters delivering whole PSI sections through the mmap queue.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Demux, Frontend } from '../../agent/native/index.js';
import { DEMUX_PATH, FRONTEND_PATH, type MediaEnv, openMediaEnv, TUNING, waitFor } from '../support/media-env.js';

let env: MediaEnv;
beforeAll(async () => {
  env = await openMediaEnv();
});
afterAll(() => env?.close());

describe('the frontend', () => {
  it('reports lock after tuning, and DVBv5 statistics with their scales', () => {
    const info = env.frontend.info();
    expect(info.name.length).toBeGreaterThan(0);
    const status = env.frontend.status();
    expect(status).toMatchObject({ signal: true, carrier: true, sync: true, lock: true });
    const stats = env.frontend.statistics();
    expect(Object.keys(stats).sort()).toEqual(
      [
        'cnr',
        'errorBlocks',
        'postErrorBits',
        'postTotalBits',
        'preErrorBits',
        'preTotalBits',
        'signal',
        'totalBlocks',
      ].sort(),
    );
    // Each statistic is either unavailable (null) or carries a known scale.
    for (const stat of Object.values(stats)) {
      if (stat !== null) expect(['decibel', 'relative', 'counter']).toContain(stat.scale);
    }
    expect(stats.signal ?? stats.cnr).not.toBeNull();
  });

  it('can be opened a second time read-only while tuned, and reads the same lock', () => {
    const fe = new Frontend(FRONTEND_PATH, { ...env.opts, readOnly: true });
    try {
      expect(fe.status().lock).toBe(true);
    } finally {
      fe.close();
    }
  });

  it('retunes to the same multiplex and locks again', async () => {
    env.frontend.tune(TUNING);
    await waitFor(() => env.frontend.status().lock, 10_000, 'lock after retune');
  });
});

describe('section filters', () => {
  it('deliver the PAT as a whole section through the mmap queue', async () => {
    const demux = new Demux(DEMUX_PATH, env.opts);
    try {
      demux.setSectionFilter({ pid: 0, filter: [0x00], mask: [0xff], start: true });
      demux.requestBuffers(4, 4096);
      demux.mapBuffers();
      for (let i = 0; i < 4; i++) demux.queueBuffer(i);
      const b = await waitFor(() => demux.dequeueBuffer(), 15_000, 'a PAT section');
      // Read the whole buffer: 6.1 reports the last chunk copied as
      // bytesused for early-flushed section buffers, not the section size.
      const bytes = demux.peek(b.index);
      expect(bytes[0]).toBe(0x00); // table_id: program_association_section
      const sectionLength = ((bytes[1]! & 0x0f) << 8) | bytes[2]!;
      // Sections flush the buffer early: it holds at least the whole section.
      expect(sectionLength).toBeGreaterThanOrEqual(9);
      expect(b.bytesused).toBeGreaterThan(0);
      expect(b.bytesused).toBeLessThan(4096);
    } finally {
      demux.close();
    }
  });
});
