// sd_notify datagrams reach a real AF_UNIX datagram socket (path and
// abstract), read by a separate process.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { sdNotify } from '../../agent/native/index.js';

/** A python3 child that binds `address`, prints one datagram and exits. */
function receiveOne(address: string): Promise<{ ready: Promise<void>; message: Promise<string> }> {
  const script = `
import socket, sys
a = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\\0' + a[1:] if a.startswith('@') else a)
print('ready', flush=True)
s.settimeout(20)
print(s.recv(4096).decode(), flush=True)
`;
  const child = spawn('python3', ['-c', script, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let onReady: () => void;
  const ready = new Promise<void>((resolve) => {
    onReady = resolve;
  });
  const message = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.startsWith('ready\n')) onReady();
    });
    child.on('exit', (code) =>
      code === 0 ? resolve(out.slice('ready\n'.length).trim()) : reject(new Error(`receiver exited ${code}`)),
    );
  });
  return Promise.resolve({ ready, message });
}

describe('sdNotify', () => {
  it('returns false without a socket (not run by systemd)', () => {
    const saved = process.env.NOTIFY_SOCKET;
    delete process.env.NOTIFY_SOCKET;
    try {
      expect(sdNotify('READY=1')).toBe(false);
    } finally {
      if (saved !== undefined) process.env.NOTIFY_SOCKET = saved;
    }
  });

  it('sends the state to a path socket', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dmx-notify-'));
    try {
      const path = join(dir, 'notify.sock');
      const rx = await receiveOne(path);
      await rx.ready;
      expect(sdNotify('READY=1\nSTATUS=streams up', path)).toBe(true);
      expect(await rx.message).toBe('READY=1\nSTATUS=streams up');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('sends to an abstract socket named with @', async () => {
    const name = `@dmx-agent-test-${process.pid}`;
    const rx = await receiveOne(name);
    await rx.ready;
    expect(sdNotify('WATCHDOG=1', name)).toBe(true);
    expect(await rx.message).toBe('WATCHDOG=1');
  });

  it('rejects a relative socket path', () => {
    expect(() => sdNotify('READY=1', 'relative.sock')).toThrow(RangeError);
  });
});
