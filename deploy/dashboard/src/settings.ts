/**
 * Where the page finds its broker. In order, the first that says:
 *   1. the address bar: `?broker=wss://…&prefix=stb` (a link an operator can share);
 *   2. what the operator saved in this browser (the Settings dialog);
 *   3. `config.json` next to index.html (what a fleet deploys with the page);
 *   4. the page's own origin, path /mqtt: the development broker serves the
 *      page and MQTT over WebSocket on one port, so `npm start` needs nothing set.
 */

export interface DashboardSettings {
  /** ws:// or wss:// URL of the broker's WebSocket listener. */
  brokerUrl: string;
  /** The agents' mqtt.topicPrefix. */
  topicPrefix: string;
  username: string;
  /** Kept for this browser tab only (sessionStorage), never saved. */
  password: string;
  /** Lifetime of a command sent from the page, seconds. */
  commandTtlSec: number;
}

export type SettingsSource = 'address bar' | 'saved in this browser' | 'config.json' | 'the page origin';

export const STORAGE_KEY = 'dmx-dashboard.settings';
const PASSWORD_KEY = 'dmx-dashboard.password';

interface KeyValueStore {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

/** Why a value is not a usable broker URL, or null. */
export function brokerUrlProblem(value: string): string | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `${JSON.stringify(value)} is not a URL`;
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    return `a browser reaches MQTT over WebSocket only: use ws:// or wss://, not ${url.protocol}//`;
  }
  return null;
}

/** Why a value is not a usable topic prefix, or null (the agent's rule: no wildcards, no empty level, no leading '$'). */
export function topicPrefixProblem(value: string): string | null {
  if (value === '') return 'the topic prefix must not be empty';
  if (value.startsWith('$')) return "the topic prefix must not start with '$'";
  if (/[+#]/.test(value)) return "the topic prefix must not contain '+' or '#'";
  if (value.split('/').some((level) => level === '')) return 'the topic prefix must not have an empty level';
  return null;
}

export function defaultBrokerUrl(location: { protocol: string; host: string }): string {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/mqtt`;
}

function partial(value: unknown): Partial<DashboardSettings> {
  if (typeof value !== 'object' || value === null) return {};
  const v = value as Record<string, unknown>;
  const out: Partial<DashboardSettings> = {};
  if (typeof v.brokerUrl === 'string' && brokerUrlProblem(v.brokerUrl) === null) out.brokerUrl = v.brokerUrl;
  if (typeof v.topicPrefix === 'string' && topicPrefixProblem(v.topicPrefix) === null) out.topicPrefix = v.topicPrefix;
  if (typeof v.username === 'string') out.username = v.username;
  if (typeof v.commandTtlSec === 'number' && Number.isInteger(v.commandTtlSec) && v.commandTtlSec > 0) {
    out.commandTtlSec = v.commandTtlSec;
  }
  return out;
}

export interface ResolvedSettings {
  settings: DashboardSettings;
  /** Where the broker URL came from (shown beside it). */
  source: SettingsSource;
  /** Values that were given and refused, with why. */
  problems: string[];
}

export function resolveSettings(input: {
  location: { protocol: string; host: string; search: string };
  storage: KeyValueStore | null;
  session: KeyValueStore | null;
  /** config.json as parsed, or null when there is none. */
  deployed: unknown;
}): ResolvedSettings {
  const problems: string[] = [];
  const query = new URLSearchParams(input.location.search);
  const fromQuery: Partial<DashboardSettings> = {};
  const broker = query.get('broker');
  if (broker !== null) {
    const problem = brokerUrlProblem(broker);
    if (problem === null) fromQuery.brokerUrl = broker;
    else problems.push(`?broker= ignored: ${problem}`);
  }
  const prefix = query.get('prefix');
  if (prefix !== null) {
    const problem = topicPrefixProblem(prefix);
    if (problem === null) fromQuery.topicPrefix = prefix;
    else problems.push(`?prefix= ignored: ${problem}`);
  }
  let saved: Partial<DashboardSettings> = {};
  const savedText = input.storage?.getItem(STORAGE_KEY) ?? null;
  if (savedText !== null) {
    try {
      saved = partial(JSON.parse(savedText));
    } catch {
      problems.push('the saved settings were unreadable and are ignored');
    }
  }
  const deployed = partial(input.deployed);
  const settings: DashboardSettings = {
    brokerUrl: defaultBrokerUrl(input.location),
    topicPrefix: 'stb',
    username: '',
    password: input.session?.getItem(PASSWORD_KEY) ?? '',
    commandTtlSec: 120,
    ...deployed,
    ...saved,
    ...fromQuery,
  };
  // Credentials belong to the broker they were given for: a link naming another broker must not
  // carry the operator's saved user name and password to it.
  const trusted = saved.brokerUrl ?? deployed.brokerUrl ?? defaultBrokerUrl(input.location);
  if (
    fromQuery.brokerUrl !== undefined &&
    fromQuery.brokerUrl !== trusted &&
    (settings.username || settings.password)
  ) {
    settings.username = '';
    settings.password = '';
    problems.push(
      `the address bar names the broker ${fromQuery.brokerUrl}: connecting to it without your saved credentials (open Settings to use them there)`,
    );
  }
  const source: SettingsSource =
    fromQuery.brokerUrl !== undefined
      ? 'address bar'
      : saved.brokerUrl !== undefined
        ? 'saved in this browser'
        : deployed.brokerUrl !== undefined
          ? 'config.json'
          : 'the page origin';
  return { settings, source, problems };
}

export function saveSettings(settings: DashboardSettings, storage: KeyValueStore, session: KeyValueStore): void {
  const { password, ...kept } = settings;
  storage.setItem(STORAGE_KEY, JSON.stringify(kept));
  if (password === '') session.removeItem(PASSWORD_KEY);
  else session.setItem(PASSWORD_KEY, password);
}
