/**
 * The kinds of `events/<kind>` in the MQTT contract. A module of its own, with
 * no imports, so the fleet dashboard's browser bundle can take it as it is.
 */
export const EVENT_KINDS = [
  'errno',
  'watermark',
  'stream-state',
  'ledger',
  'command-rejected',
  'queue-overflow',
] as const;
export type EventKind = (typeof EVENT_KINDS)[number];
