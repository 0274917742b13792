import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { StreamHealth } from '../../agent/health/types.js';
import { ANSI, formatBitrate, formatStreamLine, TerminalStatus, truncateVisible } from '../../agent/log/status-line.js';

/** A fake terminal: keeps every write separately so each redraw can be read as one. */
class FakeTerminal extends Writable {
  writes: string[] = [];
  isTTY: boolean;
  columns: number | undefined;

  constructor(options: { isTTY: boolean; columns?: number }) {
    super();
    this.isTTY = options.isTTY;
    this.columns = options.columns;
  }

  override _write(chunk: Buffer | string, _encoding: BufferEncoding, callback: () => void): void {
    this.writes.push(chunk.toString());
    callback();
  }

  get text(): string {
    return this.writes.join('');
  }
}

function healthFixture(overrides: Partial<StreamHealth> = {}): StreamHealth {
  const flag = { total: 0, window: 0 };
  return {
    stream: 'hd',
    atMs: 1_700_000_000_000,
    windowMs: 5000,
    pool: { count: 8, size: 64 * 188 },
    ledger: { kernel: 6, agent: 0, decoder: 2, consumer: 0 },
    fillRatio: 1,
    rate: { bytesPerSecond: 1_500_000, buffersPerSecond: 124.7, bitsPerSecond: 12_000_000 },
    totals: { buffers: 10_000, bytes: 120_320_000 },
    flags: {
      crc32Discard: flag,
      tei: flag,
      packetCounterMismatch: flag,
      discontinuityDetected: flag,
      discontinuityIndicator: flag,
    },
    ts: { syncErrors: 0, teiPackets: 0 },
    ccGaps: { total: 3, window: 0, byPid: {} },
    zeroQueued: { totalMs: 0, windowMs: 0, share: 0, episodes: 0, estimatedLossBytes: 0 },
    sinkLatencyMs: { p50: 2.1, p95: 3.3, p99: 4.2, max: 6, mean: 2.4 },
    errors: {},
    exportedFds: 8,
    anomalies: [],
    watermark: 'normal',
    level: 'ok',
    reasons: [],
    ...overrides,
  };
}

describe('formatStreamLine', () => {
  it('formats a healthy stream as one compact line', () => {
    const line = formatStreamLine({ stream: 'hd', state: 'streaming', health: healthFixture(), sink: 'decoder' });
    expect(line).toBe(
      'hd     streaming    ok         12.0 Mb/s  fill 1.00  kernel 6/8    decoder   2  lat p99 4ms    cc 0    loss 0ms     normal',
    );
    expect(line).not.toContain('\x1b[');
  });

  it('aligns the columns of streams with different numbers', () => {
    const hd = formatStreamLine({ stream: 'hd', state: 'streaming', health: healthFixture(), sink: 'decoder' });
    const sd = formatStreamLine({
      stream: 'sd',
      state: 'degraded',
      sink: 'consumer',
      health: healthFixture({
        rate: { bytesPerSecond: 437_500, buffersPerSecond: 36.4, bitsPerSecond: 3_500_000 },
        fillRatio: 0.5,
        ledger: { kernel: 10, agent: 1, decoder: 0, consumer: 5 },
        pool: { count: 16, size: 12032 },
        sinkLatencyMs: { p50: 40, p95: 90, p99: 123.6, max: 200, mean: 50 },
        ccGaps: { total: 40, window: 12, byPid: { '0x0100': 12 } },
        zeroQueued: { totalMs: 900, windowMs: 350.4, share: 0.07, episodes: 2, estimatedLossBytes: 153_000 },
        watermark: 'low',
        level: 'degraded',
        reasons: ['zero queued 7% of the window'],
      }),
    });
    for (const label of ['Mb/s', 'fill ', 'kernel ', 'lat p99 ', 'cc ', 'loss ']) {
      expect(sd.indexOf(label), label).toBe(hd.indexOf(label));
    }
    expect(sd).toContain('  3.5 Mb/s');
    expect(sd).toContain('fill 0.50');
    expect(sd).toContain('kernel 10/16');
    expect(sd).toContain('consumer  5');
    expect(sd).toContain('lat p99 124ms');
    expect(sd).toContain('cc 12');
    expect(sd).toContain('loss 350ms');
    expect(sd.endsWith('low  zero queued 7% of the window')).toBe(true);
  });

  it('shows dashes for what a window without buffers cannot tell', () => {
    const line = formatStreamLine({
      stream: 'hd',
      state: 'streaming',
      sink: 'discard',
      health: healthFixture({ fillRatio: null, sinkLatencyMs: null, watermark: 'no-data' }),
    });
    expect(line).toContain('fill    -');
    expect(line).toContain('lat p99 -');
    expect(line.endsWith('no-data')).toBe(true);
  });

  it('shows the state alone before the first health sample', () => {
    expect(formatStreamLine({ stream: 'hd', state: 'opening', health: null, sink: 'decoder' })).toBe(
      'hd     opening      -         decoder',
    );
  });

  it('colours the state and the level when colour is on', () => {
    const ok = formatStreamLine(
      { stream: 'hd', state: 'streaming', health: healthFixture(), sink: 'decoder' },
      { colour: true },
    );
    expect(ok).toContain(`${ANSI.green}streaming  ${ANSI.reset}`);
    expect(ok).toContain(`${ANSI.green}ok      ${ANSI.reset}`);
    const critical = formatStreamLine(
      { stream: 'hd', state: 'failed', health: healthFixture({ level: 'critical' }), sink: 'decoder' },
      { colour: true },
    );
    expect(critical).toContain(`${ANSI.red}failed`);
    expect(critical).toContain(`${ANSI.red}critical${ANSI.reset}`);
  });

  it("limits the line to the terminal's columns, not counting colour sequences", () => {
    const input = { stream: 'hd', state: 'streaming', health: healthFixture(), sink: 'decoder' };
    const plain = formatStreamLine(input, { columns: 40 });
    expect(plain).toBe(formatStreamLine(input).slice(0, 40));
    const coloured = formatStreamLine(input, { colour: true, columns: 40 });
    expect(coloured.replaceAll(ANSI.green, '').replaceAll(ANSI.reset, '')).toBe(plain);
    expect(coloured.endsWith(ANSI.reset)).toBe(true);
  });
});

describe('helpers', () => {
  it('formats bitrates at a fixed width', () => {
    expect(formatBitrate(12_000_000)).toBe(' 12.0 Mb/s');
    expect(formatBitrate(120_400_000)).toBe('120.4 Mb/s');
    expect(formatBitrate(64_000)).toBe(' 64.0 kb/s');
    expect(formatBitrate(0)).toBe('  0.0 b/s ');
  });

  it('truncates by visible characters', () => {
    expect(truncateVisible('abcdef', 3)).toBe('abc');
    expect(truncateVisible('abc', 3)).toBe('abc');
    expect(truncateVisible(`${ANSI.red}abcdef${ANSI.reset}`, 2)).toBe(`${ANSI.red}ab${ANSI.reset}`);
    expect(truncateVisible(`a${ANSI.red}b${ANSI.reset}`, 5)).toBe(`a${ANSI.red}b${ANSI.reset}`);
  });
});

describe('TerminalStatus on a terminal', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function start(columns = 80) {
    const terminal = new FakeTerminal({ isTTY: true, columns });
    const status = new TerminalStatus({ stream: terminal, env: {}, now: () => Date.now() });
    return { terminal, status };
  }

  it('draws the status lines, hiding the cursor, with the cursor left at the end of the last line', () => {
    const { terminal, status } = start();
    expect(status.active).toBe(true);
    expect(status.colour).toBe(true);
    status.update(['hd line', 'sd line']);
    expect(terminal.writes).toEqual([`${ANSI.hideCursor}hd line\nsd line`]);
    status.stop();
  });

  it('clears the area, writes the log line and redraws below it, in one write', () => {
    const { terminal, status } = start();
    status.update(['hd line', 'sd line']);
    terminal.writes = [];
    status.writeLog('[12:00:00.000] INFO: a log line\n');
    expect(terminal.writes).toEqual([
      `\r${ANSI.up(1)}${ANSI.eraseDown}[12:00:00.000] INFO: a log line\nhd line\nsd line`,
    ]);
    status.writeLog('no newline');
    expect(terminal.writes[1]).toBe(`\r${ANSI.up(1)}${ANSI.eraseDown}no newline\nhd line\nsd line`);
    status.stop();
  });

  it('clears a one-line area without moving up', () => {
    const { terminal, status } = start();
    status.update(['only']);
    status.writeLog('log\n');
    expect(terminal.writes[1]).toBe(`\r${ANSI.eraseDown}log\nonly`);
    status.stop();
  });

  it('redraws at most every 250 ms, with the latest lines', () => {
    const { terminal, status } = start();
    status.update(['v1']);
    expect(terminal.writes).toHaveLength(1);
    vi.advanceTimersByTime(100);
    status.update(['v2']);
    status.update(['v3']);
    expect(terminal.writes).toHaveLength(1);
    vi.advanceTimersByTime(149);
    expect(terminal.writes).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(terminal.writes).toEqual([`${ANSI.hideCursor}v1`, `\r${ANSI.eraseDown}v3`]);
    vi.advanceTimersByTime(1000);
    expect(terminal.writes).toHaveLength(2);
    status.update(['v4']);
    expect(terminal.writes[2]).toBe(`\r${ANSI.eraseDown}v4`);
    status.stop();
  });

  it('a log line drawn in between carries the pending update and cancels the timer', () => {
    const { terminal, status } = start();
    status.update(['v1']);
    status.update(['v2']);
    status.writeLog('log\n');
    expect(terminal.writes[1]).toBe(`\r${ANSI.eraseDown}log\nv2`);
    vi.advanceTimersByTime(1000);
    expect(terminal.writes).toHaveLength(2);
    status.stop();
  });

  it('cuts status lines one column short of the width', () => {
    const { terminal, status } = start(10);
    status.update(['0123456789abcdef', `${ANSI.green}0123456789${ANSI.reset}`]);
    expect(terminal.writes[0]).toBe(`${ANSI.hideCursor}012345678\n${ANSI.green}012345678${ANSI.reset}`);
    status.stop();
  });

  it('stop draws what is pending, leaves it on screen, restores the cursor, and is safe twice', () => {
    const { terminal, status } = start();
    const exitListeners = process.listenerCount('exit');
    status.update(['v1']);
    expect(process.listenerCount('exit')).toBe(exitListeners + 1);
    status.update(['last']);
    status.stop();
    status.stop();
    expect(terminal.writes).toEqual([`${ANSI.hideCursor}v1`, `\r${ANSI.eraseDown}last`, `\n${ANSI.showCursor}`]);
    expect(process.listenerCount('exit')).toBe(exitListeners);
    status.update(['after stop']);
    status.writeLog('plain log\n');
    expect(terminal.writes.slice(3)).toEqual(['plain log\n']);
  });

  it('draws when enabled on a non-terminal, at 80 columns when the width is unknown', () => {
    const terminal = new FakeTerminal({ isTTY: false });
    const status = new TerminalStatus({ stream: terminal, enabled: true, env: { NO_COLOR: '1' } });
    expect(status.active).toBe(true);
    expect(status.colour).toBe(false);
    expect(status.columns).toBe(80);
    status.update(['x'.repeat(100)]);
    expect(terminal.writes[0]).toBe(`${ANSI.hideCursor}${'x'.repeat(79)}`);
    status.stop();
  });
});

describe('TerminalStatus off a terminal', () => {
  it('stays off on a terminal when disabled', () => {
    const terminal = new FakeTerminal({ isTTY: true, columns: 80 });
    const status = new TerminalStatus({ stream: terminal, enabled: false, env: {} });
    expect(status.active).toBe(false);
    status.update(['hd line']);
    status.writeLog('log\n');
    status.stop();
    expect(terminal.writes).toEqual(['log\n']);
  });

  it('passes log lines through untouched and draws nothing', () => {
    const pipe = new FakeTerminal({ isTTY: false });
    const status = new TerminalStatus({ stream: pipe, env: {} });
    expect(status.active).toBe(false);
    expect(status.colour).toBe(false);
    status.update(['hd line']);
    status.writeLog('{"msg":"a"}\n');
    status.writeLog('{"msg":"b"}\n');
    status.stop();
    status.stop();
    expect(pipe.writes).toEqual(['{"msg":"a"}\n', '{"msg":"b"}\n']);
  });
});
