// Builds what the tests run as programs before any test runs: the C test
// tools (the reference consumer) and the agent's dist/ (the CLI tests run
// dist/agent/cli.js). Inside the qemu VM the tree is read-only: the harness
// has built both on the host already, and build.sh finds its tools up to date.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const script = fileURLToPath(new URL('../consumer/build.sh', import.meta.url));
  execFileSync('bash', [script], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (process.env.DMX_TEST_BACKEND !== 'kernel' && process.env.DMX_IN_VM !== '1') {
    const tsc = fileURLToPath(new URL('../../node_modules/typescript/bin/tsc', import.meta.url));
    const project = fileURLToPath(new URL('../../tsconfig.json', import.meta.url));
    execFileSync(process.execPath, [tsc, '-p', project], { stdio: ['ignore', 'inherit', 'inherit'] });
  }
}
