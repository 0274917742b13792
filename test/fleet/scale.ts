/**
 * The fleet scale run (started by test/fleet/scale-run.mjs): N simulated boxes
 * on one mosquitto of this machine, online with telemetry at the configured
 * interval; then the broker is restarted (SIGTERM, persistence on, the same
 * port) and every box's reconnect time is recorded; then a command is fanned
 * out to every box and the answers timed. It prints the figures, judges the
 * pass line, writes build/fleet/scale-<N>.json and the reconnect timeline as
 * build/fleet/reconnect-<N>.png.
 *
 * Pass line (judgeReconnects in reconnect-judgement.ts, where the reasons are):
 * every device back within the backoff cap plus a margin after the broker
 * listens again, and no thundering herd: in no window of a tenth of the base
 * delay (sliding; wider for a small fleet) more connects than twice the rate
 * the backoff policy spreads the fleet to, 2 * N / base.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { connectAsync } from 'mqtt';
import { loadConfig } from '../../agent/config/load.js';
import { type Broker, startMosquitto } from '../support/mosquitto.js';
import { histogramPng } from './histogram-png.js';
import { judgeReconnects } from './reconnect-judgement.js';
import { FleetSimulator } from './simulator.js';

const CLOCK_TICKS_PER_SECOND = 100;

interface ProcessSample {
  atMs: number;
  cpuSeconds: number;
  rssBytes: number;
  peakRssBytes: number;
}

/** The broker's pid: the process whose command line names this broker's configuration file. */
function brokerPid(broker: Broker): number {
  const config = join(broker.dir, 'mosquitto.conf');
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes(config)) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`no process runs ${config}`);
}

function sample(pid: number): ProcessSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { atMs: performance.now(), cpuSeconds, rssBytes: kb('VmRSS'), peakRssBytes: kb('VmHWM') };
}

function cpuPercent(from: ProcessSample, to: ProcessSample): number {
  return round((100 * (to.cpuSeconds - from.cpuSeconds)) / Math.max(0.001, (to.atMs - from.atMs) / 1000), 1);
}

function round(value: number, decimals = 0): number {
  const scale = 10 ** decimals;
  return Math.round(value * scale) / scale;
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitUntil(condition: () => boolean, deadlineMs: number, everyMs = 50): Promise<boolean> {
  const deadline = performance.now() + deadlineMs;
  while (!condition()) {
    if (performance.now() > deadline) return false;
    await sleep(everyMs);
  }
  return true;
}

function openFileLimit(): number {
  const line = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return line?.[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(line?.[1] ?? 1024);
}

const mb = (bytes: number) => round(bytes / 1048576, 1);

export async function main(argv: string[]): Promise<number> {
  const mqtt = loadConfig({ file: 'config/default.json', env: {} }).mqtt;
  const { values } = parseArgs({
    args: argv,
    options: {
      devices: { type: 'string', default: '500' },
      'interval-ms': { type: 'string', default: String(mqtt.telemetryIntervalMs) },
      'base-ms': { type: 'string', default: String(mqtt.reconnect.baseMs) },
      'cap-ms': { type: 'string', default: String(mqtt.reconnect.capMs) },
      'margin-ms': { type: 'string', default: '5000' },
      'start-per-second': { type: 'string', default: '500' },
      'steady-intervals': { type: 'string', default: '2' },
      'einval-per-tick': { type: 'string', default: '0.002' },
      out: { type: 'string', default: 'build/fleet' },
    },
  });
  const devices = Number(values.devices);
  const intervalMs = Number(values['interval-ms']);
  const reconnect = {
    baseMs: Number(values['base-ms']),
    capMs: Number(values['cap-ms']),
    stableMs: mqtt.reconnect.stableMs,
  };
  const marginMs = Number(values['margin-ms']);
  const startPerSecond = Number(values['start-per-second']);
  const outDir = resolve(values.out);
  const topicPrefix = 'stb';
  const log = (line: string) => console.log(`[fleet] ${line}`);

  const fdLimit = openFileLimit();
  if (fdLimit < devices + 512) {
    throw new Error(
      `open file limit ${fdLimit} is below ${devices + 512} (run through test/fleet/scale-run.mjs, which raises it as root)`,
    );
  }
  log(
    `${devices} devices, telemetry every ${intervalMs} ms, backoff ${reconnect.baseMs}..${reconnect.capMs} ms, fd limit ${fdLimit}`,
  );

  const broker = await startMosquitto({
    persistence: true,
    // The generated configuration logs everything (each PUBLISH included); for a load run only
    // connections and problems, or the broker's figures would be mostly its own log.
    // The back office takes one answer per device at once: mosquitto's defaults (20 in flight, 1000
    // queued per client) would drop most of a large fan-out's answers before they reach it.
    extraConfig: [
      'log_type none',
      'log_type error',
      'log_type warning',
      'log_type notice',
      'max_connections -1',
      'max_inflight_messages 0',
      'max_queued_messages 0',
    ],
  });
  const fleet = new FleetSimulator({
    url: broker.url,
    devices,
    topicPrefix,
    keepaliveSec: mqtt.keepaliveSec,
    sessionExpirySec: mqtt.sessionExpirySec,
    reconnect,
    offlineQueue: mqtt.offlineQueue,
    telemetryIntervalMs: intervalMs,
    startPerSecond,
    einvalPerTick: Number(values['einval-per-tick']),
  });
  const office = await connectAsync(broker.url, {
    protocolVersion: 5,
    clientId: 'fleet-backoffice',
    reconnectPeriod: 500,
  });
  const answersTopic = `backoffice/answers/${process.pid}`;
  let telemetryHeard = 0;
  let errnoHeard = 0;
  const answeredAt = new Map<string, number>();
  office.on('message', (topic, _payload, packet) => {
    if (topic.endsWith('/telemetry')) telemetryHeard += 1;
    else if (topic.endsWith('/events/errno')) errnoHeard += 1;
    else if (topic === answersTopic) {
      const device = packet.properties?.correlationData?.toString();
      if (device !== undefined && !answeredAt.has(device)) answeredAt.set(device, performance.now());
    }
  });
  await office.subscribeAsync([`${topicPrefix}/+/telemetry`, `${topicPrefix}/+/events/errno`], { qos: 0 });
  await office.subscribeAsync(answersTopic, { qos: 1 });

  const simCpuStart = process.cpuUsage();
  let exitCode = 1;
  try {
    // ---------------------------------------------------------------- online
    const startedAt = performance.now();
    const starting = fleet.start();
    const online = await waitUntil(() => fleet.onlineCount() === devices, devices * 20 + 120_000, 100);
    await starting;
    const onlineMs = performance.now() - startedAt;
    if (!online) throw new Error(`only ${fleet.onlineCount()} of ${devices} devices came online`);
    log(`all ${devices} online in ${round(onlineMs / 1000, 1)} s`);

    // ---------------------------------------------------------------- steady state
    let pid = brokerPid(broker);
    const steadyMs = Number(values['steady-intervals']) * intervalMs;
    // Every device past its first tick (whose level changes from nothing send extra snapshots).
    await sleep(intervalMs);
    const steadyFrom = sample(pid);
    const telemetryFrom = telemetryHeard;
    await sleep(steadyMs);
    const steadyTo = sample(pid);
    const telemetryPerSecond = (telemetryHeard - telemetryFrom) / (steadyMs / 1000);
    const steady = {
      windowMs: steadyMs,
      telemetryPerSecond: round(telemetryPerSecond, 1),
      telemetryPerSecondExpected: round(devices / (intervalMs / 1000), 1),
      errnoEventsSoFar: errnoHeard,
      brokerCpuPercent: cpuPercent(steadyFrom, steadyTo),
      brokerRssMb: mb(steadyTo.rssBytes),
    };
    log(
      `steady: telemetry ${steady.telemetryPerSecond}/s (expected ${steady.telemetryPerSecondExpected}/s), broker CPU ${steady.brokerCpuPercent}%, RSS ${steady.brokerRssMb} MB`,
    );

    // ---------------------------------------------------------------- broker restart
    const connectsBefore = fleet.devices.map((d) => d.connectTimes.length);
    const peakBeforeRestart = steadyTo.peakRssBytes;
    const sigtermAt = performance.now();
    let downAt = sigtermAt;
    await broker.restart(() => {
      downAt = performance.now();
    });
    const upAt = performance.now();
    pid = brokerPid(broker);
    const restartSamples: ProcessSample[] = [sample(pid)];
    const sampler = setInterval(() => {
      try {
        restartSamples.push(sample(pid));
      } catch {
        // the broker is gone: the run fails below
      }
    }, 1000);
    const backOf = (index: number): number | null => {
      const device = fleet.devices[index]!;
      return device.connectTimes[connectsBefore[index]!] ?? null;
    };
    const allBack = () => fleet.devices.every((_, index) => backOf(index) !== null);
    // Waits past the pass line's bound (cap + margin) so a late device is counted as late, not as missing.
    await waitUntil(allBack, reconnect.capMs + marginMs + 30_000, 100);
    clearInterval(sampler);
    restartSamples.push(sample(pid));
    // upAt is when this process saw the port accept, polled on an event loop busy with the fleet:
    // a device may be back a little before it (a negative time).
    const reconnectMs = fleet.devices
      .map((_, index) => backOf(index))
      .filter((at): at is number => at !== null)
      .map((at) => at - upAt)
      .sort((a, b) => a - b);
    const judgement = judgeReconnects({
      devices,
      reconnectMs,
      baseMs: reconnect.baseMs,
      capMs: reconnect.capMs,
      marginMs,
    });
    const back = judgement.devicesBack;
    const lastMs = judgement.lastMs;
    const restartFirst = restartSamples[0]!;
    const restartLast = restartSamples[restartSamples.length - 1]!;
    const restart = {
      downForMs: round(upAt - downAt),
      sigtermToDownMs: round(downAt - sigtermAt),
      devicesBack: back,
      timeToAllBackMs: back === devices ? round(lastMs) : null,
      firstBackMs: round(judgement.firstMs),
      p50BackMs: round(percentile(reconnectMs, 50)),
      p90BackMs: round(percentile(reconnectMs, 90)),
      peakConnectsInAnySecond: judgement.peakPerSecond,
      meanConnectsPerSecond: round(judgement.meanPerSecond, 1),
      brokerCpuPercent: cpuPercent(restartFirst, restartLast),
      brokerPeakCpuPercentPerSecond: Math.max(
        0,
        ...restartSamples.slice(1).map((s, i) => cpuPercent(restartSamples[i]!, s)),
      ),
      brokerRssMb: mb(restartLast.rssBytes),
      brokerPeakRssMb: mb(Math.max(restartLast.peakRssBytes, peakBeforeRestart)),
    };
    const pass = {
      allBackWithinCapPlusMargin: judgement.allBackWithinCapPlusMargin,
      boundMs: judgement.boundMs,
      noHerd: judgement.noHerd,
      herdCanFail: judgement.herdCanFail,
      windowMs: round(judgement.windowMs),
      peakInWindow: judgement.peakInWindow,
      limitInWindow: round(judgement.limitInWindow, 1),
      peakPerSecondInWindow: round((judgement.peakInWindow * 1000) / judgement.windowMs),
      policyPerSecond: round(judgement.policyPerSecond),
      limitPerSecond: round(judgement.limitPerSecond),
    };
    const passed = judgement.passed;
    log(
      `restart: broker down ${restart.downForMs} ms; ${back}/${devices} back, all back in ${restart.timeToAllBackMs ?? 'n/a'} ms (first ${restart.firstBackMs}, p50 ${restart.p50BackMs}, p90 ${restart.p90BackMs}); connects: at most ${restart.peakConnectsInAnySecond} in any second, mean ${restart.meanConnectsPerSecond}/s from first to last; broker CPU ${restart.brokerCpuPercent}% (peak second ${restart.brokerPeakCpuPercentPerSecond}%), RSS ${restart.brokerRssMb} MB (peak ${restart.brokerPeakRssMb} MB)`,
    );
    const herdVerdict = !pass.herdCanFail ? 'cannot fail with so few devices' : pass.noHerd ? 'yes' : 'NO';
    log(
      `pass line: all back within ${pass.boundMs} ms: ${pass.allBackWithinCapPlusMargin ? 'yes' : 'NO'}; at most ${pass.peakInWindow} connects in any ${pass.windowMs} ms (${pass.peakPerSecondInWindow}/s), limit ${pass.limitInWindow} (2 x N / base = ${pass.limitPerSecond}/s; the policy's average is ${pass.policyPerSecond}/s): ${herdVerdict} => ${passed ? 'PASS' : 'FAIL'}`,
    );

    // ---------------------------------------------------------------- command fan-out
    const fanFrom = sample(pid);
    const fanoutAt = performance.now();
    for (const device of fleet.devices) {
      office.publish(
        device.topics.command('status'),
        JSON.stringify({ id: `fanout-${process.pid}-${device.deviceId}` }),
        {
          qos: 1,
          properties: { responseTopic: answersTopic, correlationData: Buffer.from(device.deviceId) },
        },
      );
    }
    await waitUntil(() => answeredAt.size === devices, 60_000 + devices * 10, 20);
    const fanTo = sample(pid);
    const latencies = [...answeredAt.values()].map((at) => at - fanoutAt).sort((a, b) => a - b);
    const fanout = {
      command: 'status',
      sent: devices,
      answered: latencies.length,
      p50Ms: round(percentile(latencies, 50), 1),
      p90Ms: round(percentile(latencies, 90), 1),
      p99Ms: round(percentile(latencies, 99), 1),
      maxMs: round(latencies[latencies.length - 1] ?? Number.NaN, 1),
      brokerCpuPercent: cpuPercent(fanFrom, fanTo),
    };
    log(
      `fan-out: ${fanout.answered}/${devices} answered; latency p50 ${fanout.p50Ms} ms, p90 ${fanout.p90Ms} ms, p99 ${fanout.p99Ms} ms, max ${fanout.maxMs} ms; broker CPU ${fanout.brokerCpuPercent}%`,
    );

    // ---------------------------------------------------------------- outputs
    const simCpu = process.cpuUsage(simCpuStart);
    mkdirSync(outDir, { recursive: true });
    const pngPath = join(outDir, `reconnect-${devices}.png`);
    // Bars of the herd check's window (or a whole multiple of it, so at most 400 bars), starting at
    // the first reconnect's bar (negative times get their own bars rather than piling onto 0); the
    // lines are the limit and the policy's average at that bar width.
    const firstMs = judgement.firstMs;
    const spanWindows = Math.max(1, Math.ceil((lastMs - firstMs) / judgement.windowMs) + 1);
    const chartBinMs = judgement.windowMs * Math.ceil(spanWindows / 400);
    const chartStartMs = Math.floor(firstMs / chartBinMs) * chartBinMs;
    const chartBins = new Array<number>(Math.max(1, Math.floor((lastMs - chartStartMs) / chartBinMs) + 1)).fill(0);
    for (const ms of reconnectMs) {
      const bin = Math.min(chartBins.length - 1, Math.floor((ms - chartStartMs) / chartBinMs));
      chartBins[bin] = (chartBins[bin] ?? 0) + 1;
    }
    const perBar = (perSecond: number) => round((perSecond * chartBinMs) / 1000, 1);
    const barName = `${round(chartBinMs)} ms`;
    writeFileSync(
      pngPath,
      histogramPng({
        bins: chartBins,
        binSeconds: chartBinMs / 1000,
        startSeconds: chartStartMs / 1000,
        title: `Reconnects after a broker restart: ${devices} devices, ${back} back, ${passed ? 'PASS' : 'FAIL'}`,
        xTitle: 'seconds after the broker listened again',
        yTitle: `connects per ${barName}`,
        lines: [
          {
            value: perBar(judgement.limitPerSecond),
            color: 'red',
            label: `limit: 2 x N / base = ${perBar(judgement.limitPerSecond)} per ${barName}`,
          },
          {
            value: perBar(judgement.policyPerSecond),
            color: 'green',
            label: `the policy's average: N / base = ${perBar(judgement.policyPerSecond)} per ${barName}`,
          },
        ],
      }),
    );
    const jsonPath = join(outDir, `scale-${devices}.json`);
    const report = {
      devices,
      machine: { cpus: (await import('node:os')).cpus().length, node: process.version, fdLimit },
      config: { telemetryIntervalMs: intervalMs, reconnect, marginMs, startPerSecond },
      onlineMs: round(onlineMs),
      steady,
      restart,
      pass: { ...pass, passed },
      fanout,
      simulatorCpuSeconds: round((simCpu.user + simCpu.system) / 1e6, 1),
      simulatorRssMb: mb(process.memoryUsage().rss),
      reconnectPng: pngPath,
      chart: { binMs: chartBinMs, startMs: chartStartMs, bins: chartBins },
      // Each device's reconnect (ms after the broker listened again), so a run can be judged again.
      reconnectMs: reconnectMs.map((ms) => round(ms, 1)),
    };
    writeFileSync(jsonPath, `${JSON.stringify(report, null, 2)}\n`);
    log(`wrote ${jsonPath} and ${pngPath}`);
    exitCode = passed && fanout.answered === devices ? 0 : 1;
  } finally {
    await fleet.stop();
    await office.endAsync(true);
    await broker.stop();
  }
  return exitCode;
}
