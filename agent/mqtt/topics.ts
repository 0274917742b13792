/**
 * The topic tree of one device: everything sits under `<prefix>/<deviceId>/`.
 * The device id and every prefix level are checked here once, so no topic the
 * agent builds can contain a wildcard, an empty level or a control character
 * (a '+' in a device id would let one box's subscription match another's).
 */

/** Longest device id or prefix level accepted, in characters. */
export const MAX_TOPIC_LEVEL_LENGTH = 64;

// C0 controls, DEL and C1 controls: invisible in dashboards and logs, and U+0000 is forbidden by MQTT.
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point.
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/;

/** Why `value` cannot be one topic level, or null when it can. */
function levelProblem(value: string): string | null {
  if (typeof value !== 'string' || value === '') return 'must not be empty';
  if (value.includes('/')) return "must not contain '/'";
  if (value.includes('+') || value.includes('#')) return "must not contain the MQTT wildcards '+' or '#'";
  if (CONTROL_CHARACTERS.test(value)) return 'must not contain control characters';
  const length = [...value].length;
  if (length > MAX_TOPIC_LEVEL_LENGTH) {
    return `is ${length} characters long; at most ${MAX_TOPIC_LEVEL_LENGTH} are allowed`;
  }
  return null;
}

function checkLevel(value: string, what: string): void {
  const problem = levelProblem(value);
  if (problem !== null) throw new Error(`${what} ${JSON.stringify(value)} ${problem}`);
}

/** Throws an Error saying what is wrong when `id` cannot be one topic level. */
export function validateDeviceId(id: string): void {
  checkLevel(id, 'device id');
}

/** Each '/'-separated level of the prefix follows the device id rule; '$' cannot start it (broker-reserved topics). */
export function validateTopicPrefix(prefix: string): void {
  if (typeof prefix === 'string' && prefix.startsWith('$')) {
    throw new Error(`topic prefix ${JSON.stringify(prefix)} must not start with '$' (reserved for the broker)`);
  }
  const levels = typeof prefix === 'string' ? prefix.split('/') : [prefix];
  levels.forEach((level, index) => {
    const problem = levelProblem(level);
    if (problem !== null) {
      throw new Error(`topic prefix ${JSON.stringify(prefix)}: level ${index + 1} ${JSON.stringify(level)} ${problem}`);
    }
  });
}

export class Topics {
  /** `<prefix>/<deviceId>` */
  readonly base: string;
  /** Retained `{"state":"online"|"offline", ...}`; also the Last Will's topic. */
  readonly status: string;
  /** Retained capability probe. */
  readonly capabilities: string;
  /** Health snapshots, QoS 0. */
  readonly telemetry: string;
  /** What the link subscribes to: `<prefix>/<deviceId>/cmd/+`. */
  readonly commandFilter: string;

  constructor(
    readonly prefix: string,
    readonly deviceId: string,
  ) {
    validateTopicPrefix(prefix);
    validateDeviceId(deviceId);
    this.base = `${prefix}/${deviceId}`;
    this.status = `${this.base}/status`;
    this.capabilities = `${this.base}/capabilities`;
    this.telemetry = `${this.base}/telemetry`;
    this.commandFilter = `${this.base}/cmd/+`;
  }

  /** `events/<kind>`, QoS 1. */
  event(kind: string): string {
    checkLevel(kind, 'event kind');
    return `${this.base}/events/${kind}`;
  }

  /** `cmd/<name>`: where a client sends a command. */
  command(name: string): string {
    checkLevel(name, 'command name');
    return `${this.base}/cmd/${name}`;
  }

  /** `response/<name>`: the answer when the request named no MQTT 5 response topic. */
  response(name: string): string {
    checkLevel(name, 'command name');
    return `${this.base}/response/${name}`;
  }

  /** The command name of a topic matching commandFilter, or null for any other topic. */
  commandName(topic: string): string | null {
    const head = `${this.base}/cmd/`;
    if (!topic.startsWith(head)) return null;
    const name = topic.slice(head.length);
    return name === '' || name.includes('/') ? null : name;
  }
}
