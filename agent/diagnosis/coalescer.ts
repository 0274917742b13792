/**
 * Folds identical errno events so a failing loop cannot flood the bus, the
 * logs or MQTT. Per key (stream, device, ioctl, errno, cause, prevented) the
 * first event of a window goes out at once; the rest are counted, and when
 * the window closes one summary carries how many there were, when the first
 * and last happened, and the last one's arguments. So a key emits at most
 * two events per window however fast it fails. Memory is bounded: beyond
 * `maxKeys` open windows, new kinds fold into one overflow summary.
 */
import type { ErrnoEvent } from './types.js';

export interface ErrnoCoalescerOptions {
  /** How long identical events are folded after the first; 0 passes every event through. */
  windowMs: number;
  emit: (event: ErrnoEvent) => void;
  now?: () => number;
  /** Injectable timers (tests); the defaults are setTimeout/clearTimeout, unref'd so they never hold the process. */
  setTimer?: (callback: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
  /** At most this many distinct keys have an open window; default 256. */
  maxKeys?: number;
}

interface KeyWindow {
  endsAtMs: number;
  timer: unknown;
  suppressed: number;
  firstAtMs: number;
  lastAtMs: number;
  last: ErrnoEvent | null;
}

interface OverflowWindow {
  endsAtMs: number;
  timer: unknown;
  events: number;
  /** Distinct keys folded, counted up to maxKeys (so this set is bounded too). */
  kinds: Set<string>;
  firstAtMs: number;
  lastAtMs: number;
  last: ErrnoEvent;
}

export const DEFAULT_MAX_KEYS = 256;

/** The identity of an event for coalescing. */
export function coalesceKey(event: ErrnoEvent): string {
  return [event.stream ?? '', event.device ?? '', event.ioctl, event.errno, event.cause, event.prevented ? 1 : 0].join(
    '|',
  );
}

function defaultSetTimer(callback: () => void, ms: number): unknown {
  const timer = setTimeout(callback, ms);
  timer.unref();
  return timer;
}

function defaultClearTimer(handle: unknown): void {
  clearTimeout(handle as ReturnType<typeof setTimeout>);
}

export class ErrnoCoalescer {
  private readonly windowMs: number;
  private readonly emitEvent: (event: ErrnoEvent) => void;
  private readonly now: () => number;
  private readonly setTimer: (callback: () => void, ms: number) => unknown;
  private readonly clearTimer: (handle: unknown) => void;
  private readonly maxKeys: number;
  private readonly windows = new Map<string, KeyWindow>();
  private overflow: OverflowWindow | null = null;
  private stopped = false;

  constructor(options: ErrnoCoalescerOptions) {
    if (!Number.isFinite(options.windowMs) || options.windowMs < 0) {
      throw new RangeError(`windowMs must be a finite number >= 0, got ${options.windowMs}`);
    }
    const maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS;
    if (!Number.isInteger(maxKeys) || maxKeys < 1)
      throw new RangeError(`maxKeys must be an integer >= 1, got ${maxKeys}`);
    this.windowMs = options.windowMs;
    this.emitEvent = options.emit;
    this.now = options.now ?? Date.now;
    this.setTimer = options.setTimer ?? defaultSetTimer;
    this.clearTimer = options.clearTimer ?? defaultClearTimer;
    this.maxKeys = maxKeys;
  }

  /** Open windows: distinct keys being coalesced, plus the overflow summary when one is open. */
  get pending(): number {
    return this.windows.size + (this.overflow ? 1 : 0);
  }

  push(event: ErrnoEvent): void {
    // Once stopped (shutdown), nothing is held back: no window would ever close.
    if (this.stopped || this.windowMs === 0) {
      this.emitEvent(event);
      return;
    }
    const key = coalesceKey(event);
    const now = this.now();
    let window = this.windows.get(key);
    // A timer delayed by a stalled event loop must not stretch the window.
    if (window && now >= window.endsAtMs) {
      this.closeWindow(key, window);
      window = undefined;
    }
    if (window) {
      // The summary covers the suppressed events only: the first one went out already.
      window.firstAtMs = window.last ? Math.min(window.firstAtMs, event.firstAtMs) : event.firstAtMs;
      window.lastAtMs = window.last ? Math.max(window.lastAtMs, event.lastAtMs) : event.lastAtMs;
      window.suppressed += event.count;
      window.last = event;
      return;
    }
    if (this.windows.size >= this.maxKeys) {
      this.foldIntoOverflow(key, event, now);
      return;
    }
    const opened: KeyWindow = {
      endsAtMs: now + this.windowMs,
      timer: null,
      suppressed: 0,
      firstAtMs: event.firstAtMs,
      lastAtMs: event.lastAtMs,
      last: null,
    };
    opened.timer = this.setTimer(() => {
      if (this.windows.get(key) === opened) this.closeWindow(key, opened);
    }, this.windowMs);
    this.windows.set(key, opened);
    this.emitEvent(event);
  }

  /** Closes every window now, emitting what each one folded. */
  flush(): void {
    for (const [key, window] of [...this.windows]) this.closeWindow(key, window);
    if (this.overflow) this.closeOverflow(this.overflow);
  }

  /** Flushes and clears every timer; later events pass straight through. Safe to call twice. */
  stop(): void {
    this.flush();
    this.stopped = true;
  }

  private closeWindow(key: string, window: KeyWindow): void {
    this.clearTimer(window.timer);
    this.windows.delete(key);
    if (window.suppressed > 0 && window.last) {
      this.emitEvent({
        ...window.last,
        count: window.suppressed,
        firstAtMs: window.firstAtMs,
        lastAtMs: window.lastAtMs,
      });
    }
  }

  private foldIntoOverflow(key: string, event: ErrnoEvent, now: number): void {
    let overflow = this.overflow;
    if (overflow && now >= overflow.endsAtMs) {
      this.closeOverflow(overflow);
      overflow = null;
    }
    if (!overflow) {
      const opened: OverflowWindow = {
        endsAtMs: now + this.windowMs,
        timer: null,
        events: 0,
        kinds: new Set(),
        firstAtMs: event.firstAtMs,
        lastAtMs: event.lastAtMs,
        last: event,
      };
      opened.timer = this.setTimer(() => {
        if (this.overflow === opened) this.closeOverflow(opened);
      }, this.windowMs);
      this.overflow = opened;
      overflow = opened;
    }
    overflow.events += event.count;
    if (overflow.kinds.size < this.maxKeys) overflow.kinds.add(key);
    overflow.firstAtMs = Math.min(overflow.firstAtMs, event.firstAtMs);
    overflow.lastAtMs = Math.max(overflow.lastAtMs, event.lastAtMs);
    overflow.last = event;
  }

  private closeOverflow(overflow: OverflowWindow): void {
    this.clearTimer(overflow.timer);
    this.overflow = null;
    const kinds = overflow.kinds.size >= this.maxKeys ? `at least ${overflow.kinds.size}` : `${overflow.kinds.size}`;
    const last = overflow.last;
    this.emitEvent({
      ...last,
      cause: 'unexplained',
      summary:
        `${overflow.events} errno events of ${kinds} further kinds arrived while ${this.maxKeys} kinds were already ` +
        `being coalesced, and were folded into this summary; the last: ${last.summary}`,
      remedy:
        'many different calls are failing at once: read the events reported just before this summary and dmesg; ' +
        `for the last one: ${last.remedy}`,
      device: null,
      ioctl: 'coalescer-overflow',
      prevented: false,
      args: { events: overflow.events, kinds: overflow.kinds.size, maxKeys: this.maxKeys, windowMs: this.windowMs },
      message: `errno coalescer overflow; last folded: ${last.message}`,
      count: overflow.events,
      firstAtMs: overflow.firstAtMs,
      lastAtMs: overflow.lastAtMs,
    });
  }
}
