/**
 * The agent's logger: pino JSON lines on stdout (journald stores them), or
 * pino-pretty text on a terminal. Secrets never reach the output: password
 * and token fields are censored, and credentials inside logged URLs are
 * masked. Children made through childLogger (and their own children) follow
 * setLogLevel, which pino alone does not do: a child copies its parent's
 * level when it is created.
 */
import { hostname } from 'node:os';
import { type DestinationStream, type Logger, pino, stdSerializers } from 'pino';
import { prettyFactory } from 'pino-pretty';
import type { LogLevel } from '../config/types.js';
import type { LineSink } from './status-line.js';

export type { LogLevel } from '../config/types.js';
export type AgentLogger = Logger;

export const REDACTED = '[redacted]';

/** Paths censored in every log line (one wildcard level: `*.password` covers `mqtt.password`). */
export const REDACTED_PATHS: readonly string[] = [
  'password',
  'mqtt.password',
  '*.password',
  'config.mqtt.password',
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
];

/** Paths holding URLs whose userinfo password is masked (the rest of the URL stays readable). */
export const URL_PATHS: readonly string[] = ['url', '*.url', 'mqtt.url', 'config.mqtt.url'];

export interface LoggerOptions {
  level: LogLevel;
  /** 'auto': human-readable when the destination is a terminal. */
  pretty: 'auto' | 'always' | 'never';
  /** Default process.stdout. */
  destination?: NodeJS.WritableStream;
  /** Overrides the destination's own isTTY. */
  isTTY?: boolean;
  /** Colour in pretty mode; default: when the destination is a terminal. */
  colorize?: boolean;
  /** When set, every formatted line goes here instead of the destination (the terminal status area). */
  lineSink?: LineSink;
}

// scheme://user:password@host...: the authority ends at the first '/', '?' or '#'; the
// userinfo at its last '@' (passwords with a raw '@' are common in hand-written configs).
const URL_USERINFO = /^([a-zA-Z][a-zA-Z0-9+.-]*:\/\/)([^/?#]*)@/;

/** `mqtt://user:secret@host:1883` -> `mqtt://user:[redacted]@host:1883`; other values are returned as they are. */
export function maskUrlCredentials(value: unknown): unknown {
  const text = value instanceof URL ? value.href : value;
  if (typeof text !== 'string') return value;
  const match = URL_USERINFO.exec(text);
  if (match === null) return value;
  const [whole, scheme, userinfo] = match as unknown as [string, string, string];
  const colon = userinfo.indexOf(':');
  if (colon < 0) return value;
  return `${scheme}${userinfo.slice(0, colon)}:${REDACTED}@${text.slice(whole.length)}`;
}

function censor(value: unknown, path: string[]): unknown {
  return path[path.length - 1] === 'url' ? maskUrlCredentials(value) : REDACTED;
}

/** Every logger of one family (a root and all its descendants), for setLogLevel. */
class LoggerFamily {
  readonly root: AgentLogger;
  private readonly members = new Set<WeakRef<AgentLogger>>();
  // Children made per request would otherwise leave dead references behind until the next setLogLevel.
  private readonly finalizer = new FinalizationRegistry<WeakRef<AgentLogger>>((ref) => this.members.delete(ref));

  constructor(root: AgentLogger) {
    this.root = root;
  }

  add(child: AgentLogger): void {
    const ref = new WeakRef(child);
    this.members.add(ref);
    this.finalizer.register(child, ref);
  }

  setLevel(level: LogLevel): void {
    this.root.level = level;
    for (const ref of this.members) {
      const child = ref.deref();
      if (child === undefined) this.members.delete(ref);
      else child.level = level;
    }
  }
}

const families = new WeakMap<AgentLogger, LoggerFamily>();

function isTerminal(stream: NodeJS.WritableStream): boolean {
  return (stream as { isTTY?: boolean }).isTTY === true;
}

function moduleLabel(log: Record<string, unknown>): string {
  const parts = [log.module, log.stream].filter((part) => typeof part === 'string' && part !== '');
  return parts.length > 0 ? `[${parts.join(' ')}] ` : '';
}

function prettyDestination(write: (text: string) => void, colorize: boolean): DestinationStream {
  const prettify = prettyFactory({
    colorize,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,name,module,stream',
    // Extra fields on the message's own line: a terminal shows one line per event.
    singleLine: true,
    messageFormat: (log, messageKey) => `${moduleLabel(log)}${String(log[messageKey] ?? '')}`,
  });
  return { write: (line: string) => write(prettify(line)) };
}

export function createLogger(options: LoggerOptions): AgentLogger {
  const destination = options.destination ?? process.stdout;
  const tty = options.isTTY ?? isTerminal(destination);
  const pretty = options.pretty === 'always' || (options.pretty === 'auto' && tty);
  const sink = options.lineSink;
  const write = sink ? (text: string) => sink.writeLog(text) : (text: string) => void destination.write(text);
  const stream: DestinationStream = pretty ? prettyDestination(write, options.colorize ?? tty) : { write };

  let family: LoggerFamily | undefined;
  const logger = pino(
    {
      name: 'dmx-agent',
      level: options.level,
      base: { pid: process.pid, hostname: hostname() },
      redact: { paths: [...REDACTED_PATHS, ...URL_PATHS], censor },
      serializers: { err: stdSerializers.err, error: stdSerializers.err },
      // Inherited by every descendant, including children made with logger.child() directly.
      onChild: (child) => {
        family?.add(child);
        if (family) families.set(child, family);
      },
    },
    stream,
  );
  family = new LoggerFamily(logger);
  families.set(logger, family);
  return logger;
}

export function childLogger(logger: AgentLogger, bindings: { module: string; stream?: string }): AgentLogger {
  return logger.child(bindings);
}

/** Sets the level of the logger's root and of every live logger descended from it. */
export function setLogLevel(logger: AgentLogger, level: LogLevel): void {
  const family = families.get(logger);
  if (family) family.setLevel(level);
  else logger.level = level;
}
