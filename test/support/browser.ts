/**
 * Debian's Chromium, headless, driven by playwright-core (which downloads no
 * browser of its own). The flags keep Chromium off the network it would otherwise try to
 * reach at start (the machines here have none) and work as root.
 * Playwright gives every launch a new, empty profile directory and removes it on close.
 */
import { accessSync, constants } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];

/** $CHROMIUM, else Debian's chromium; throws naming the package when there is none. */
export function chromiumPath(): string {
  const candidates = process.env.CHROMIUM ? [process.env.CHROMIUM] : CANDIDATES;
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new Error(`no Chromium at ${candidates.join(' or ')}: apt-get install chromium (or set CHROMIUM)`);
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-default-apps',
      '--disable-extensions',
    ],
  });
}
