// The dmx-agent command as a firmware team runs it: exit status says whether
// the media path is usable.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const cli = fileURLToPath(new URL('../../dist/agent/cli.js', import.meta.url));

async function dmxAgent(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, ...args], { timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('dmx-agent', () => {
  it('probe --sim prints JSON and exits 0 on a usable media path', async () => {
    const { code, stdout } = await dmxAgent('probe', '--sim');
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toMatchObject({ backend: 'sim', mediaPathUsable: true });
  });

  it('probe on a host without DVB hardware exits 1 and says why', async () => {
    const { code, stdout } = await dmxAgent('probe');
    const result = JSON.parse(stdout) as { mediaPathUsable: boolean; problems: string[] };
    expect(code).toBe(result.mediaPathUsable ? 0 : 1);
    if (!result.mediaPathUsable) expect(result.problems.length).toBeGreaterThan(0);
  });

  it('rejects an unknown command or option with usage and exit 2', async () => {
    expect((await dmxAgent('frobnicate')).code).toBe(2);
    const bad = await dmxAgent('--nope');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/Usage: dmx-agent/);
    expect((await dmxAgent('--version')).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });
});
