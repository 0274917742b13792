/**
 * A live health summary at the bottom of a terminal: one line per stream,
 * kept below the scrolling log. Log lines go through writeLog, which clears
 * the status area, writes the line and redraws the area, so the two never
 * interleave. On anything but a terminal it stays out of the way: logs pass
 * through untouched and no status is drawn.
 */
import type { HealthLevel, StreamHealth } from '../health/types.js';

/** Where formatted log lines go (the logger's lineSink option). */
export interface LineSink {
  /** `text` is one or more complete lines. */
  writeLog(text: string): void;
}

export type TerminalStream = NodeJS.WritableStream & { isTTY?: boolean; columns?: number };

export interface TerminalStatusOptions {
  /** Default process.stdout. */
  stream?: TerminalStream;
  /** Draw the status (true) or pass logs through (false); default: when the stream is a TTY. */
  enabled?: boolean;
  /** Colour for callers formatting the lines; default: active and NO_COLOR unset. */
  colour?: boolean;
  env?: NodeJS.ProcessEnv;
  /** Redraws from update() happen at most this often (default 250 ms). */
  minIntervalMs?: number;
  /** Default Date.now. */
  now?: () => number;
}

const ESC = '\x1b[';
export const ANSI = {
  hideCursor: `${ESC}?25l`,
  showCursor: `${ESC}?25h`,
  eraseDown: `${ESC}J`,
  up: (lines: number) => `${ESC}${lines}A`,
  reset: `${ESC}0m`,
  red: `${ESC}31m`,
  green: `${ESC}32m`,
  yellow: `${ESC}33m`,
  cyan: `${ESC}36m`,
} as const;

const DEFAULT_COLUMNS = 80;
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching ANSI SGR sequences is the point
const SGR = /\x1b\[[0-9;]*m/y;

/** Cuts `text` to `columns` visible characters, not counting colour sequences (closed when cut). */
export function truncateVisible(text: string, columns: number): string {
  let visible = 0;
  let coloured = false;
  let i = 0;
  while (i < text.length) {
    SGR.lastIndex = i;
    const sequence = SGR.exec(text);
    if (sequence !== null) {
      coloured = true;
      i += sequence[0].length;
      continue;
    }
    if (visible === columns) return text.slice(0, i) + (coloured ? ANSI.reset : '');
    visible += 1;
    i += 1;
  }
  return text;
}

export class TerminalStatus implements LineSink {
  /** True when the status area is drawn (a TTY, or enabled explicitly). */
  readonly active: boolean;
  readonly colour: boolean;
  private readonly stream: TerminalStream;
  private readonly minIntervalMs: number;
  private readonly now: () => number;
  private lines: string[] = [];
  /** Lines of the status area on screen now; the cursor sits at the end of the last one. */
  private drawn = 0;
  private lastDrawAt = Number.NEGATIVE_INFINITY;
  private pending: NodeJS.Timeout | null = null;
  private cursorHidden = false;
  private stopped = false;
  private readonly restoreCursorAtExit = () => {
    if (this.cursorHidden) this.stream.write(ANSI.showCursor);
  };

  constructor(options: TerminalStatusOptions = {}) {
    this.stream = options.stream ?? process.stdout;
    this.active = options.enabled ?? this.stream.isTTY === true;
    const env = options.env ?? process.env;
    this.colour = options.colour ?? (this.active && (env.NO_COLOR ?? '') === '');
    this.minIntervalMs = options.minIntervalMs ?? 250;
    this.now = options.now ?? Date.now;
  }

  /** The terminal's width now (it can be resized). */
  get columns(): number {
    const columns = this.stream.columns;
    return typeof columns === 'number' && columns > 0 ? columns : DEFAULT_COLUMNS;
  }

  writeLog(text: string): void {
    if (!this.active || this.stopped) {
      this.stream.write(text);
      return;
    }
    const complete = text.endsWith('\n') ? text : `${text}\n`;
    this.redraw(complete);
  }

  /** Replaces the status lines; they are drawn now, or when minIntervalMs has passed since the last draw. */
  update(lines: string[]): void {
    if (!this.active || this.stopped) return;
    this.lines = [...lines];
    if (this.pending !== null) return;
    const wait = this.lastDrawAt + this.minIntervalMs - this.now();
    if (wait <= 0) {
      this.redraw('');
      return;
    }
    this.pending = setTimeout(() => {
      this.pending = null;
      this.redraw('');
    }, wait);
    this.pending.unref();
  }

  /** Draws any pending update, leaves the last status on screen and restores the cursor. Safe twice. */
  stop(): void {
    if (this.stopped) return;
    if (this.pending !== null) {
      clearTimeout(this.pending);
      this.pending = null;
      this.redraw('');
    }
    this.stopped = true;
    if (!this.active) return;
    let out = this.drawn > 0 ? '\n' : '';
    if (this.cursorHidden) out += ANSI.showCursor;
    if (out !== '') this.stream.write(out);
    this.cursorHidden = false;
    this.drawn = 0;
    process.removeListener('exit', this.restoreCursorAtExit);
  }

  /** One write per redraw, so a log line and the status never tear on screen. */
  private redraw(log: string): void {
    if (this.pending !== null) {
      clearTimeout(this.pending);
      this.pending = null;
    }
    let out = '';
    if (!this.cursorHidden && this.lines.length > 0) {
      out += ANSI.hideCursor;
      this.cursorHidden = true;
      process.once('exit', this.restoreCursorAtExit);
    }
    if (this.drawn > 0) out += `\r${this.drawn > 1 ? ANSI.up(this.drawn - 1) : ''}${ANSI.eraseDown}`;
    out += log;
    // One column short: a line that fills the width leaves some terminals in a pending wrap.
    const width = Math.max(1, this.columns - 1);
    out += this.lines.map((line) => truncateVisible(line, width)).join('\n');
    this.drawn = this.lines.length;
    this.lastDrawAt = this.now();
    if (out !== '') this.stream.write(out);
  }
}

export interface StreamLineInput {
  stream: string;
  state: string;
  health: StreamHealth | null;
  /** A short label of the sink ('decoder', 'consumer', 'discard', a decoder name), shown with the buffers it holds. */
  sink: string;
}

export interface StreamLineOptions {
  colour?: boolean;
  /** Cut the line to this many visible characters (the terminal's width). */
  columns?: number;
  /** Width of the stream id column, to align several streams (default 5). */
  streamWidth?: number;
}

// The longest StreamState ('configuring') and HealthLevel ('degraded', 'critical').
const STATE_WIDTH = 11;
const LEVEL_WIDTH = 8;
const SINK_WIDTH = 8;

const STATE_COLOURS: Record<string, string> = {
  streaming: ANSI.green,
  degraded: ANSI.yellow,
  failed: ANSI.red,
  closed: '',
};
const LEVEL_COLOURS: Record<HealthLevel, string> = { ok: ANSI.green, degraded: ANSI.yellow, critical: ANSI.red };

function paint(text: string, colour: string, on: boolean): string {
  return on && colour !== '' ? `${colour}${text}${ANSI.reset}` : text;
}

/** '12.0 Mb/s', '  3.5 kb/s': fixed width so the columns after it line up. */
export function formatBitrate(bitsPerSecond: number): string {
  const [value, unit] =
    bitsPerSecond >= 1e6
      ? [bitsPerSecond / 1e6, 'Mb/s']
      : bitsPerSecond >= 1e3
        ? [bitsPerSecond / 1e3, 'kb/s']
        : [bitsPerSecond, 'b/s '];
  return `${value.toFixed(1).padStart(5)} ${unit}`;
}

/**
 * One compact line per stream, for the terminal status:
 * `hd     streaming    ok         12.0 Mb/s  fill 1.00  kernel 6/8  decoder  2  lat p99 4ms  cc 0  loss 0ms  normal`
 * Counts are for the health window (cc gaps, zero-queued time); the reasons follow when the level is not ok.
 */
export function formatStreamLine(input: StreamLineInput, options: StreamLineOptions = {}): string {
  const colour = options.colour === true;
  const streamWidth = options.streamWidth ?? 5;
  const stream = input.stream.padEnd(streamWidth);
  const state = paint(input.state.padEnd(STATE_WIDTH), STATE_COLOURS[input.state] ?? ANSI.cyan, colour);
  const health = input.health;
  let line: string;
  if (health === null) {
    line = [stream, state, '-'.padEnd(LEVEL_WIDTH), input.sink].join('  ');
  } else {
    const level = paint(health.level.padEnd(LEVEL_WIDTH), LEVEL_COLOURS[health.level], colour);
    const fill = health.fillRatio === null ? '   -' : health.fillRatio.toFixed(2);
    const kernel = `${health.ledger.kernel}/${health.pool.count}`.padEnd(5);
    const held = health.ledger.decoder + health.ledger.consumer;
    const latency = health.sinkLatencyMs === null ? '-' : `${Math.round(health.sinkLatencyMs.p99)}ms`;
    const fields = [
      stream,
      state,
      level,
      formatBitrate(health.rate.bitsPerSecond),
      `fill ${fill}`,
      `kernel ${kernel}`,
      `${input.sink.padEnd(SINK_WIDTH)} ${String(held).padStart(2)}`,
      `lat p99 ${latency.padEnd(5)}`,
      `cc ${String(health.ccGaps.window).padEnd(3)}`,
      `loss ${`${Math.round(health.zeroQueued.windowMs)}ms`.padEnd(6)}`,
      health.watermark,
    ];
    if (health.level !== 'ok' && health.reasons.length > 0) fields.push(health.reasons.join('; '));
    line = fields.join('  ');
  }
  return options.columns === undefined ? line : truncateVisible(line, options.columns);
}
