/**
 * A real mosquitto for the tests that talk MQTT: one broker per call, on a
 * free loopback port, with its configuration, log and (optionally) its
 * persistence database in a temporary directory. Every broker still running
 * when the test process exits is killed, so none outlives the run.
 *
 * With `deploy`, the broker runs a production configuration (the fleet
 * broker's deploy/mosquitto/dmx-fleet.conf) rewritten only where a test
 * machine must differ: listeners on free loopback ports, and the certificate,
 * ACL, persistence, pid and log paths. Every other line is kept as written, so
 * a change to the deploy files is what the tests run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { delimiter, join } from 'node:path';

export interface DeployConfig {
  /** The production mosquitto.conf to run. */
  conf: string;
  /** Replaces its acl_file. */
  acl: string;
  /** PEM files replacing every listener's cafile, certfile and keyfile. */
  tls: { ca: string; cert: string; key: string };
}

export interface BrokerOptions {
  /**
   * Keep sessions and queued messages across restart() (mosquitto saves its database on SIGTERM).
   * Not with `deploy`, whose configuration decides.
   */
  persistence?: boolean;
  /** A second listener speaking MQTT over WebSocket (what a browser dashboard uses); not with `deploy`. */
  websockets?: boolean;
  /** More mosquitto.conf lines, appended after the generated (or deploy) ones. */
  extraConfig?: string[];
  /** Run this production configuration instead of the generated one. */
  deploy?: DeployConfig;
}

export interface BrokerListener {
  /** The port the configuration names (the generated configuration: the one it listens on). */
  configuredPort: number;
  /** Where it listens, on 127.0.0.1. */
  port: number;
  protocol: 'mqtt' | 'websockets';
  tls: boolean;
  /** mqtt://, mqtts://, ws:// or wss://127.0.0.1:<port> */
  url: string;
}

export interface Broker {
  /** The first listener's URL: mqtt://127.0.0.1:<port> (a TLS listener: mqtts://). */
  url: string;
  /** The first listener's port. */
  port: number;
  /** Every listener, in the order of the configuration. */
  listeners: BrokerListener[];
  /** The broker's temporary directory (mosquitto.conf, mosquitto.log, the persistence database). */
  dir: string;
  /** Terminates the broker (SIGTERM, waits for its exit) and removes its directory. Safe twice. */
  stop(): Promise<void>;
  /**
   * Terminates the broker (SIGTERM: the persistence database is written) and starts it again on the
   * same port and directory, so persistent sessions survive when persistence is on. `whileDown` runs
   * between the two, with no broker listening. Also starts a broker that was kill()ed.
   */
  restart(whileDown?: () => Promise<void> | void): Promise<void>;
  /** SIGKILL at once: no database is saved, clients see their connection reset. */
  kill(): void;
  /** The broker's log so far (for failure messages). */
  log(): string;
}

/** How long a starting broker may take to accept connections before the start is called failed (liveness only). */
const START_DEADLINE_MS = 15_000;
const STOP_DEADLINE_MS = 10_000;

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

/** mosquitto on the PATH, else the Debian location. */
export function mosquittoPath(): string {
  const candidates = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => dir !== '')
    .map((dir) => join(dir, 'mosquitto'));
  candidates.push('/usr/sbin/mosquitto');
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new Error('mosquitto not found on the PATH nor in /usr/sbin (apt-get install mosquitto)');
}

/** A loopback port nothing listens on right now: bind port 0, read what the kernel chose, close. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port from the kernel');
  return address.port;
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Options a test machine cannot honour as written; extend rewriteDeployConfig when the deploy files need one. */
const UNSUPPORTED = new Set([
  'auth_plugin',
  'bind_address',
  'bind_interface',
  'capath',
  'crlfile',
  'dhparamfile',
  'http_dir',
  'include_dir',
  'password_file',
  'plugin',
  'port',
  'psk_file',
]);

export interface RewrittenConfig {
  /** The configuration mosquitto runs. */
  lines: string[];
  listeners: Array<Omit<BrokerListener, 'url'>>;
}

/**
 * The deploy configuration as a test machine runs it: each listener on 127.0.0.1 and a free port,
 * the TLS files and the ACL replaced by the given ones, persistence, pid and log in `dir`, no `user`
 * (the caller adds its own when running as root). Comments and every other line are kept as they are;
 * an option this cannot carry over (an include_dir, a plugin, another file path) is an error rather
 * than silently dropped.
 */
export async function rewriteDeployConfig(text: string, deploy: DeployConfig, dir: string): Promise<RewrittenConfig> {
  const lines: string[] = [];
  const listeners: RewrittenConfig['listeners'] = [];
  const current = (): RewrittenConfig['listeners'][number] | undefined => listeners[listeners.length - 1];
  let logged = false;
  // Options naming a file of this machine, and what they name on a test machine.
  const replacements = new Map([
    ['acl_file', deploy.acl],
    ['cafile', deploy.tls.ca],
    ['certfile', deploy.tls.cert],
    ['keyfile', deploy.tls.key],
    ['persistence_location', `${dir}/`],
    ['pid_file', join(dir, 'mosquitto.pid')],
  ]);
  for (const [index, line] of text.split('\n').entries()) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) {
      lines.push(line);
      continue;
    }
    const [option = '', ...values] = trimmed.split(/[ \t]+/);
    const where = `${deploy.conf}:${index + 1}: ${trimmed}`;
    if (UNSUPPORTED.has(option)) {
      throw new Error(`${where}: ${option} cannot run on a test machine as written (extend test/support/mosquitto.ts)`);
    }
    if (option === 'listener') {
      const configuredPort = Number(values[0]);
      if (!Number.isInteger(configuredPort) || configuredPort <= 0 || values.length > 2) {
        throw new Error(`${where}: only TCP listeners (listener <port> [address]) are supported`);
      }
      const port = await freePort();
      listeners.push({ configuredPort, port, protocol: 'mqtt', tls: false });
      lines.push(`listener ${port} 127.0.0.1`);
    } else if (option === 'protocol') {
      const listener = current();
      if (listener === undefined || (values[0] !== 'mqtt' && values[0] !== 'websockets')) {
        throw new Error(`${where}: protocol must follow a listener and be mqtt or websockets`);
      }
      listener.protocol = values[0];
      lines.push(line);
    } else if (replacements.has(option)) {
      if (option === 'certfile') {
        const listener = current();
        if (listener !== undefined) listener.tls = true;
      }
      lines.push(`${option} ${replacements.get(option)}`);
    } else if (option === 'log_dest') {
      // One destination, our file: the deploy's may be syslog or a system path.
      if (!logged) lines.push(`log_dest file ${join(dir, 'mosquitto.log')}`);
      logged = true;
    } else if (option === 'user') {
      // Dropped: as root the caller names the user that owns the temporary files.
    } else if (values.some((value) => value.startsWith('/'))) {
      throw new Error(`${where}: names a path of this machine, which the test harness does not know how to replace`);
    } else {
      lines.push(line);
    }
  }
  if (listeners.length === 0) throw new Error(`${deploy.conf}: no listener`);
  if (!logged) lines.unshift(`log_dest file ${join(dir, 'mosquitto.log')}`);
  return { lines, listeners };
}

function listenerUrl(listener: Omit<BrokerListener, 'url'>): string {
  const scheme = listener.protocol === 'websockets' ? 'ws' : 'mqtt';
  return `${scheme}${listener.tls ? 's' : ''}://127.0.0.1:${listener.port}`;
}

export async function startMosquitto(options: BrokerOptions = {}): Promise<Broker> {
  installExitHook();
  const executable = mosquittoPath();
  if (options.deploy !== undefined && (options.persistence !== undefined || options.websockets !== undefined)) {
    throw new Error('persistence and listeners are set by the deploy configuration, not by options');
  }
  const dir = mkdtempSync(join(tmpdir(), 'dmx-mosquitto-'));
  const configPath = join(dir, 'mosquitto.conf');
  const logPath = join(dir, 'mosquitto.log');
  const lines: string[] = [];
  // As root, mosquitto would switch to the `mosquitto` user, which cannot write our temporary directory.
  const asUser = process.getuid?.() === 0 ? [`user ${userInfo().username}`] : [];
  let listeners: BrokerListener[];
  try {
    if (options.deploy !== undefined) {
      const rewritten = await rewriteDeployConfig(readFileSync(options.deploy.conf, 'utf8'), options.deploy, dir);
      lines.push(...asUser, ...rewritten.lines);
      listeners = rewritten.listeners.map((listener) => ({ ...listener, url: listenerUrl(listener) }));
    } else {
      const port = await freePort();
      lines.push(
        `listener ${port} 127.0.0.1`,
        'allow_anonymous true',
        `log_dest file ${logPath}`,
        'log_type all',
        'connection_messages true',
        ...asUser,
      );
      if (options.persistence) {
        lines.push('persistence true', `persistence_location ${dir}/`, 'persistence_file mosquitto.db');
      }
      const listener = { configuredPort: port, port, protocol: 'mqtt', tls: false } as const;
      listeners = [{ ...listener, url: listenerUrl(listener) }];
      if (options.websockets) {
        const wsPort = await freePort();
        lines.push(`listener ${wsPort} 127.0.0.1`, 'protocol websockets');
        const ws = { configuredPort: wsPort, port: wsPort, protocol: 'websockets', tls: false } as const;
        listeners.push({ ...ws, url: listenerUrl(ws) });
      }
    }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  lines.push(...(options.extraConfig ?? []));
  writeFileSync(configPath, `${lines.join('\n')}\n`);
  // Both branches above make at least one listener.
  const first = listeners[0]!;
  const { port } = first;

  let child: ChildProcess | null = null;
  // A kill()ed broker may not have released the port yet: restart() and stop() wait for it.
  let dying: Promise<void> = Promise.resolve();
  let removed = false;

  const readLog = (): string => {
    try {
      return readFileSync(logPath, 'utf8');
    } catch {
      return '';
    }
  };

  const launch = async (): Promise<void> => {
    const process_ = spawn(executable, ['-c', configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    process_.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    running.add(process_);
    process_.once('exit', () => running.delete(process_));
    child = process_;
    const deadline = Date.now() + START_DEADLINE_MS;
    for (;;) {
      if (process_.exitCode !== null || process_.signalCode !== null) {
        throw new Error(
          `mosquitto exited at start (${process_.exitCode ?? process_.signalCode}): ${stderr}${readLog()}`,
        );
      }
      if ((await Promise.all(listeners.map((listener) => canConnect(listener.port)))).every(Boolean)) return;
      if (Date.now() > deadline) {
        process_.kill('SIGKILL');
        const ports = listeners.map((listener) => listener.port).join(', ');
        throw new Error(`mosquitto did not accept connections on ${ports}: ${stderr}${readLog()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };

  const terminate = async (): Promise<void> => {
    await dying;
    const current = child;
    child = null;
    if (current === null) return;
    const done = exited(current);
    current.kill('SIGTERM');
    const timer = setTimeout(() => current.kill('SIGKILL'), STOP_DEADLINE_MS);
    await done;
    clearTimeout(timer);
  };

  await launch();

  return {
    url: first.url,
    port,
    listeners,
    dir,
    async stop() {
      await terminate();
      if (!removed) {
        removed = true;
        rmSync(dir, { recursive: true, force: true });
      }
    },
    async restart(whileDown) {
      if (removed) throw new Error('restart() after stop()');
      await terminate();
      if (whileDown) await whileDown();
      await launch();
    },
    kill() {
      const current = child;
      child = null;
      if (current === null) return;
      dying = exited(current);
      current.kill('SIGKILL');
    },
    log: readLog,
  };
}
