// The errno coalescer on an injected clock and timers (and once on vitest's
// fake timers, for the defaults): floods, distinct keys, the window edge,
// the bound on keys, flush and stop.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { coalesceKey, ErrnoCoalescer } from '../../agent/diagnosis/coalescer.js';
import type { CauseCode, ErrnoEvent } from '../../agent/diagnosis/types.js';

/** A clock and timers that move only when told. */
class ManualClock {
  nowMs = 0;
  private nextId = 1;
  private readonly timers = new Map<number, { atMs: number; run: () => void }>();

  readonly now = (): number => this.nowMs;
  readonly setTimer = (run: () => void, ms: number): unknown => {
    const id = this.nextId++;
    this.timers.set(id, { atMs: this.nowMs + ms, run });
    return id;
  };
  readonly clearTimer = (handle: unknown): void => {
    this.timers.delete(handle as number);
  };

  get activeTimers(): number {
    return this.timers.size;
  }

  /** Moves time forward, firing due timers in order. */
  advance(ms: number): void {
    const target = this.nowMs + ms;
    for (;;) {
      let next: [number, { atMs: number; run: () => void }] | undefined;
      for (const entry of this.timers)
        if (entry[1].atMs <= target && (!next || entry[1].atMs < next[1].atMs)) next = entry;
      if (!next) break;
      this.timers.delete(next[0]);
      this.nowMs = next[1].atMs;
      next[1].run();
    }
    this.nowMs = target;
  }

  /** Moves time without firing anything (an event loop that stalled). */
  skip(ms: number): void {
    this.nowMs += ms;
  }
}

function errnoEvent(atMs: number, overrides: Partial<ErrnoEvent> = {}): ErrnoEvent {
  return {
    cause: 'buffer-already-queued' as CauseCode,
    summary: 'DMX_QBUF of buffer 0 failed with EINVAL: the buffer is already queued in the kernel',
    remedy: 'requeue buffer 0 only after DMX_DQBUF returned it',
    stream: 'hd',
    device: '/dev/dvb/adapter0/demux0',
    ioctl: 'DMX_QBUF',
    syscall: 'ioctl',
    errno: 'EINVAL',
    errnoNumber: -22,
    args: { index: 0 },
    prevented: false,
    message: 'DMX_QBUF failed on /dev/dvb/adapter0/demux0: EINVAL (Invalid argument)',
    count: 1,
    firstAtMs: atMs,
    lastAtMs: atMs,
    ...overrides,
  };
}

function setup(windowMs = 1000, maxKeys?: number) {
  const clock = new ManualClock();
  const emitted: ErrnoEvent[] = [];
  const coalescer = new ErrnoCoalescer({
    windowMs,
    emit: (event) => emitted.push(event),
    now: clock.now,
    setTimer: clock.setTimer,
    clearTimer: clock.clearTimer,
    ...(maxKeys !== undefined ? { maxKeys } : {}),
  });
  const push = (overrides: Partial<ErrnoEvent> = {}) => coalescer.push(errnoEvent(clock.nowMs, overrides));
  return { clock, emitted, coalescer, push };
}

describe('ErrnoCoalescer', () => {
  it('emits the first event at once and folds the rest of the window into one summary', () => {
    const { clock, emitted, coalescer, push } = setup();
    push({ args: { index: 0 } });
    expect(emitted).toHaveLength(1);
    expect(emitted[0]).toMatchObject({ count: 1, firstAtMs: 0 });
    clock.advance(100);
    push({ args: { index: 1 } });
    clock.advance(400);
    push({ args: { index: 2 } });
    expect(emitted).toHaveLength(1);
    expect(coalescer.pending).toBe(1);
    clock.advance(500);
    expect(emitted).toHaveLength(2);
    expect(emitted[1]).toMatchObject({ count: 2, firstAtMs: 100, lastAtMs: 500, args: { index: 2 } });
    expect(coalescer.pending).toBe(0);
  });

  it('emits no summary for a window with nothing folded', () => {
    const { clock, emitted, push } = setup();
    push();
    clock.advance(5000);
    expect(emitted).toHaveLength(1);
  });

  it('keeps a loop failing 1000 times a second for 60 s to at most 2 events per window, losing no count', () => {
    const { clock, emitted, coalescer, push } = setup(1000);
    for (let i = 0; i < 60_000; i++) {
      push();
      clock.advance(1);
    }
    coalescer.flush();
    expect(emitted.length).toBeLessThanOrEqual(2 * 60 + 2);
    expect(emitted.length).toBeGreaterThanOrEqual(60);
    expect(emitted.reduce((sum, event) => sum + event.count, 0)).toBe(60_000);
    const perSecond = new Map<number, number>();
    for (const event of emitted) {
      const second = Math.floor(event.lastAtMs / 1000);
      perSecond.set(second, (perSecond.get(second) ?? 0) + 1);
    }
    for (const n of perSecond.values()) expect(n).toBeLessThanOrEqual(2);
  });

  it('keeps each key in its own window: stream, device, ioctl, errno, cause and prevented all count', () => {
    const { emitted, push } = setup();
    const variants: Array<Partial<ErrnoEvent>> = [
      {},
      { stream: 'sd' },
      { device: '/dev/dvb/adapter1/demux0' },
      { ioctl: 'DMX_EXPBUF' },
      { errno: 'EBUSY' },
      { cause: 'index-out-of-range' },
      { prevented: true },
    ];
    for (const variant of variants) push(variant);
    for (const variant of variants) push(variant);
    expect(emitted).toHaveLength(variants.length);
    expect(new Set(emitted.map(coalesceKey)).size).toBe(variants.length);
  });

  it('does not fold events that differ only in args, message or summary', () => {
    const { emitted, push } = setup();
    push({ args: { index: 0 }, message: 'a', summary: 'a' });
    push({ args: { index: 3 }, message: 'b', summary: 'b' });
    expect(emitted).toHaveLength(1);
  });

  it('closes the window exactly at its end: an event then opens a new one', () => {
    const { clock, emitted, push } = setup(1000);
    push();
    clock.advance(999);
    push();
    expect(emitted).toHaveLength(1);
    clock.advance(1);
    expect(emitted).toHaveLength(2);
    expect(emitted[1]).toMatchObject({ count: 1, firstAtMs: 999, lastAtMs: 999 });
    push();
    expect(emitted).toHaveLength(3);
    expect(emitted[2]).toMatchObject({ count: 1, firstAtMs: 1000 });
  });

  it('closes an expired window on the next push even when its timer was late', () => {
    const { clock, emitted, push } = setup(1000);
    push();
    clock.skip(10);
    push();
    clock.skip(5000);
    push();
    expect(emitted.map((event) => event.count)).toEqual([1, 1, 1]);
    expect(emitted[1]).toMatchObject({ firstAtMs: 10 });
    expect(emitted[2]).toMatchObject({ firstAtMs: 5010 });
  });

  it("adds the counts of events that already folded repeats (the pump's `repeated`)", () => {
    const { clock, emitted, push } = setup();
    push();
    push({ count: 5 });
    push({ count: 3 });
    clock.advance(1000);
    expect(emitted[1]?.count).toBe(8);
  });

  it('bounds the keys: beyond maxKeys new kinds fold into one overflow summary', () => {
    const { clock, emitted, coalescer, push } = setup(1000, 3);
    for (let i = 0; i < 3; i++) push({ args: { index: i }, stream: `s${i}` });
    for (let i = 3; i < 10_000; i++) push({ stream: `s${i}` });
    expect(emitted).toHaveLength(3);
    expect(coalescer.pending).toBe(4);
    expect(clock.activeTimers).toBe(4);
    clock.advance(1000);
    expect(emitted).toHaveLength(4);
    const overflow = emitted[3]!;
    expect(overflow).toMatchObject({
      cause: 'unexplained',
      ioctl: 'coalescer-overflow',
      count: 9997,
      args: { events: 9997, kinds: 3, maxKeys: 3, windowMs: 1000 },
    });
    expect(overflow.summary).toContain('9997 errno events of at least 3 further kinds');
    expect(overflow.summary).toContain(emitted[0]!.summary);
    expect(coalescer.pending).toBe(0);
  });

  it('counts overflow kinds exactly below the bound', () => {
    const { clock, emitted, push } = setup(1000, 2);
    push({ stream: 'a' });
    push({ stream: 'b' });
    push({ stream: 'c' });
    push({ stream: 'c' });
    clock.advance(1000);
    expect(emitted.at(-1)).toMatchObject({ ioctl: 'coalescer-overflow', count: 2, args: { kinds: 1 } });
    expect(emitted.at(-1)?.summary).toContain('2 errno events of 1 further kinds');
  });

  it('flush emits what every open window folded and leaves nothing pending', () => {
    const { clock, emitted, coalescer, push } = setup();
    push({ stream: 'a' });
    push({ stream: 'a' });
    push({ stream: 'b' });
    coalescer.flush();
    expect(emitted.map((event) => [event.stream, event.count])).toEqual([
      ['a', 1],
      ['b', 1],
      ['a', 1],
    ]);
    expect(coalescer.pending).toBe(0);
    expect(clock.activeTimers).toBe(0);
  });

  it('stop flushes, clears every timer, is safe twice, and lets later events through', () => {
    const { clock, emitted, coalescer, push } = setup(1000, 1);
    push({ stream: 'a' });
    push({ stream: 'a' });
    push({ stream: 'b' });
    expect(clock.activeTimers).toBe(2);
    coalescer.stop();
    expect(emitted.map((event) => event.count)).toEqual([1, 1, 1]);
    expect(emitted.at(-1)?.ioctl).toBe('coalescer-overflow');
    expect(clock.activeTimers).toBe(0);
    coalescer.stop();
    expect(emitted).toHaveLength(3);
    push({ stream: 'a' });
    push({ stream: 'a' });
    expect(emitted).toHaveLength(5);
    expect(clock.activeTimers).toBe(0);
  });

  it('passes everything through with a zero window, and refuses a bad one', () => {
    const { emitted, push } = setup(0);
    push();
    push();
    expect(emitted).toHaveLength(2);
    expect(() => new ErrnoCoalescer({ windowMs: -1, emit: () => {} })).toThrow(RangeError);
    expect(() => new ErrnoCoalescer({ windowMs: 1000, emit: () => {}, maxKeys: 0 })).toThrow(RangeError);
  });
});

describe('ErrnoCoalescer with the default timers', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("uses setTimeout (unref'd) and Date.now", () => {
    vi.useFakeTimers({ now: 50_000 });
    const emitted: ErrnoEvent[] = [];
    const coalescer = new ErrnoCoalescer({ windowMs: 2000, emit: (event) => emitted.push(event) });
    coalescer.push(errnoEvent(Date.now()));
    vi.advanceTimersByTime(500);
    coalescer.push(errnoEvent(Date.now()));
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(1500);
    expect(emitted.map((event) => [event.count, event.firstAtMs])).toEqual([
      [1, 50_000],
      [1, 50_500],
    ]);
    expect(vi.getTimerCount()).toBe(0);
    coalescer.push(errnoEvent(Date.now()));
    coalescer.stop();
    expect(vi.getTimerCount()).toBe(0);
  });
});
