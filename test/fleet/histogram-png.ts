/**
 * A bar chart as a PNG, with nothing but node:zlib: the reconnect timeline of
 * a scale run (connects per second after a broker restart). Axis ticks are
 * labelled with a built-in 3x5 digit font; the figures themselves are in the
 * run's JSON and printout.
 */
import { deflateSync } from 'node:zlib';

type Rgb = readonly [number, number, number];

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

function crc32(bytes: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = (CRC_TABLE[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

class Canvas {
  readonly pixels: Buffer;
  constructor(
    readonly width: number,
    readonly height: number,
    background: Rgb,
  ) {
    this.pixels = Buffer.alloc(width * height * 3);
    this.rect(0, 0, width, height, background);
  }

  rect(x: number, y: number, w: number, h: number, color: Rgb): void {
    const x0 = Math.max(0, Math.round(x));
    const y0 = Math.max(0, Math.round(y));
    const x1 = Math.min(this.width, Math.round(x + w));
    const y1 = Math.min(this.height, Math.round(y + h));
    for (let row = y0; row < y1; row++) {
      for (let col = x0; col < x1; col++) this.pixels.set(color, (row * this.width + col) * 3);
    }
  }

  /** Digits, '.', '-' and 'x' in a 3x5 font, scaled. */
  text(x: number, y: number, value: string, color: Rgb, scale = 2): void {
    let cursor = x;
    for (const character of value) {
      const glyph = GLYPHS[character];
      if (glyph !== undefined) {
        glyph.forEach((bits, row) => {
          for (let col = 0; col < 3; col++) {
            if (bits & (4 >> col)) this.rect(cursor + col * scale, y + row * scale, scale, scale, color);
          }
        });
      }
      cursor += 4 * scale;
    }
  }

  png(): Buffer {
    const stride = this.width * 3;
    const raw = Buffer.alloc((stride + 1) * this.height);
    for (let row = 0; row < this.height; row++) {
      raw[row * (stride + 1)] = 0; // filter: none
      this.pixels.copy(raw, row * (stride + 1) + 1, row * stride, (row + 1) * stride);
    }
    const header = Buffer.alloc(13);
    header.writeUInt32BE(this.width, 0);
    header.writeUInt32BE(this.height, 4);
    header[8] = 8; // bit depth
    header[9] = 2; // truecolour
    return Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', header),
      chunk('IDAT', deflateSync(raw)),
      chunk('IEND', Buffer.alloc(0)),
    ]);
  }
}

// Rows of 3 bits, top to bottom.
const GLYPHS: Readonly<Record<string, readonly number[]>> = {
  '0': [7, 5, 5, 5, 7],
  '1': [2, 6, 2, 2, 7],
  '2': [7, 1, 7, 4, 7],
  '3': [7, 1, 7, 1, 7],
  '4': [5, 5, 7, 1, 1],
  '5': [7, 4, 7, 1, 7],
  '6': [7, 4, 7, 5, 7],
  '7': [7, 1, 1, 1, 1],
  '8': [7, 5, 7, 5, 7],
  '9': [7, 5, 7, 1, 7],
  '.': [0, 0, 0, 0, 2],
  '-': [0, 0, 7, 0, 0],
  x: [0, 5, 2, 5, 0],
};

export interface HistogramChart {
  /** Count per bin, in order. */
  bins: readonly number[];
  /** Seconds per bin (labels the x axis in seconds). */
  binSeconds: number;
  /** A horizontal line at this count (the pass line's limit), drawn when given. */
  limit?: number;
  /** A horizontal line at this count (the mean), drawn when given. */
  mean?: number;
}

/** y axis: counts, x axis: seconds since the first bin; bars blue, the limit red, the mean green. */
export function histogramPng(chart: HistogramChart, width = 1000, height = 420): Buffer {
  const canvas = new Canvas(width, height, [255, 255, 255]);
  const left = 60;
  const bottom = 30;
  const top = 15;
  const right = 15;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const peak = Math.max(1, ...chart.bins, chart.limit ?? 0, chart.mean ?? 0);
  const yOf = (count: number) => top + plotH - (count / peak) * plotH;
  const axis: Rgb = [40, 40, 40];
  // Horizontal grid with count labels.
  for (let i = 0; i <= 4; i++) {
    const value = Math.round((peak * i) / 4);
    const y = yOf(value);
    canvas.rect(left, y, plotW, 1, [225, 225, 225]);
    canvas.text(4, y - 5, String(value), axis);
  }
  const bins = Math.max(1, chart.bins.length);
  const barW = plotW / bins;
  chart.bins.forEach((count, index) => {
    const y = yOf(count);
    canvas.rect(
      left + index * barW + (barW > 3 ? 1 : 0),
      y,
      Math.max(1, barW - (barW > 3 ? 1 : 0)),
      top + plotH - y,
      [52, 101, 164],
    );
  });
  if (chart.mean !== undefined) canvas.rect(left, yOf(chart.mean), plotW, 2, [40, 160, 60]);
  if (chart.limit !== undefined) canvas.rect(left, yOf(chart.limit), plotW, 2, [200, 30, 30]);
  canvas.rect(left, top, 1, plotH + 1, axis);
  canvas.rect(left, top + plotH, plotW, 1, axis);
  // x ticks: about ten, in seconds.
  const step = Math.max(1, Math.ceil(bins / 10));
  for (let index = 0; index <= bins; index += step) {
    const x = left + index * barW;
    canvas.rect(x, top + plotH, 1, 5, axis);
    canvas.text(x - 4, top + plotH + 10, String(Math.round(index * chart.binSeconds * 10) / 10), axis);
  }
  return canvas.png();
}
