/** The agent's version: package.json's, read once (from agent/ in the sources or dist/agent/ when built). */
import { existsSync, readFileSync } from 'node:fs';

let cached: string | null = null;

export function agentVersion(): string {
  if (cached !== null) return cached;
  for (const candidate of ['../package.json', '../../package.json']) {
    const url = new URL(candidate, import.meta.url);
    if (!existsSync(url)) continue;
    const pkg = JSON.parse(readFileSync(url, 'utf8')) as { name?: string; version?: string };
    if (pkg.name === 'dmx-agent' && pkg.version) {
      cached = pkg.version;
      return cached;
    }
  }
  throw new Error('dmx-agent: cannot find its package.json');
}
