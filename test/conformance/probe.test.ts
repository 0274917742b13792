// The capability probe finds the adapter with DVB mmap and the decoders that
// import DMABUFs, on both backends.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { probe } from '../../agent/probe.js';
import { type MediaEnv, onKernel, openMediaEnv } from '../support/media-env.js';

let env: MediaEnv;
beforeAll(async () => {
  env = await openMediaEnv();
});
afterAll(() => env?.close());

describe('probe', () => {
  it('reports a usable media path: DVB mmap on adapter 0 and vim2m importing DMABUFs', () => {
    const result = probe(env.opts);
    expect(result.problems).toEqual([]);
    expect(result.mediaPathUsable).toBe(true);
    expect(result.adapters[0]).toMatchObject({ adapter: 0, demux: true, dvr: true, demuxMmap: true, dvrMmap: true });
    const vim2m = result.decoders.find((d) => d.name === 'vim2m');
    expect(vim2m?.supportsDmabufImport).toBe(true);
    expect(vim2m?.outputFormats.map((f) => f.fourcc)).toContain('RGB3');
    if (onKernel) expect(result.decoders.map((d) => d.name)).toContain('stateful-decoder');
  });
});
