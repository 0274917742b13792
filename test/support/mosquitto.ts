/**
 * A real mosquitto for the tests that talk MQTT: one broker per call, on a
 * free loopback port, with its configuration, log and (optionally) its
 * persistence database in a temporary directory. Every broker still running
 * when the test process exits is killed, so none outlives the run.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { delimiter, join } from 'node:path';

export interface BrokerOptions {
  /** Keep sessions and queued messages across restart() (mosquitto saves its database on SIGTERM). */
  persistence?: boolean;
  /** More mosquitto.conf lines, appended after the generated ones. */
  extraConfig?: string[];
}

export interface Broker {
  /** mqtt://127.0.0.1:<port> */
  url: string;
  port: number;
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

export async function startMosquitto(options: BrokerOptions = {}): Promise<Broker> {
  installExitHook();
  const executable = mosquittoPath();
  const dir = mkdtempSync(join(tmpdir(), 'dmx-mosquitto-'));
  const port = await freePort();
  const configPath = join(dir, 'mosquitto.conf');
  const logPath = join(dir, 'mosquitto.log');
  const lines = [
    `listener ${port} 127.0.0.1`,
    'allow_anonymous true',
    `log_dest file ${logPath}`,
    'log_type all',
    'connection_messages true',
  ];
  // As root, mosquitto would switch to the `mosquitto` user, which cannot write our temporary directory.
  if (process.getuid?.() === 0) lines.push(`user ${userInfo().username}`);
  if (options.persistence) {
    lines.push('persistence true', `persistence_location ${dir}/`, 'persistence_file mosquitto.db');
  }
  lines.push(...(options.extraConfig ?? []));
  writeFileSync(configPath, `${lines.join('\n')}\n`);

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
      if (await canConnect(port)) return;
      if (Date.now() > deadline) {
        process_.kill('SIGKILL');
        throw new Error(`mosquitto did not accept connections on ${port}: ${stderr}${readLog()}`);
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
    url: `mqtt://127.0.0.1:${port}`,
    port,
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
