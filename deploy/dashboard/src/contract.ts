/**
 * The dashboard's view of the agent's MQTT contract (agent/mqtt/asyncapi.yaml):
 * which topic a message came on, and whether its payload is what the contract's
 * JSON Schemas say. The types are the agent's own, imported for their shapes
 * only, so the page and the agent cannot drift apart unnoticed by tsc.
 */
import { EVENT_KINDS, type EventKind } from '../../../agent/mqtt/event-kinds.js';
import type { PayloadName } from '../../../agent/mqtt/payloads.js';

export type { ErrnoEvent } from '../../../agent/diagnosis/types.js';
export type { HealthLevel, Watermark } from '../../../agent/health/types.js';
export type {
  CapabilitiesPayload,
  CommandRequest,
  CommandResponse,
  EventKind,
  EventPayloads,
  PayloadName,
  StatusPayload,
  Telemetry,
  TelemetryAgent,
  TelemetryStream,
  TelemetryStreamHealth,
} from '../../../agent/mqtt/payloads.js';
export type { StreamState } from '../../../agent/streams/types.js';

export { EVENT_KINDS };

/** What a topic under `<prefix>/<deviceId>/` carries. */
export type DeviceTopic =
  | { deviceId: string; kind: 'status' | 'capabilities' | 'telemetry' }
  | { deviceId: string; kind: 'event'; event: EventKind }
  | { deviceId: string; kind: 'response'; command: string };

/**
 * Parses a topic of the device tree, or null for anything else (another
 * prefix, an unknown event kind, a device's `cmd/` topics).
 */
export function parseDeviceTopic(prefix: string, topic: string): DeviceTopic | null {
  if (!topic.startsWith(`${prefix}/`)) return null;
  const levels = topic.slice(prefix.length + 1).split('/');
  const [deviceId, head, next] = levels;
  if (deviceId === undefined || deviceId === '' || head === undefined) return null;
  if (levels.length === 2 && (head === 'status' || head === 'capabilities' || head === 'telemetry')) {
    return { deviceId, kind: head };
  }
  if (levels.length === 3 && head === 'events' && (EVENT_KINDS as readonly string[]).includes(next ?? '')) {
    return { deviceId, kind: 'event', event: next as EventKind };
  }
  // response/<name>, or an MQTT 5 response topic the requester chose below it.
  if (levels.length >= 3 && head === 'response' && next !== undefined && next !== '') {
    return { deviceId, kind: 'response', command: next };
  }
  return null;
}

/**
 * The subscriptions that make up the fleet view. A device's capabilities
 * (retained, a few KB each) are subscribed when its page is opened, and its
 * answers when a command is sent to it, so opening the page does not pull
 * every capability probe of the fleet.
 */
export function fleetSubscriptions(prefix: string): string[] {
  return [`${prefix}/+/status`, `${prefix}/+/telemetry`, `${prefix}/+/events/+`];
}

export function capabilitiesTopic(prefix: string, deviceId: string): string {
  return `${prefix}/${deviceId}/capabilities`;
}

/**
 * Checks a parsed payload against the contract's schema for `name`:
 * null when it conforms, else why not, in a line.
 */
export type PayloadCheck = (name: PayloadName, json: unknown) => string | null;
