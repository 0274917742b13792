// deploy/systemd/dmx-agent.service as systemd itself judges it: `systemd-analyze
// verify` must report nothing (an unknown or misspelt key is ignored at run
// time, so hardening would be silently missing), and `systemd-analyze
// security --offline=true` must score an exposure of 2.0 or better. Both
// outputs are printed. Then the unit and the production configuration it
// starts must agree with each other and with what the agent does.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../agent/config/load.js';

const UNIT = fileURLToPath(new URL('../../deploy/systemd/dmx-agent.service', import.meta.url));
const PRODUCTION_CONFIG = fileURLToPath(new URL('../../deploy/config/config.json', import.meta.url));
const MAX_EXPOSURE = 2.0;

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

/** `Key=value` lines of the unit by section; a key may repeat. */
function parseUnit(text: string): Map<string, Array<[string, string]>> {
  const sections = new Map<string, Array<[string, string]>>();
  let current: Array<[string, string]> | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) {
      current = [];
      sections.set(header[1]!, current);
      continue;
    }
    const eq = line.indexOf('=');
    if (current === null || eq <= 0) throw new Error(`not a unit line: ${line}`);
    current.push([line.slice(0, eq), line.slice(eq + 1)]);
  }
  return sections;
}

const unitText = readFileSync(UNIT, 'utf8');
const unit = parseUnit(unitText);
const service = unit.get('Service') ?? [];
const values = (key: string) => service.filter(([k]) => k === key).map(([, v]) => v);
const value = (key: string) => {
  const all = values(key);
  if (all.length !== 1) throw new Error(`${key} is set ${all.length} times`);
  return all[0]!;
};

/**
 * `systemd-analyze verify` in a root of its own: the host's unit directory (for the targets the unit
 * names) plus stand-ins for the executables the unit starts, which are not installed on this machine.
 */
function verify(unitText: string): { status: number | null; output: string } {
  const root = mkdtempSync(join(tmpdir(), 'dmx-unit-root-'));
  cleanups.push(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'usr/lib/systemd'), { recursive: true });
  cpSync('/usr/lib/systemd/system', join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
  mkdirSync(join(root, 'etc/systemd/system'), { recursive: true });
  writeFileSync(join(root, 'etc/systemd/system/dmx-agent.service'), unitText);
  for (const [, command] of service.filter(([k]) => k.startsWith('Exec'))) {
    const executable = command.split(/\s+/)[0]!.replace(/^[-@:+!]+/, '');
    mkdirSync(join(root, executable, '..'), { recursive: true });
    copyFileSync('/bin/true', join(root, executable));
    chmodSync(join(root, executable), 0o755);
  }
  const result = spawnSync('systemd-analyze', ['verify', `--root=${root}`, 'dmx-agent.service'], { encoding: 'utf8' });
  return { status: result.status, output: `${result.stdout}${result.stderr}`.trim() };
}

function exposure(path: string): { score: number; output: string } {
  const result = spawnSync('systemd-analyze', ['security', '--offline=true', '--no-pager', path], { encoding: 'utf8' });
  const output = `${result.stdout}${result.stderr}`;
  const match = /Overall exposure level for [^:]+: (\d+(?:\.\d+)?)/.exec(output);
  if (match === null) throw new Error(`no exposure level in:\n${output}`);
  return { score: Number(match[1]), output };
}

describe('deploy/systemd/dmx-agent.service', () => {
  it('passes systemd-analyze verify with nothing to say', () => {
    const { status, output } = verify(unitText);
    console.log(`systemd-analyze verify dmx-agent.service: exit ${status}${output ? `\n${output}` : ', no output'}`);
    expect(output).toBe('');
    expect(status).toBe(0);
  });

  it('would have its misspelt hardening reported by verify (the check can fail)', () => {
    const { output } = verify(unitText.replace('ProtectSystem=strict', 'ProtectSytem=strict'));
    expect(output).toMatch(/Unknown key 'ProtectSytem' in section \[Service\]/);
  });

  it(`scores an exposure of ${MAX_EXPOSURE} or better in systemd-analyze security --offline=true`, () => {
    const { score, output } = exposure(UNIT);
    console.log(output.trimEnd());
    expect(score).toBeLessThanOrEqual(MAX_EXPOSURE);
    // The same measurement of a bare service, so the figure above is known to mean something.
    const dir = mkdtempSync(join(tmpdir(), 'dmx-unit-bare-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const bare = join(dir, 'bare.service');
    writeFileSync(bare, '[Service]\nExecStart=/usr/bin/dmx-agent run\n');
    expect(exposure(bare).score).toBeGreaterThan(5);
  });

  it('is a notify service with a watchdog, bounded restarts and no restart for a bad configuration', () => {
    expect(value('Type')).toBe('notify');
    expect(value('NotifyAccess')).toBe('main');
    expect(Number(value('WatchdogSec'))).toBeGreaterThan(0);
    expect(value('Restart')).toBe('on-failure');
    // 78 is what dmx-agent exits with for a configuration that cannot work (agent/cli.ts).
    expect(value('RestartPreventExitStatus')).toBe('78');
    const unitSection = new Map(unit.get('Unit'));
    expect(Number(unitSection.get('StartLimitBurst'))).toBeGreaterThan(0);
    expect(Number(unitSection.get('StartLimitIntervalSec'))).toBeGreaterThan(0);
    expect(unit.get('Install')).toEqual([['WantedBy', 'multi-user.target']]);
  });

  it('runs as its own user with the device groups, and can write nothing but its state directory', () => {
    expect(value('User')).toBe('dmx-agent');
    expect(value('SupplementaryGroups')).toBe('video');
    expect(value('StateDirectory')).toBe('dmx-agent');
    expect(value('ProtectSystem')).toBe('strict');
    expect(values('ReadWritePaths')).toEqual([]);
    expect(value('UMask')).toBe('0077');
    expect(value('MemoryMax')).toMatch(/^\d+[KMG]$/);
  });

  it('opens DVB and video4linux devices only, keeps them visible, and lets V8 map executable memory', () => {
    expect(value('DevicePolicy')).toBe('closed');
    expect(values('DeviceAllow').sort()).toEqual(['char-DVB rw', 'char-video4linux rw']);
    // PrivateDevices would hide /dev/dvb; MemoryDenyWriteExecute kills V8. Each absence is explained.
    expect(values('PrivateDevices')).toEqual([]);
    expect(values('MemoryDenyWriteExecute')).toEqual([]);
    expect(unitText).toMatch(/# Not PrivateDevices=: [^\n]+/);
    expect(unitText).toMatch(/# Not MemoryDenyWriteExecute=: [^\n]+/);
    expect(value('RestrictAddressFamilies')).toBe('AF_UNIX AF_INET AF_INET6');
    expect(values('SystemCallFilter')).toContain('@system-service');
    expect(value('CapabilityBoundingSet')).toBe('');
    expect(value('NoNewPrivileges')).toBe('yes');
    for (const key of ['ProtectKernelTunables', 'ProtectKernelModules', 'ProtectKernelLogs', 'LockPersonality']) {
      expect(value(key), key).toBe('yes');
    }
    expect(value('RestrictNamespaces')).toBe('yes');
    expect(value('ProtectHome')).toBe('yes');
  });

  it('starts the production configuration, whose override file lies in the state directory', () => {
    const execStart = value('ExecStart');
    expect(execStart).toBe('/usr/bin/dmx-agent run --config /etc/dmx-agent/config.json');
    const production = JSON.parse(readFileSync(PRODUCTION_CONFIG, 'utf8')) as Record<string, unknown>;
    expect(production.overrideFile).toBe(`/var/lib/${value('StateDirectory')}/override.json`);
    // The agent gives up waiting for its streams and reports READY=1 before systemd gives up on the start.
    let config: ReturnType<typeof loadConfig> | null = null;
    try {
      config = loadConfig({ file: PRODUCTION_CONFIG, env: {}, hostname: 'stb-test' });
    } catch (err) {
      // On this machine the board's TLS files are missing, and that must be all that is wrong.
      expect(err).toBeInstanceOf(ConfigError);
      const problems = (err as ConfigError).problems;
      expect(problems.map((p) => p.key).sort()).toEqual(['mqtt.tls.ca', 'mqtt.tls.cert', 'mqtt.tls.key']);
      for (const problem of problems) expect(problem.message).toMatch(/ENOENT/);
      const noTls = { ca: '', cert: '', key: '' };
      config = loadConfig({
        file: PRODUCTION_CONFIG,
        env: {},
        hostname: 'stb-test',
        overrides: { mqtt: { tls: noTls } },
      });
    }
    expect(config.backend).toBe('kernel');
    expect(config.systemd.readyTimeoutMs).toBeLessThan(Number(value('TimeoutStartSec')) * 1000);
    // SIGTERM drains within shutdownTimeoutMs, before systemd's SIGKILL.
    expect(config.supervision.shutdownTimeoutMs).toBeLessThan(Number(value('TimeoutStopSec')) * 1000);
    expect(config.log.pretty).toBe('never');
  });
});

describe('the systemd tooling this test relies on', () => {
  it('is systemd 252 or later (offline security scoring)', () => {
    const version = execFileSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
    expect(Number(/systemd (\d+)/.exec(version)?.[1])).toBeGreaterThanOrEqual(252);
  });
});
