/**
 * Everything the page knows about the fleet, built only from what the broker
 * delivers: the retained statuses and capabilities, telemetry, and events.
 * One message updates one device in O(1); the views read the store at their
 * own pace (store.version says whether anything changed), so a thousand
 * devices reporting every few seconds never drive the page's rendering.
 */
import {
  type CapabilitiesPayload,
  type EventKind,
  type EventPayloads,
  type HealthLevel,
  type PayloadCheck,
  parseDeviceTopic,
  type StatusPayload,
  type StreamState,
  type Telemetry,
  type TelemetryAgent,
  type TelemetryStream,
  type TelemetryStreamHealth,
} from './contract.js';

/** Points kept per stream for its time series. */
export const HISTORY_POINTS = 120;
/** Events kept for the feed (oldest dropped first). */
export const MAX_EVENTS = 2000;
/** A device online whose telemetry has been quiet for this many of its own periods is shown as silent. */
export const SILENT_AFTER_PERIODS = 3;
/** The least quiet time that counts as silent, whatever the period. */
export const SILENT_MIN_MS = 15_000;
/** Quiet time that counts as silent before the device's period is known (the agent's default period is 10 s). */
export const SILENT_UNKNOWN_PERIOD_MS = 60_000;

/**
 * A device's overall condition, worst first (the list's default order).
 * 'unknown': online, but no telemetry yet (it turns silent if none comes).
 */
export const CONDITIONS = ['offline', 'critical', 'silent', 'degraded', 'unknown', 'ok'] as const;
export type Condition = (typeof CONDITIONS)[number];

/** Fixed-size ring of a stream's recent telemetry. */
export class Series {
  readonly at = new Float64Array(HISTORY_POINTS);
  readonly bps = new Float64Array(HISTORY_POINTS);
  readonly zeroQueuedMs = new Float64Array(HISTORY_POINTS);
  /** Points written so far (the ring holds the last HISTORY_POINTS of them). */
  length = 0;

  push(at: number, bps: number, zeroQueuedMs: number): void {
    const slot = this.length % HISTORY_POINTS;
    this.at[slot] = at;
    this.bps[slot] = bps;
    this.zeroQueuedMs[slot] = zeroQueuedMs;
    this.length++;
  }

  /** The kept values of one field, oldest first. */
  values(field: 'bps' | 'zeroQueuedMs'): number[] {
    const kept = Math.min(this.length, HISTORY_POINTS);
    const start = this.length - kept;
    const out: number[] = [];
    for (let i = start; i < this.length; i++) out.push(this[field][i % HISTORY_POINTS]!);
    return out;
  }
}

export interface StreamView {
  id: string;
  state: StreamState;
  /** The latest telemetry entry as received. */
  latest: TelemetryStream;
  /** The health fields, when the agent had a health window for the stream. */
  health: TelemetryStreamHealth | null;
  series: Series;
  /** errno events for this stream (coalesced events counted with their count). */
  errnoEvents: number;
}

export interface DeviceView {
  id: string;
  /** null until a status arrives. */
  online: boolean | null;
  status: StatusPayload | null;
  /** When the page received the current status (epoch ms). */
  statusAt: number | null;
  capabilities: CapabilitiesPayload | null;
  agent: TelemetryAgent | null;
  /** When the page received the latest telemetry (page clock, epoch ms). */
  telemetryAt: number | null;
  /** The telemetry period as observed (median of recent gaps), or null before two messages. */
  telemetryPeriodMs: number | null;
  streams: Map<string, StreamView>;
  /** errno name -> events (with their coalesced counts). */
  errnoCounts: Map<string, number>;
  errnoTotal: number;
  /** The latest diagnosed cause. */
  lastCause: { cause: string; errno: string; atMs: number } | null;
  /** Bumped on each change of this device. */
  version: number;
  recentGaps: number[];
}

export type FeedEntry = {
  [K in EventKind]: {
    seq: number;
    receivedAt: number;
    /** When it happened, by the device's clock (events queued while offline arrive late). */
    at: number;
    deviceId: string;
    kind: K;
    payload: EventPayloads[K];
  };
}[EventKind];

/** The time an event names for itself, epoch ms (every kind carries one). */
function eventTime(kind: EventKind, payload: unknown): number | null {
  const p = payload as Record<string, unknown>;
  const value = kind === 'errno' ? p.lastAtMs : kind === 'queue-overflow' ? p.since : p.atMs;
  return typeof value === 'number' ? value : null;
}

export interface IgnoredMessage {
  topic: string;
  reason: string;
  receivedAt: number;
}

export interface FleetSummary {
  devices: number;
  byCondition: Record<Condition, number>;
  errnoEvents: number;
  /** Sum of the latest bitrate of every online stream. */
  bps: number;
}

/** A response to a command, handed on to whoever sent it. */
export type ResponseListener = (deviceId: string, command: string, json: unknown, correlation: string | null) => void;

function worstLevel(levels: Iterable<HealthLevel>): HealthLevel | null {
  let worst: HealthLevel | null = null;
  for (const level of levels) {
    if (level === 'critical') return 'critical';
    if (level === 'degraded' || worst === null) worst = level;
  }
  return worst;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function healthOf(entry: TelemetryStream): TelemetryStreamHealth | null {
  return 'level' in entry ? entry : null;
}

export class FleetStore {
  readonly devices = new Map<string, DeviceView>();
  /** Newest last; at most MAX_EVENTS. */
  readonly feed: FeedEntry[] = [];
  /** Messages the page could not use, newest last (at most 50), and how many in all. */
  readonly ignored: IgnoredMessage[] = [];
  ignoredTotal = 0;
  received = 0;
  /** Bumped on every change: a view re-renders when it differs from what it drew. */
  version = 0;
  private feedSeq = 0;

  constructor(
    readonly prefix: string,
    private readonly check: PayloadCheck,
    private readonly onResponse: ResponseListener = () => {},
  ) {}

  /**
   * One message from the broker. Never throws: what the contract does not
   * allow is counted as ignored, with the reason, and changes nothing.
   */
  ingest(topic: string, payload: Uint8Array | string, receivedAt: number, correlation: string | null = null): void {
    this.received++;
    const parsed = parseDeviceTopic(this.prefix, topic);
    if (parsed === null) {
      this.ignore(topic, 'not a topic of the device tree', receivedAt);
      return;
    }
    const text = typeof payload === 'string' ? payload : new TextDecoder().decode(payload);
    // A retained message is cleared with an empty payload: the device is forgotten.
    if (text === '' && parsed.kind === 'status') {
      if (this.devices.delete(parsed.deviceId)) this.version++;
      return;
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      this.ignore(topic, 'not JSON', receivedAt);
      return;
    }
    const schema = parsed.kind === 'event' ? parsed.event : parsed.kind;
    let problem: string | null;
    try {
      problem = this.check(schema, json);
    } catch (err) {
      // The validator itself failed (a Content-Security-Policy without 'unsafe-eval' stops ajv): say so, show nothing.
      problem = `the page cannot check it: ${err instanceof Error ? err.message : String(err)}`;
    }
    if (problem !== null) {
      this.ignore(topic, `not a valid ${schema} payload: ${problem}`, receivedAt);
      return;
    }

    if (parsed.kind === 'response') {
      this.onResponse(parsed.deviceId, parsed.command, json, correlation);
      return;
    }
    const device = this.device(parsed.deviceId);
    switch (parsed.kind) {
      case 'status':
        this.applyStatus(device, json as StatusPayload, receivedAt);
        break;
      case 'capabilities':
        device.capabilities = json as CapabilitiesPayload;
        break;
      case 'telemetry':
        this.applyTelemetry(device, json as Telemetry, receivedAt);
        break;
      case 'event':
        this.applyEvent(device, parsed.event, json, receivedAt);
        break;
    }
    device.version++;
    this.version++;
  }

  /** The device's overall condition at `now` (page clock). */
  condition(device: DeviceView, now: number): Condition {
    if (device.online === false) return 'offline';
    const levels: HealthLevel[] = [];
    for (const stream of device.streams.values()) {
      if (stream.state === 'failed') levels.push('critical');
      // Not carrying data: waiting for a device, allocating, restarting.
      else if (stream.state !== 'streaming') levels.push('degraded');
      if (stream.health) levels.push(stream.health.level);
    }
    const level = worstLevel(levels);
    if (level === 'critical') return 'critical';
    if (device.online === true && this.isSilent(device, now)) return 'silent';
    if (level === 'degraded') return 'degraded';
    return level === 'ok' ? 'ok' : 'unknown';
  }

  summary(now: number): FleetSummary {
    const byCondition = Object.fromEntries(CONDITIONS.map((c) => [c, 0])) as Record<Condition, number>;
    let errnoEvents = 0;
    let bps = 0;
    for (const device of this.devices.values()) {
      byCondition[this.condition(device, now)]++;
      errnoEvents += device.errnoTotal;
      if (device.online !== false) for (const stream of device.streams.values()) bps += stream.health?.bps ?? 0;
    }
    return { devices: this.devices.size, byCondition, errnoEvents, bps };
  }

  /** The feed entries of one device, newest first. */
  deviceFeed(deviceId: string, limit = 200): FeedEntry[] {
    const out: FeedEntry[] = [];
    for (let i = this.feed.length - 1; i >= 0 && out.length < limit; i--) {
      if (this.feed[i]!.deviceId === deviceId) out.push(this.feed[i]!);
    }
    return out;
  }

  /**
   * Online by its status, but quiet for longer than three of its telemetry
   * periods (at least SILENT_MIN_MS), or than SILENT_UNKNOWN_PERIOD_MS while
   * the period is not known yet. Quiet time counts from the latest telemetry,
   * else from when the page received the online status.
   */
  private isSilent(device: DeviceView, now: number): boolean {
    const since = device.telemetryAt ?? device.statusAt;
    if (since === null) return false;
    const limit =
      device.telemetryPeriodMs === null
        ? SILENT_UNKNOWN_PERIOD_MS
        : Math.max(SILENT_MIN_MS, SILENT_AFTER_PERIODS * device.telemetryPeriodMs);
    return now - since > limit;
  }

  private device(id: string): DeviceView {
    let device = this.devices.get(id);
    if (device === undefined) {
      device = {
        id,
        online: null,
        status: null,
        statusAt: null,
        capabilities: null,
        agent: null,
        telemetryAt: null,
        telemetryPeriodMs: null,
        streams: new Map(),
        errnoCounts: new Map(),
        errnoTotal: 0,
        lastCause: null,
        version: 0,
        recentGaps: [],
      };
      this.devices.set(id, device);
    }
    return device;
  }

  private applyStatus(device: DeviceView, status: StatusPayload, receivedAt: number): void {
    const wasOnline = device.online;
    device.status = status;
    device.statusAt = receivedAt;
    device.online = status.state === 'online';
    // Back online (or a new boot): the outage is not a telemetry period, and the period may differ.
    if (device.online && wasOnline !== true) {
      device.recentGaps = [];
      device.telemetryPeriodMs = null;
      device.telemetryAt = null;
    }
  }

  private applyTelemetry(device: DeviceView, telemetry: Telemetry, receivedAt: number): void {
    if (device.telemetryAt !== null) {
      device.recentGaps.push(receivedAt - device.telemetryAt);
      if (device.recentGaps.length > 8) device.recentGaps.shift();
      device.telemetryPeriodMs = median(device.recentGaps);
    }
    device.telemetryAt = receivedAt;
    device.agent = telemetry.agent;
    // Telemetry from a device whose status was not seen yet (retained status cleared): it is talking, so online.
    if (device.online === null) device.online = true;
    const seen = new Set<string>();
    for (const [id, entry] of Object.entries(telemetry.streams)) {
      seen.add(id);
      let stream = device.streams.get(id);
      if (stream === undefined) {
        stream = { id, state: entry.state, latest: entry, health: null, series: new Series(), errnoEvents: 0 };
        device.streams.set(id, stream);
      }
      stream.state = entry.state;
      stream.latest = entry;
      stream.health = healthOf(entry);
      stream.series.push(telemetry.t, stream.health?.bps ?? 0, stream.health?.zeroQueuedMs ?? 0);
    }
    // Streams removed from the configuration disappear with the next telemetry.
    for (const id of [...device.streams.keys()]) if (!seen.has(id)) device.streams.delete(id);
  }

  private applyEvent(device: DeviceView, kind: EventKind, payload: unknown, receivedAt: number): void {
    const at = eventTime(kind, payload) ?? receivedAt;
    const entry = { seq: ++this.feedSeq, receivedAt, at, deviceId: device.id, kind, payload } as FeedEntry;
    this.feed.push(entry);
    if (this.feed.length > MAX_EVENTS) this.feed.splice(0, this.feed.length - MAX_EVENTS);
    if (entry.kind === 'errno') {
      const event = entry.payload;
      const count = event.count;
      device.errnoCounts.set(event.errno, (device.errnoCounts.get(event.errno) ?? 0) + count);
      device.errnoTotal += count;
      device.lastCause = { cause: event.cause, errno: event.errno, atMs: event.lastAtMs };
      const stream = event.stream === null ? undefined : device.streams.get(event.stream);
      if (stream) stream.errnoEvents += count;
    }
  }

  private ignore(topic: string, reason: string, receivedAt: number): void {
    this.ignoredTotal++;
    this.ignored.push({ topic, reason, receivedAt });
    if (this.ignored.length > 50) this.ignored.shift();
    this.version++;
  }
}
