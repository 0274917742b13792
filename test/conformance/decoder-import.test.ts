// DMABUF import of demux buffers on a V4L2 m2m decoder's OUTPUT queue: both
// import rules of kernel-facts.md, each failing with EINVAL, and the happy
// path where decoded buffers come back and are requeued.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Decoder, type Demux, DmxError, openDemuxPool } from '../../agent/native/index.js';
import { DEMUX_PATH, ES_PID, type MediaEnv, onKernel, openMediaEnv, waitFor } from '../support/media-env.js';

let env: MediaEnv;
beforeAll(async () => {
  env = await openMediaEnv();
});
afterAll(() => env?.close());

function pool(size: number, count = 4): Demux {
  return openDemuxPool({
    path: DEMUX_PATH,
    filter: { pid: ES_PID, output: 'tsdemux-tap' },
    count,
    size,
    ...env.opts,
  });
}

/** vim2m with an RGB24 OUTPUT format of the given size: sizeimage = w*h*3. */
function vim2m(width: number, height: number): Decoder {
  const decoder = new Decoder('vim2m', env.opts);
  decoder.setFormat('output', { fourcc: 'RGB3', width, height });
  decoder.setFormat('capture', { fourcc: 'RGB3', width, height });
  return decoder;
}

async function filled(demux: Demux) {
  for (let i = 0; i < demux.bufferCount; i++) demux.queueBuffer(i);
  return waitFor(() => demux.dequeueBuffer(), 15_000, 'a filled demux buffer');
}

describe('finding and probing the decoder', () => {
  it('finds vim2m by name under /sys/class/video4linux and reports its capabilities', () => {
    const path = Decoder.find('vim2m', env.opts);
    expect(path).toMatch(/^\/dev\/video\d+$/);
    expect(Decoder.find('no-such-decoder', env.opts)).toBeNull();
    const decoder = new Decoder(path!, env.opts);
    try {
      const cap = decoder.querycap();
      expect(cap.driver).toBe('vim2m');
      expect(cap.streaming).toBe(true);
      const formats = decoder.enumFormats('output').map((f) => f.fourcc);
      expect(formats).toContain('RGB3');
      const out = decoder.probeBuffers('output', 'dmabuf');
      expect(out.supportsDmabuf).toBe(true);
      expect(out.supportsMmap).toBe(true);
    } finally {
      decoder.close();
    }
  });

  it('refuses an unknown memory type before the kernel sees it', () => {
    const decoder = vim2m(64, 64);
    try {
      expect(() => decoder.requestBuffers('output', 'bogus' as never, 1)).toThrow(RangeError);
    } finally {
      decoder.close();
    }
  });

  it.runIf(onKernel)("opens vicodec's stateful decoder and offers DMABUF import on OUTPUT", () => {
    const decoder = new Decoder('stateful-decoder', env.opts);
    try {
      expect(decoder.querycap().driver).toBe('vicodec');
      expect(decoder.probeBuffers('output', 'dmabuf').supportsDmabuf).toBe(true);
    } finally {
      decoder.close();
    }
  });
});

describe('importing demux buffers', () => {
  it('imports 12032-byte buffers against a 12288-byte sizeimage; they are processed, come back and are requeued', async () => {
    const demux = pool(12032);
    const decoder = vim2m(64, 64);
    try {
      const prepared = decoder.prepare({ outputCount: demux.bufferCount, captureCount: 4 });
      expect(prepared.outputSizeimage).toBe(12288);
      const fds = demux.ledger().map((b) => b.exportFd);
      for (let i = 0; i < demux.bufferCount; i++) demux.queueBuffer(i);
      const rounds = 5;
      for (let round = 0; round < rounds; round++) {
        const buf = await waitFor(() => demux.dequeueBuffer(), 15_000, 'a filled demux buffer');
        decoder.queueDmabuf(buf.index, fds[buf.index]!, buf.bytesused);
        const back = await waitFor(() => decoder.dequeueOutput(), 15_000, 'the decoder to return the buffer');
        expect(back.index).toBe(buf.index);
        // vim2m wrote a frame; a headless decoder gets its CAPTURE buffer back.
        const frame = await waitFor(() => decoder.dequeueCapture(), 15_000, 'a decoded frame');
        decoder.queueCapture(frame.index);
        demux.queueBuffer(back.index);
      }
      expect(demux.ledger().filter((b) => b.owner === 'kernel')).toHaveLength(demux.bufferCount);
    } finally {
      decoder.close();
      demux.close();
    }
  });

  /** Imports one filled buffer of `poolSize` bytes into vim2m at width x height RGB24; returns the error. */
  async function importError(poolSize: number, width: number, height: number): Promise<DmxError> {
    const demux = pool(poolSize);
    const decoder = vim2m(width, height);
    try {
      decoder.prepare({ outputCount: demux.bufferCount, captureCount: 2 });
      const b = await filled(demux);
      const fd = demux.ledger()[b.index]!.exportFd;
      try {
        decoder.queueDmabuf(0, fd, b.bytesused);
      } catch (err) {
        expect(err).toBeInstanceOf(DmxError);
        return err as DmxError;
      }
      throw new Error('the import succeeded');
    } finally {
      decoder.close();
      demux.close();
    }
  }

  it('rule 1: bytesused above the OUTPUT sizeimage is EINVAL, diagnosed from the three sizes', async () => {
    const e = await importError(12032, 32, 32); // sizeimage 3072
    expect(e).toMatchObject({ code: 'EINVAL', request: 'VIDIOC_QBUF' });
    expect(e.args).toMatchObject({ bytesused: 12032, dmabufSize: 12288, sizeimage: 3072 });
    expect(e.detail).toMatch(/exceeds the decoder's OUTPUT sizeimage/);
    expect(e.reason).toBe('import-bytesused-above-sizeimage');
  });

  it('rule 2: a dmabuf smaller than sizeimage is EINVAL, diagnosed', async () => {
    const e = await importError(3008, 64, 32); // 4096 after page alignment; sizeimage 6144
    expect(e).toMatchObject({ code: 'EINVAL', request: 'VIDIOC_QBUF' });
    expect(e.args).toMatchObject({ bytesused: 3008, dmabufSize: 4096, sizeimage: 6144 });
    expect(e.detail).toMatch(/smaller than the decoder's OUTPUT sizeimage/);
    expect(e.reason).toBe('import-dmabuf-below-sizeimage');
  });

  it('3008-byte buffers against a 3072-byte sizeimage import and come back', async () => {
    const demux = pool(3008);
    const decoder = vim2m(32, 32);
    try {
      decoder.prepare({ outputCount: demux.bufferCount, captureCount: 2 });
      const b = await filled(demux);
      decoder.queueDmabuf(b.index, demux.ledger()[b.index]!.exportFd, b.bytesused);
      const back = await waitFor(() => decoder.dequeueOutput(), 15_000, 'the decoder to return the buffer');
      expect(back.index).toBe(b.index);
    } finally {
      decoder.close();
      demux.close();
    }
  });
});
