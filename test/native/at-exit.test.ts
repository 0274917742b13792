// Whatever JS leaves open is closed at environment teardown by the addon's
// cleanup hook (pumps first, then sinks, pools, simulations): a child that
// exits with a running pump exits cleanly, and so does one whose closed pump
// still has events in flight when the loop ends.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const child = fileURLToPath(new URL('./fixtures/leave-open.mjs', import.meta.url));

describe('teardown', () => {
  it('closes a running pump, its pool and the simulation when the process exits', async () => {
    const { stdout, stderr } = await run(process.execPath, [child], { timeout: 30_000 });
    expect(stdout).toMatch(/dequeued [1-9]\d*/);
    expect(stderr).toBe('');
  });

  it('exits cleanly when a closed pump delivers its last events during teardown', async () => {
    const { stdout, stderr } = await run(process.execPath, [child, 'close'], { timeout: 30_000 });
    expect(stdout).toMatch(/dequeued [1-9]\d*/);
    expect(stderr).toBe('');
  });
});
