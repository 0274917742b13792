// The reconnect chart: a valid PNG of the asked size, with its titles, ticks and
// legend drawn (pixels in the margins), and a label the font cannot draw refused
// rather than drawn with characters missing.
import { inflateSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { CHART_COLORS, canDraw, type HistogramChart, histogramPng, niceStep } from './histogram-png.js';

interface Decoded {
  width: number;
  height: number;
  /** RGB of (x, y). */
  at(x: number, y: number): [number, number, number];
}

/** Reads back what histogramPng writes: 8-bit truecolour, one IDAT, filter 0 on every row. */
function decode(png: Buffer): Decoded {
  expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  const chunks = new Map<string, Buffer>();
  for (let offset = 8; offset < png.length; ) {
    const length = png.readUInt32BE(offset);
    chunks.set(png.toString('ascii', offset + 4, offset + 8), png.subarray(offset + 8, offset + 8 + length));
    offset += 12 + length;
  }
  const header = chunks.get('IHDR')!;
  const width = header.readUInt32BE(0);
  const height = header.readUInt32BE(4);
  expect([header[8], header[9]]).toEqual([8, 2]);
  const raw = inflateSync(chunks.get('IDAT')!);
  expect(raw.length).toBe((width * 3 + 1) * height);
  return {
    width,
    height,
    at: (x, y) => {
      const index = y * (width * 3 + 1) + 1 + x * 3;
      return [raw[index]!, raw[index + 1]!, raw[index + 2]!];
    },
  };
}

/** Pixels of `rgb` inside a rectangle. */
function count(image: Decoded, rgb: readonly number[], x0: number, y0: number, x1: number, y1: number): number {
  let found = 0;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) if (image.at(x, y).every((value, i) => value === rgb[i])) found += 1;
  }
  return found;
}

const CHART: HistogramChart = {
  bins: [0, 40, 120, 90, 10],
  binSeconds: 0.1,
  startSeconds: -0.1,
  title: 'Reconnects: 500 devices',
  xTitle: 'seconds after the broker listened again',
  yTitle: 'connects per 200 ms',
  lines: [
    { value: 200, color: 'red', label: 'limit: 2 x N / base = 200 per 200 ms' },
    { value: 100, color: 'green', label: "the policy's average" },
  ],
};

describe('histogramPng', () => {
  it('draws bars, lines, titles and ticks', () => {
    const image = decode(histogramPng(CHART, 800, 400));
    expect([image.width, image.height]).toEqual([800, 400]);
    expect(count(image, CHART_COLORS.bar, 0, 0, 800, 400)).toBeGreaterThan(1000);
    expect(count(image, CHART_COLORS.red, 0, 0, 800, 400)).toBeGreaterThan(500);
    expect(count(image, CHART_COLORS.green, 0, 0, 800, 400)).toBeGreaterThan(500);
    // Text in the margins: the title and legend above, the x title below, the y title at the left.
    expect(count(image, CHART_COLORS.axis, 0, 0, 800, 30)).toBeGreaterThan(100);
    expect(count(image, CHART_COLORS.axis, 0, 370, 800, 400)).toBeGreaterThan(200);
    expect(count(image, CHART_COLORS.axis, 0, 100, 30, 300)).toBeGreaterThan(150);
  });

  it('refuses a label with a character the font lacks', () => {
    expect(canDraw("limit: 2 x N / base = 1,000 (100%) per 0.1 s + the policy's")).toBe(true);
    expect(canDraw('≤ 2000')).toBe(false);
    expect(() => histogramPng({ ...CHART, yTitle: 'connects ≤ limit' })).toThrow(/no "≤"/);
  });

  it('steps ticks on 1, 2 and 5 times a power of ten', () => {
    expect([0.03, 0.1, 0.15, 3, 240, 2001].map(niceStep)).toEqual([0.05, 0.1, 0.2, 5, 500, 5000]);
  });
});
