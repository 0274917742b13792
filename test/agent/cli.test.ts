// The configuration commands as a firmware team uses them before flashing:
// check-config names every problem by its key and exits 78 (EX_CONFIG),
// print-config shows the effective configuration with secrets redacted, and
// run refuses to start on a configuration that cannot work.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const execFileP = promisify(execFile);
const cli = fileURLToPath(new URL('../../dist/agent/cli.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'dmx-agent-cli-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function dmxAgent(args: string[], env: Record<string, string> = {}) {
  try {
    const { stdout, stderr } = await execFileP(process.execPath, [cli, ...args], {
      timeout: 30_000,
      env: { ...process.env, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

function configFile(name: string, json: unknown): string {
  const file = join(dir, name);
  writeFileSync(file, typeof json === 'string' ? json : JSON.stringify(json));
  return file;
}

const goodStream = {
  id: 'hd',
  filter: { pids: [256] },
  bitrate: 8_000_000,
  tuning: { deliverySystem: 'DVBT', frequency: 474_000_000 },
  sink: { type: 'decoder', decoder: 'vim2m', format: { fourcc: 'RGB3', width: 64, height: 64 } },
};

describe('dmx-agent check-config', () => {
  it('accepts the development configuration', async () => {
    const { code, stdout } = await dmxAgent(['check-config', '--config', 'config/development.json']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/configuration valid: backend sim, 2 stream\(s\): hd, sd/);
  });

  it('reads the file DMX_AGENT_CONFIG names when --config is not given', async () => {
    const { code, stdout } = await dmxAgent(['check-config'], { DMX_AGENT_CONFIG: 'config/development.json' });
    expect(code).toBe(0);
    expect(stdout).toMatch(/backend sim, 2 stream\(s\)/);
  });

  it('names every problem by its key and exits 78', async () => {
    const file = configFile('bad.json', {
      backend: 'sim',
      colour: 'blue',
      streams: [
        { ...goodStream, pool: { size: 800_000 } },
        { ...goodStream, filter: { pids: [9000] }, sink: { type: 'discard' } },
      ],
    });
    const { code, stderr } = await dmxAgent(['check-config', '--config', file]);
    expect(code).toBe(78);
    expect(stderr).toMatch(/^ {2}colour: /m);
    expect(stderr).toMatch(/^ {2}streams\[0\]\.pool\.size: .*770048/m);
    expect(stderr).toMatch(/^ {2}streams\[1\]\.id: .*duplicate|^ {2}streams\[1\]\.id: .*'hd'/m);
    expect(stderr).toMatch(/^ {2}streams\[1\]\.filter\.pids/m);
  });

  it('refuses a pool the decoder format cannot import, naming both sizes and the fix', async () => {
    // 64x64 RGB24 is 12288 bytes; 96 packets are 18048.
    const file = configFile('misfit.json', { backend: 'sim', streams: [{ ...goodStream, pool: { size: 96 * 188 } }] });
    const { code, stderr } = await dmxAgent(['check-config', '--config', file]);
    expect(code).toBe(78);
    expect(stderr).toMatch(/streams\[0\]\.pool\.size: .*18048.*12288/);
    expect(stderr).toMatch(/12220/);
  });

  it('names the environment variable behind a bad value, and a file that is not JSON', async () => {
    const bad = await dmxAgent(['check-config'], { DMX_AGENT_BACKEND: 'qemu' });
    expect(bad.code).toBe(78);
    expect(bad.stderr).toMatch(/backend: .*DMX_AGENT_BACKEND/);
    const file = configFile('broken.json', '{ "backend": ');
    const broken = await dmxAgent(['check-config', '--config', file]);
    expect(broken.code).toBe(78);
    expect(broken.stderr).toContain(file);
    const missing = await dmxAgent(['check-config', '--config', join(dir, 'nope.json')]);
    expect(missing.code).toBe(78);
    expect(missing.stderr).toContain('nope.json');
  });
});

describe('dmx-agent print-config', () => {
  it('prints the effective configuration with the password and URL credentials redacted', async () => {
    const file = configFile('secret.json', {
      backend: 'sim',
      mqtt: { url: 'mqtts://fleet:url-secret@broker.example:8883', password: 'hunter2' },
      streams: [goodStream],
    });
    const { code, stdout } = await dmxAgent(['print-config', '--config', file], { DMX_AGENT_DEVICE_ID: 'stb-42' });
    expect(code).toBe(0);
    const printed = JSON.parse(stdout) as { deviceId: string; mqtt: { url: string; password: string } };
    expect(printed.deviceId).toBe('stb-42');
    expect(printed.mqtt.password).toBe('[redacted]');
    expect(printed.mqtt.url).not.toContain('url-secret');
    expect(stdout).not.toContain('hunter2');
  });
});

describe('dmx-agent run', () => {
  it('does not start on a configuration that cannot work', async () => {
    const file = configFile('norun.json', { backend: 'sim', streams: [{ ...goodStream, pool: { count: 99 } }] });
    const { code, stderr } = await dmxAgent(['run', '--config', file]);
    expect(code).toBe(78);
    expect(stderr).toMatch(/streams\[0\]\.pool\.count/);
  });
});
