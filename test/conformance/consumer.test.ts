// The external consumer sink: DMABUF fds and metadata to a player process
// over a Unix socket (SCM_RIGHTS), and back on its RELEASE. The player is
// the reference consumer in test/consumer/, a real separate process.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConsumerSink, type Demux, openDemuxPool, Pump } from '../../agent/native/index.js';
import { DEMUX_PATH, ES_PID, fdCount, type MediaEnv, openMediaEnv, waitFor } from '../support/media-env.js';
import { REFERENCE_CONSUMER } from '../support/tools.js';

const run = promisify(execFile);

let env: MediaEnv;
let dir: string;
beforeAll(async () => {
  env = await openMediaEnv();
  dir = mkdtempSync(join(tmpdir(), 'dmx-consumer-'));
});
afterAll(() => {
  env?.close();
  rmSync(dir, { recursive: true, force: true });
});

function pool(): Demux {
  return openDemuxPool({
    path: DEMUX_PATH,
    filter: { pid: ES_PID, output: 'tsdemux-tap' },
    count: 8,
    size: 12032,
    ...env.opts,
  });
}

interface ConsumerSummary {
  buffers: number;
  bytes: number;
  badSync: number;
  ccGaps: number;
  [key: string]: unknown;
}

describe('the external consumer round trip', () => {
  it('hands buffers to a player process and takes each back on release, with no fd leaked on either side', async () => {
    const fds = fdCount();
    const demux = pool();
    const sink = new ConsumerSink({ socketPath: join(dir, 'es.sock'), streamId: 'es' });
    const pump = new Pump({ demux, sink });
    try {
      pump.start();
      const { stdout } = await run(REFERENCE_CONSUMER, ['--socket', sink.socketPath, '--count', '12', '--json'], {
        timeout: 60_000,
      });
      const summary = JSON.parse(stdout.trim().split('\n').pop()!) as ConsumerSummary;
      expect(summary.buffers).toBe(12);
      expect(summary.bytes).toBe(12 * 12032);
      expect(summary.badSync).toBe(0);
      expect(summary.ccGaps).toBe(0);
      await waitFor(() => !sink.stats().connected, 10_000, 'the player to disconnect');
      const stats = sink.stats();
      expect(stats.buffersSent).toBeGreaterThanOrEqual(12);
      expect(stats.released + stats.recoveredOnDisconnect).toBe(stats.buffersSent);
      expect(pump.ledger().some((b) => b.owner === 'consumer')).toBe(false);
    } finally {
      pump.close();
      sink.close();
      demux.close();
    }
    expect(fdCount()).toBe(fds);
  });

  it('takes back every buffer a player held when it breaks the protocol', async () => {
    const demux = pool();
    const sink = new ConsumerSink({ socketPath: join(dir, 'bad.sock'), streamId: 'bad' });
    const pump = new Pump({ demux, sink });
    try {
      pump.start();
      await run(REFERENCE_CONSUMER, ['--socket', sink.socketPath, '--count', '3', '--release-bad']).catch(
        () => undefined,
      );
      await waitFor(() => sink.stats().protocolErrors > 0 && !sink.stats().connected, 10_000, 'a protocol error');
      await waitFor(() => !pump.ledger().some((b) => b.owner === 'consumer'), 10_000, 'the buffers to come back');
      await waitFor(() => pump.stats().buffersDequeued > 4, 30_000, 'the stream to keep going');
    } finally {
      pump.close();
      sink.close();
      demux.close();
    }
  });
});
