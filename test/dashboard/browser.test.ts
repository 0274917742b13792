/// <reference lib="dom" />
// The fleet dashboard in real headless Chromium (Debian's, driven by
// playwright-core), built from deploy/dashboard/ exactly as `npm run
// build:dashboard` builds it, against a real mosquitto with a WebSocket
// listener, and three real agents (`dmx-agent run` on the simulated
// receiver): two healthy boxes and one whose decoder refuses every buffer
// with EINVAL. Screenshots land in build/test-output/dashboard/.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectAsync } from 'mqtt';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { staticFiles } from '../../agent/mqtt/static-files.js';
import { buildDashboard } from '../../deploy/dashboard/build.mjs';
import { FleetSimulator } from '../fleet/simulator.js';
import { MISFIT_SUPERVISION, misfitStreamJson, simConfigJson, streamJson } from '../support/agent-env.js';
import { launchChromium } from '../support/browser.js';
import { type Broker, freePort, startMosquitto } from '../support/mosquitto.js';

const cli = fileURLToPath(new URL('../../dist/agent/cli.js', import.meta.url));
const SCREENSHOTS = fileURLToPath(new URL('../../build/test-output/dashboard/', import.meta.url));
/** Liveness only: how long a page or an agent may take before the test calls it stuck. */
const LIVENESS_MS = 30_000;
const TELEMETRY_MS = 1000;

interface RunningAgent {
  id: string;
  child: ChildProcess;
  exited: Promise<void>;
}

let broker: Broker;
let wsUrl: string;
let pageServer: Server;
let pageUrl: string;
let browser: Browser;
let scratch: string;
const agents = new Map<string, RunningAgent>();

function startAgent(id: string, streams: Array<Record<string, unknown>>, extra: Record<string, unknown> = {}): void {
  const file = join(scratch, `${id}.json`);
  const config = simConfigJson(streams, {
    deviceId: id,
    log: { level: 'warn', pretty: 'never' },
    mqtt: { enabled: true, url: broker.url, telemetryIntervalMs: TELEMETRY_MS },
    ...extra,
  });
  writeFileSync(file, JSON.stringify(config));
  const child = spawn(process.execPath, [cli, 'run', '--config', file], {
    env: { ...process.env, NOTIFY_SOCKET: '' },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  agents.set(id, { id, child, exited });
}

/** The max_queued_* lines of the fleet broker's configuration, as they are. */
function fleetQueueLimits(): string[] {
  const conf = readFileSync(fileURLToPath(new URL('../../deploy/mosquitto/dmx-fleet.conf', import.meta.url)), 'utf8');
  const lines = conf.split('\n').filter((line) => /^max_queued_(messages|bytes)\s/.test(line));
  expect(lines).toHaveLength(2);
  return lines;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : 0);
    });
  });
}

async function openDashboard(brokerUrl = wsUrl): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (err) => errors.push(err.message));
  // Any uncaught error in the page fails the test that opened it (checked in `noPageErrors`).
  (page as Page & { errors?: string[] }).errors = errors;
  page.setDefaultTimeout(LIVENESS_MS);
  await page.goto(`${pageUrl}?broker=${encodeURIComponent(brokerUrl)}`);
  return page;
}

function noPageErrors(page: Page): void {
  expect((page as Page & { errors?: string[] }).errors).toEqual([]);
}

async function screenshot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`) });
}

/** The device list's row of a device. */
function row(page: Page, id: string) {
  return page.locator(`.devices .device-row[data-device="${id}"]`);
}

beforeAll(async () => {
  mkdirSync(SCREENSHOTS, { recursive: true });
  scratch = mkdtempSync(join(tmpdir(), 'dmx-dashboard-test-'));
  // As on the fleet broker: persistence (retained statuses, a dead box's offline, survive the restart
  // below) and the per-client queue limits of deploy/mosquitto/dmx-fleet.conf, which decide whether a
  // page sent every retained status of a large fleet at once gets them all.
  broker = await startMosquitto({ websockets: true, persistence: true, extraConfig: fleetQueueLimits() });
  wsUrl = `${broker.listeners[1]!.url}/mqtt`;
  const site = await buildDashboard({ outdir: join(scratch, 'site') });
  pageServer = createServer(staticFiles(site));
  pageUrl = `http://127.0.0.1:${await listen(pageServer)}/`;
  browser = await launchChromium();
  startAgent('stb-alpha', [streamJson({ id: 'main' })]);
  startAgent('stb-bravo', [streamJson({ id: 'main' })]);
  // A pool larger than the decoder's sizeimage: every import is refused with EINVAL. The box is
  // configured to try, so the decoder's own answer is what the fleet sees.
  startAgent('stb-misfit', [misfitStreamJson()], { supervision: MISFIT_SUPERVISION });
}, 120_000);

afterAll(async () => {
  for (const agent of agents.values()) agent.child.kill('SIGKILL');
  await Promise.all([...agents.values()].map((a) => a.exited));
  await browser?.close();
  await new Promise<void>((resolve) => (pageServer ? pageServer.close(() => resolve()) : resolve()));
  await broker?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
}, 60_000);

describe('the fleet dashboard in Chromium', () => {
  it('shows every agent online with its streams live', async () => {
    const page = await openDashboard();
    await page.locator('.conn[data-phase="connected"]').waitFor();
    for (const id of ['stb-alpha', 'stb-bravo', 'stb-misfit']) {
      await row(page, id).waitFor();
      expect(await row(page, id).getAttribute('data-condition')).not.toBe('offline');
    }
    // Live telemetry: the healthy box's stream shows a bitrate, and its condition is ok.
    await row(page, 'stb-alpha').locator('[data-stream="main"] .bps', { hasText: /b\/s$/ }).waitFor();
    await page.locator('.devices .device-row[data-device="stb-alpha"][data-condition="ok"]').waitFor();
    await page.locator('[data-summary="online"] b', { hasText: /^3$/ }).waitFor();
    await screenshot(page, 'fleet');
    noPageErrors(page);
    await page.close();
  });

  it('shows the EINVAL of the misfit box with its diagnosed cause and remedy', async () => {
    const page = await openDashboard();
    // Events are not retained: the page sees those published after it subscribed, which the
    // misfit box does on every retry of its stream.
    const event = page.locator('.events .event[data-kind="errno"][data-device="stb-misfit"]').first();
    await event.waitFor();
    await expect(event.locator('.cause-code').textContent()).resolves.toBe('import-bytesused-above-sizeimage');
    await expect(event.locator('.event-title').textContent()).resolves.toMatch(/^VIDIOC_QBUF EINVAL/);
    // The remedy carries the numbers: the decoder's sizeimage and a pool buffer that fits it.
    const remedy = (await event.locator('.event-remedy').textContent()) ?? '';
    expect(remedy).toMatch(/^Remedy: /);
    expect(remedy).toMatch(/12288/);
    // The list counts it against the box, and names the cause under its id.
    await row(page, 'stb-misfit')
      .locator('.c-errno', { hasText: /EINVAL \d+/ })
      .waitFor();
    expect(await row(page, 'stb-misfit').locator('.cause').textContent()).toBe('import-bytesused-above-sizeimage');
    await page.locator('label', { hasText: 'errno only' }).locator('input').check();
    await screenshot(page, 'einval');
    noPageErrors(page);
    await page.close();
  });

  it('sends commands from the device page and shows the answers, pool.resize after a confirmation', async () => {
    const page = await openDashboard();
    await row(page, 'stb-alpha').click();
    await page.locator('.device-page[data-device="stb-alpha"]').waitFor();
    await page.locator('.stream-card[data-stream="main"]').waitFor();

    await page.locator('.command-buttons button', { hasText: 'streams' }).click();
    const streams = page.locator('.answer[data-command="streams"]');
    await streams.locator('.answer-data').waitFor();
    expect(await streams.getAttribute('data-state')).toBe('answered');
    const listed = JSON.parse((await streams.locator('.answer-data').textContent()) ?? 'null') as Array<{
      stream: string;
      state: string;
    }>;
    expect(listed.map((s) => s.stream)).toEqual(['main']);

    // A bad count is refused on the page, before anything is sent.
    await page.locator('.resize input[name="count"]').fill('99');
    await page.locator('.resize button', { hasText: 'Resize' }).click();
    await page.locator('.resize .warn', { hasText: 'from 2 to 32' }).waitFor();
    expect(await page.locator('.answer[data-command="pool.resize"]').count()).toBe(0);

    // A good one asks first; cancelling sends nothing.
    await page.locator('.resize input[name="count"]').fill('8');
    await page.locator('.resize button', { hasText: 'Resize' }).click();
    const confirm = page.getByRole('alertdialog', { name: 'confirm pool.resize' });
    await expect(confirm.textContent()).resolves.toMatch(/stream main on stb-alpha to 8 buffers/);
    await confirm.getByRole('button', { name: 'Cancel' }).click();
    expect(await page.locator('.answer[data-command="pool.resize"]').count()).toBe(0);

    await page.locator('.resize button', { hasText: 'Resize' }).click();
    await page.getByRole('button', { name: 'Resize the pool' }).click();
    const resize = page.locator('.answer[data-command="pool.resize"]');
    await resize.locator('.answer-data').waitFor();
    expect(await resize.locator('.outcome').textContent()).toMatch(/^ok in /);
    expect(JSON.parse((await resize.locator('.answer-data').textContent()) ?? 'null')).toMatchObject({
      outcome: 'applied',
    });
    // The box's own telemetry then reports the new pool.
    await page.locator('.stream-card[data-stream="main"] dd', { hasText: /^8 × / }).waitFor();
    await screenshot(page, 'device');
    noPageErrors(page);
    await page.close();
  });

  it('turns a SIGKILLed agent offline (its Last Will)', async () => {
    const page = await openDashboard();
    await page.locator('.devices .device-row[data-device="stb-bravo"][data-condition="ok"]').waitFor();
    const bravo = agents.get('stb-bravo')!;
    bravo.child.kill('SIGKILL');
    await bravo.exited;
    await page.locator('.devices .device-row[data-device="stb-bravo"][data-condition="offline"]').waitFor();
    await page.locator('[data-summary="offline"] b', { hasText: /^1$/ }).waitFor();
    // Worst first: the offline box heads the list.
    expect(await page.locator('.devices .device-row').first().getAttribute('data-device')).toBe('stb-bravo');
    await screenshot(page, 'offline');
    noPageErrors(page);
    await page.close();
  });

  it('says plainly when the broker is unreachable, and recovers when it is back', async () => {
    const deadPort = await freePort();
    const nowhere = await openDashboard(`ws://127.0.0.1:${deadPort}/mqtt`);
    const banner = nowhere.getByRole('alert');
    await expect(banner.textContent()).resolves.toMatch(
      new RegExp(`Cannot reach the MQTT broker at ws://127\\.0\\.0\\.1:${deadPort}/mqtt`),
    );
    await screenshot(nowhere, 'unreachable');
    noPageErrors(nowhere);
    await nowhere.close();

    const page = await openDashboard();
    await row(page, 'stb-alpha').waitFor();
    await broker.restart(async () => {
      await page.getByRole('alert').filter({ hasText: 'Cannot reach the MQTT broker' }).waitFor();
      // What was seen stays on the page while the broker is away.
      expect(await row(page, 'stb-alpha').count()).toBe(1);
    });
    await page.locator('.conn[data-phase="connected"]').waitFor();
    expect(await page.getByRole('alert').count()).toBe(0);
    noPageErrors(page);
    await page.close();
  });

  it('keeps a thousand devices to the rows in view, and finds any of them', async () => {
    const fleet = new FleetSimulator({
      url: broker.url,
      devices: 1000,
      idPrefix: 'sim',
      topicPrefix: 'stb',
      keepaliveSec: 30,
      sessionExpirySec: 600,
      reconnect: { baseMs: 200, capMs: 2000, stableMs: 60_000 },
      offlineQueue: { maxEvents: 100, maxBytes: 1 << 20 },
      telemetryIntervalMs: 2000,
      startPerSecond: 1000,
      einvalPerTick: 0.002,
    });
    // 1500 boxes long gone: nothing but their retained offline status (their Last Will), no telemetry
    // to bring them back into view. All of them reach a page opened now, at once, or the page
    // would not show them at all.
    const office = await connectAsync(broker.url, { protocolVersion: 5 });
    const gone = Array.from({ length: 1500 }, (_, i) => `gone-${String(i + 1).padStart(5, '0')}`);
    try {
      await Promise.all(
        gone.map((id) => office.publishAsync(`stb/${id}/status`, '{"state":"offline"}', { qos: 1, retain: true })),
      );
      await fleet.start();
      const page = await openDashboard();
      // The three agents (one of them killed above), the thousand simulated boxes and the gone ones.
      await page.locator('[data-summary="devices"] b', { hasText: /^2503$/ }).waitFor({ timeout: 60_000 });
      const bravo = agents.get('stb-bravo')!.child;
      const agentsOffline = bravo.exitCode !== null || bravo.signalCode !== null ? 1 : 0;
      await page.locator('[data-summary="offline"] b', { hasText: new RegExp(`^${1500 + agentsOffline}$`) }).waitFor();
      await page.locator('.devices .device-row').first().waitFor();
      const total = Number(await page.locator('.vlist.devices').getAttribute('data-total'));
      expect(total).toBe(2503);
      // Only what fits the list's height (plus a few rows either side) is in the DOM.
      const listHeight = await page.locator('.vlist.devices').evaluate((el) => el.clientHeight);
      const rendered = await page.locator('.devices .device-row').count();
      expect(rendered).toBeGreaterThan(0);
      expect(rendered).toBeLessThanOrEqual(Math.ceil(listHeight / 52) + 8);

      // Sorted by id and scrolled to the end, the last box is there.
      await page.locator('.toolbar select').selectOption('id');
      await page.locator('.vlist.devices').evaluate((el) => {
        el.scrollTop = el.scrollHeight;
      });
      // The largest id of all: the agents' (stb-*) sort after sim-* and gone-*.
      await row(page, 'stb-misfit').waitFor();
      expect(await page.locator('.devices .device-row').last().getAttribute('data-device')).toBe('stb-misfit');
      // The filter finds one box among all.
      await page.getByRole('searchbox', { name: 'filter by device id' }).fill('sim-00421');
      await page.locator('.count[data-rows="1"]').waitFor();
      await row(page, 'sim-00421').waitFor();
      await page.getByRole('searchbox', { name: 'filter by device id' }).fill('');
      await page.locator('.toolbar select').selectOption('condition');
      await screenshot(page, 'thousand');
      noPageErrors(page);
      await page.close();
    } finally {
      await fleet.stop();
      // Clear the retained statuses again (an empty retained message), so nothing outlives the test.
      await Promise.all(gone.map((id) => office.publishAsync(`stb/${id}/status`, '', { qos: 1, retain: true })));
      await office.endAsync();
    }
  }, 180_000);

  it('keeps working when a box sends what the contract allows but a page could choke on', async () => {
    const page = await openDashboard();
    await page.locator('.conn[data-phase="connected"]').waitFor();
    const box = await connectAsync(broker.url, { protocolVersion: 5 });
    try {
      // A time no Date can hold (the schema allows any non-negative integer), then junk, then a real event.
      await box.publishAsync(
        'stb/odd-box/events/queue-overflow',
        JSON.stringify({ dropped: 1, droppedBytes: 10, since: Number.MAX_SAFE_INTEGER }),
        { qos: 1 },
      );
      await box.publishAsync('stb/odd-box/telemetry', '{"t":"soon"', { qos: 0 });
      await box.publishAsync('stb/odd-box/events/errno', JSON.stringify({ cause: 'nope' }), { qos: 1 });
      await page.locator('.events .event[data-kind="queue-overflow"][data-device="odd-box"]').waitFor();
      expect(await page.locator('.events .event[data-kind="queue-overflow"] .event-detail').textContent()).toMatch(
        /invalid time/,
      );
      // The feed still moves: the misfit box's next EINVAL shows above it (newest first).
      await expect
        .poll(
          () =>
            page.evaluate(() => {
              const rows = Array.from(document.querySelectorAll('.events .event'));
              const overflow = rows.findIndex((r) => r.getAttribute('data-kind') === 'queue-overflow');
              const einval = rows.findIndex(
                (r) => r.getAttribute('data-kind') === 'errno' && r.getAttribute('data-device') === 'stb-misfit',
              );
              return overflow > 0 && einval >= 0 && einval < overflow;
            }),
          { timeout: LIVENESS_MS },
        )
        .toBe(true);
      await page.locator('.bottom', { hasText: /2 ignored as not in the contract/ }).waitFor();
      noPageErrors(page);
      await page.close();
    } finally {
      await box.endAsync();
    }
  }, 90_000);
});

describe('the dashboard as npm start serves it', () => {
  it('is served by the development broker and works there with no settings (MQTT 3.1.1)', async () => {
    // `npm start` builds deploy/dashboard/dist/ and the agent serves it from there.
    await buildDashboard();
    const [port, wsPort] = [await freePort(), await freePort()];
    startAgent('dev-box', [streamJson({ id: 'main' })], {
      mqtt: { enabled: true, url: 'embedded', embedded: { port, wsPort }, telemetryIntervalMs: TELEMETRY_MS },
    });
    const url = `http://127.0.0.1:${wsPort}/`;
    const page = await browser.newPage({ viewport: { width: 1440, height: 900 } });
    page.setDefaultTimeout(LIVENESS_MS);
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    // The broker starts beside the agent: retry the first load until it listens (liveness only).
    const deadline = Date.now() + LIVENESS_MS;
    for (;;) {
      try {
        await page.goto(url);
        break;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
    await page.locator('.conn[data-phase="connected"]', { hasText: 'MQTT 3.1.1' }).waitFor();
    expect(await page.locator('.conn').textContent()).toContain(`ws://127.0.0.1:${wsPort}/mqtt`);
    await page.locator('.devices .device-row[data-device="dev-box"][data-condition="ok"]').click();
    await page.locator('.command-buttons button', { hasText: 'status' }).click();
    const answer = page.locator('.answer[data-command="status"]');
    await answer.locator('.answer-data').waitFor();
    expect(await answer.locator('.outcome').textContent()).toMatch(/^ok in /);
    await screenshot(page, 'npm-start');
    expect(errors).toEqual([]);
    await page.close();
  });
});
