/**
 * A bar chart as a PNG, with nothing but node:zlib: the reconnect timeline of
 * a scale run (connects per bin after a broker restart). A title, axis titles,
 * tick labels and a legend are drawn in a built-in 5x7 bitmap font (upper case,
 * digits, a little punctuation), so the chart needs no font files and no native
 * canvas; the figures themselves are in the run's JSON and printout.
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

/** A 5x7 bitmap font: rows top to bottom, '#' set. Upper case only; text is upper-cased before drawing. */
const FONT_SOURCE: Readonly<Record<string, string>> = {
  A: '.###. #...# #...# ##### #...# #...# #...#',
  B: '####. #...# #...# ####. #...# #...# ####.',
  C: '.###. #...# #.... #.... #.... #...# .###.',
  D: '####. #...# #...# #...# #...# #...# ####.',
  E: '##### #.... #.... ####. #.... #.... #####',
  F: '##### #.... #.... ####. #.... #.... #....',
  G: '.###. #...# #.... #.### #...# #...# .####',
  H: '#...# #...# #...# ##### #...# #...# #...#',
  I: '.###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.',
  J: '..### ...#. ...#. ...#. ...#. #..#. .##..',
  K: '#...# #..#. #.#.. ##... #.#.. #..#. #...#',
  L: '#.... #.... #.... #.... #.... #.... #####',
  M: '#...# ##.## #.#.# #.#.# #...# #...# #...#',
  N: '#...# #...# ##..# #.#.# #..## #...# #...#',
  O: '.###. #...# #...# #...# #...# #...# .###.',
  P: '####. #...# #...# ####. #.... #.... #....',
  Q: '.###. #...# #...# #...# #.#.# #..#. .##.#',
  R: '####. #...# #...# ####. #.#.. #..#. #...#',
  S: '.#### #.... #.... .###. ....# ....# ####.',
  T: '##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..',
  U: '#...# #...# #...# #...# #...# #...# .###.',
  V: '#...# #...# #...# #...# #...# .#.#. ..#..',
  W: '#...# #...# #...# #.#.# #.#.# #.#.# .#.#.',
  X: '#...# #...# .#.#. ..#.. .#.#. #...# #...#',
  Y: '#...# #...# .#.#. ..#.. ..#.. ..#.. ..#..',
  Z: '##### ....# ...#. ..#.. .#... #.... #####',
  '0': '.###. #...# #..## #.#.# ##..# #...# .###.',
  '1': '..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.',
  '2': '.###. #...# ....# ...#. ..#.. .#... #####',
  '3': '##### ...#. ..#.. ...#. ....# #...# .###.',
  '4': '...#. ..##. .#.#. #..#. ##### ...#. ...#.',
  '5': '##### #.... ####. ....# ....# #...# .###.',
  '6': '..##. .#... #.... ####. #...# #...# .###.',
  '7': '##### ....# ...#. ..#.. .#... .#... .#...',
  '8': '.###. #...# #...# .###. #...# #...# .###.',
  '9': '.###. #...# #...# .#### ....# ...#. .##..',
  ' ': '..... ..... ..... ..... ..... ..... .....',
  '.': '..... ..... ..... ..... ..... .##.. .##..',
  ',': '..... ..... ..... ..... .##.. ..#.. .#...',
  '-': '..... ..... ..... ##### ..... ..... .....',
  ':': '..... .##.. .##.. ..... .##.. .##.. .....',
  '/': '..... ....# ...#. ..#.. .#... #.... .....',
  '(': '...#. ..#.. .#... .#... .#... ..#.. ...#.',
  ')': '.#... ..#.. ...#. ...#. ...#. ..#.. .#...',
  '=': '..... ..... ##### ..... ##### ..... .....',
  '+': '..... ..#.. ..#.. ##### ..#.. ..#.. .....',
  '%': '##... ##..# ...#. ..#.. .#... #..## ...##',
  "'": '..#.. ..#.. .#... ..... ..... ..... .....',
};

const GLYPH_WIDTH = 5;
const GLYPH_HEIGHT = 7;
/** Pixels from one character to the next, before scaling: the glyph and one blank column. */
const GLYPH_ADVANCE = GLYPH_WIDTH + 1;

/** Each glyph as GLYPH_HEIGHT rows of GLYPH_WIDTH booleans. */
const FONT: ReadonlyMap<string, readonly (readonly boolean[])[]> = new Map(
  Object.entries(FONT_SOURCE).map(([character, rows]) => [
    character,
    rows.split(' ').map((row) => [...row].map((pixel) => pixel === '#')),
  ]),
);

/** Whether every character of a label can be drawn (lower case counts as upper case). */
export function canDraw(label: string): boolean {
  return [...label.toUpperCase()].every((character) => FONT.has(character));
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

  /**
   * Text in the 5x7 font, scaled; (x, y) is the top left corner. Upright, or turned a quarter
   * anticlockwise to read upwards (a y axis title): then (x, y) is the bottom left corner.
   * A character the font lacks throws, so a label never loses characters unnoticed.
   */
  text(x: number, y: number, label: string, color: Rgb, scale = 2, upwards = false): void {
    let cursor = 0;
    for (const character of label.toUpperCase()) {
      const glyph = FONT.get(character);
      if (glyph === undefined) throw new RangeError(`the chart font has no ${JSON.stringify(character)}`);
      glyph.forEach((row, r) => {
        row.forEach((set, c) => {
          if (!set) return;
          const along = cursor + c * scale;
          if (upwards) this.rect(x + r * scale, y - along - scale, scale, scale, color);
          else this.rect(x + along, y + r * scale, scale, scale, color);
        });
      });
      cursor += GLYPH_ADVANCE * scale;
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

/** Width in pixels of a label drawn at `scale`. */
export function textWidth(label: string, scale = 2): number {
  return label.length === 0 ? 0 : (label.length * GLYPH_ADVANCE - 1) * scale;
}

/** The smallest of 1, 2, 5 x 10^k that is at least `rough`: tick steps people read at a glance. */
export function niceStep(rough: number): number {
  if (!(rough > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(rough));
  for (const factor of [1, 2, 5, 10]) if (factor * power >= rough) return factor * power;
  return 10 * power;
}

/** A tick value without floating-point noise: 0.30000000000000004 prints as 0.3. */
function tickLabel(value: number): string {
  return String(Number(value.toPrecision(6)));
}

export const CHART_COLORS = {
  bar: [52, 101, 164],
  red: [200, 30, 30],
  green: [40, 150, 60],
  axis: [40, 40, 40],
  grid: [225, 225, 225],
  background: [255, 255, 255],
} as const satisfies Record<string, Rgb>;

export interface ChartLine {
  /** Height in the bars' unit. */
  value: number;
  color: 'red' | 'green';
  /** Its legend entry. */
  label: string;
}

export interface HistogramChart {
  /** Count per bin, in order. */
  bins: readonly number[];
  /** Seconds per bin. */
  binSeconds: number;
  /** Where the first bin starts on the x axis, in seconds (may be negative); default 0. */
  startSeconds?: number;
  /** Above the plot. */
  title: string;
  /** Under the x axis and beside the y axis. */
  xTitle: string;
  yTitle: string;
  /** Horizontal lines across the plot, with a legend. */
  lines?: readonly ChartLine[];
}

/** Bars in blue, lines in their colour, titles and ticks in the built-in font. */
export function histogramPng(chart: HistogramChart, width = 1000, height = 480): Buffer {
  const colors = CHART_COLORS;
  const canvas = new Canvas(width, height, colors.background);
  const lines = chart.lines ?? [];
  const startSeconds = chart.startSeconds ?? 0;
  const bins = Math.max(1, chart.bins.length);
  // A little headroom, so a line at the highest value is not drawn on the frame.
  const highest = 1.05 * Math.max(1, ...chart.bins, ...lines.map((line) => line.value));
  // Five or so count ticks; the axis ends on the first tick at or above the highest bar or line.
  const yStep = niceStep(highest / 5);
  const yMax = Math.ceil(highest / yStep) * yStep;
  const yLabels = Array.from({ length: Math.round(yMax / yStep) + 1 }, (_, i) => tickLabel(i * yStep));

  const scale = 2;
  const lineHeight = GLYPH_HEIGHT * scale;
  const left = 12 + lineHeight + 10 + Math.max(...yLabels.map((label) => textWidth(label, scale)));
  const right = 20;
  const top = 12 + lineHeight + 12 + lines.length * (lineHeight + 6) + 6;
  const bottom = 10 + lineHeight + 12 + lineHeight + 12;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const yOf = (count: number) => top + plotH - (count / yMax) * plotH;

  canvas.text(left, 12, chart.title, colors.axis, scale);
  lines.forEach((line, index) => {
    const y = 12 + lineHeight + 12 + index * (lineHeight + 6);
    canvas.rect(left, y + lineHeight / 2 - 1, 24, 3, colors[line.color]);
    canvas.text(left + 32, y, line.label, colors.axis, scale);
  });

  yLabels.forEach((label, index) => {
    const y = yOf(index * yStep);
    canvas.rect(left, y, plotW, 1, colors.grid);
    canvas.rect(left - 5, y, 5, 1, colors.axis);
    canvas.text(left - 8 - textWidth(label, scale), y - lineHeight / 2, label, colors.axis, scale);
  });
  canvas.text(12, top + plotH / 2 + textWidth(chart.yTitle, scale) / 2, chart.yTitle, colors.axis, scale, true);

  const barW = plotW / bins;
  chart.bins.forEach((count, index) => {
    const y = yOf(count);
    const gap = barW > 3 ? 1 : 0;
    canvas.rect(left + index * barW + gap, y, Math.max(1, barW - gap), top + plotH - y, colors.bar);
  });
  for (const line of lines) canvas.rect(left, yOf(line.value) - 1, plotW, 2, colors[line.color]);
  canvas.rect(left, top, 1, plotH + 1, colors.axis);
  canvas.rect(left, top + plotH, plotW, 1, colors.axis);

  // x ticks: seconds on round values, about ten across the axis, labels centred.
  const spanSeconds = bins * chart.binSeconds;
  const xStep = niceStep(spanSeconds / 10);
  const xOf = (seconds: number) => left + ((seconds - startSeconds) / spanSeconds) * plotW;
  for (let tick = Math.ceil(startSeconds / xStep) * xStep; tick <= startSeconds + spanSeconds + 1e-9; tick += xStep) {
    const x = xOf(tick);
    const label = tickLabel(tick);
    canvas.rect(x, top + plotH, 1, 6, colors.axis);
    const labelX = Math.min(width - textWidth(label, scale) - 2, x - textWidth(label, scale) / 2);
    canvas.text(labelX, top + plotH + 10, label, colors.axis, scale);
  }
  canvas.text(
    left + plotW / 2 - textWidth(chart.xTitle, scale) / 2,
    top + plotH + 10 + lineHeight + 12,
    chart.xTitle,
    colors.axis,
    scale,
  );
  return canvas.png();
}
