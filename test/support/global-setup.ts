// Builds the C test tools (the reference consumer) before any test runs.
// Inside the qemu VM the tree is read-only: the harness has built them on
// the host already, and build.sh finds them up to date.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const script = fileURLToPath(new URL('../consumer/build.sh', import.meta.url));
  execFileSync('bash', [script], { stdio: ['ignore', 'ignore', 'inherit'] });
}
