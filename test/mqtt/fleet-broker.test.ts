/**
 * The fleet broker as deployed: mosquitto running deploy/mosquitto/dmx-fleet.conf and
 * dmx-fleet.acl as they are (only ports and file paths rewritten), with a PKI made by
 * openssl. Devices are the agent's own MqttLink over mTLS; the back office and the
 * attackers are plain MQTT.js clients. Every "never arrives" is checked after a later
 * legitimate message through the same path has arrived, so it cannot pass vacuously.
 */
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, ErrorWithReasonCode, type IClientOptions, type IConnackPacket, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { MqttLink, type MqttLinkOptions } from '../../agent/mqtt/link.js';
import { Topics } from '../../agent/mqtt/topics.js';
import { type ClientCertificate, createTestPki, type KeyPair, type TestPki } from '../support/certs.js';
import { type Broker, type DeployConfig, rewriteDeployConfig, startMosquitto } from '../support/mosquitto.js';
import {
  collectCommands,
  MessageRecorder,
  MQTT_LIVENESS_MS,
  type ReceivedCommand,
  waitUntil,
} from '../support/mqtt-recorder.js';
import { TcpGate } from '../support/tcp-gate.js';

const DEPLOY_CONF = fileURLToPath(new URL('../../deploy/mosquitto/dmx-fleet.conf', import.meta.url));
const DEPLOY_ACL = fileURLToPath(new URL('../../deploy/mosquitto/dmx-fleet.acl', import.meta.url));
/** MQTT 5 reason code 0x87. */
const NOT_AUTHORIZED = 135;

const BOX_A = 'box-a';
const BOX_B = 'box-b';
const BACKEND = 'fleet-backend';
const DASHBOARD = 'fleet-dashboard';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

interface Fleet {
  broker: Broker;
  pki: TestPki;
}

function deployConfig(pki: TestPki): DeployConfig {
  return { conf: DEPLOY_CONF, acl: DEPLOY_ACL, tls: { ca: pki.ca, cert: pki.server.cert, key: pki.server.key } };
}

/** A fresh PKI and a broker running the deploy configuration with it. */
async function startFleet(): Promise<Fleet> {
  const pki = createTestPki();
  cleanups.push(() => pki.cleanup());
  const broker = await startMosquitto({ deploy: deployConfig(pki) });
  cleanups.push(() => broker.stop());
  return { broker, pki };
}

/** MQTT.js TLS options: the fleet CA, and a client certificate when given. */
function tlsOptions(pki: TestPki, certificate?: KeyPair): IClientOptions {
  const options: IClientOptions = { ca: readFileSync(pki.ca) };
  if (certificate !== undefined) {
    options.cert = readFileSync(certificate.cert);
    options.key = readFileSync(certificate.key);
  }
  return options;
}

function linkOptions(url: string, pki: TestPki, deviceId: string, certificate: KeyPair): MqttLinkOptions {
  return {
    url,
    clientId: `dmx-agent-${deviceId}`,
    protocolVersion: 5,
    keepaliveSec: 10,
    sessionExpirySec: 3600,
    reconnect: { baseMs: 20, capMs: 200, stableMs: 1000 },
    offlineQueue: { maxEvents: 100, maxBytes: 1_000_000 },
    topics: new Topics('stb', deviceId),
    birth: () => ({ version: '0.1.0-test', device: deviceId }),
    // The agent's own configuration carries these as file paths (mqtt.tls.ca, cert, key).
    tls: { ca: pki.ca, cert: certificate.cert, key: certificate.key },
    logger: pino({ level: process.env.DMX_TEST_MQTT_LOG ?? 'silent' }),
  };
}

/** A device: the agent's link with the certificate of its own id, connected. */
async function device(
  { broker, pki }: Fleet,
  deviceId: string,
  overrides: Partial<MqttLinkOptions> = {},
): Promise<{ link: MqttLink; topics: Topics; commands: ReceivedCommand[] }> {
  const options = { ...linkOptions(broker.url, pki, deviceId, pki.client(deviceId)), ...overrides };
  const link = new MqttLink(options);
  cleanups.push(() => link.stop());
  const commands = collectCommands(link);
  // start() waits for a broker forever (a box keeps retrying); a refused box must fail the test, not hang it.
  let timer: NodeJS.Timeout | undefined;
  const gaveUp = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`${deviceId} did not connect; broker log:\n${broker.log().slice(-4000)}`)),
      MQTT_LIVENESS_MS,
    );
  });
  try {
    await Promise.race([link.start(), gaveUp]);
  } finally {
    clearTimeout(timer);
  }
  expect(link.connected).toBe(true);
  return { link, topics: options.topics, commands };
}

/** A plain MQTT.js client over mTLS recording what it receives. */
class Client extends MessageRecorder {
  /**
   * Connected with this certificate (its CN is who the broker thinks we are). Under
   * use_username_as_clientid a second connection with the same CN replaces the first, so a
   * test holds one connection per identity.
   */
  static async connect(fleet: Fleet, cn: string, options: IClientOptions = {}): Promise<Client> {
    const attempt = await attemptConnection(fleet.broker.url, {
      ...tlsOptions(fleet.pki, fleet.pki.client(cn)),
      ...options,
    });
    if (attempt.client === null) throw new Error(`${cn} could not connect: ${attempt.error?.message}`);
    return new Client(attempt.client);
  }

  /** The reason code of the PUBACK when the broker refused the QoS 1 publish, else null. */
  async publishRefusal(topic: string, payload: string, retain = false): Promise<number | null> {
    try {
      await this.client.publishAsync(topic, payload, { qos: 1, retain });
      return null;
    } catch (err) {
      if (err instanceof ErrorWithReasonCode) return err.code;
      throw err;
    }
  }
}

interface Attempt {
  /** The connected client, or null when the connection was refused. */
  client: MqttClient | null;
  connack?: IConnackPacket;
  error?: Error;
}

/** One connection attempt, no retries: connected, or refused with the error seen before the close. */
function attemptConnection(url: string, options: IClientOptions): Promise<Attempt> {
  const client = connect(url, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: MQTT_LIVENESS_MS, ...options });
  cleanups.push(() => {
    client.end(true);
  });
  return new Promise((resolve) => {
    let error: Error | undefined;
    client.on('error', (err) => {
      error ??= err;
    });
    client.once('connect', (connack) => resolve({ client, connack }));
    client.once('close', () => resolve(error === undefined ? { client: null } : { client: null, error }));
  });
}

/** The retained message on `topic` as a new subscriber sees it (the dashboard's identity). */
async function retainedAsDashboard(fleet: Fleet, topic: string): Promise<unknown> {
  const dashboard = await Client.connect(fleet, DASHBOARD);
  await dashboard.client.subscribeAsync(topic, { qos: 1 });
  const message = await dashboard.waitFor((m) => m.topic === topic && m.retain, `the retained ${topic}`);
  await dashboard.client.endAsync();
  return JSON.parse(message.text) as unknown;
}

describe('the deploy configuration under test', () => {
  it('is run as written: only listeners and file paths are rewritten', async () => {
    const pki = createTestPki();
    cleanups.push(() => pki.cleanup());
    const written = readFileSync(DEPLOY_CONF, 'utf8').split('\n');
    const { lines, listeners } = await rewriteDeployConfig(written.join('\n'), deployConfig(pki), pki.dir);

    const machineSpecific =
      /^\s*(listener|cafile|certfile|keyfile|acl_file|persistence_location|pid_file|log_dest|user)\b/;
    const kept = written.filter((line) => !machineSpecific.test(line));
    // Every other line, comments included, is there unchanged and in order.
    expect(lines.filter((line) => !machineSpecific.test(line))).toEqual(kept);
    expect(kept.filter((line) => line.trim() !== '' && !line.trim().startsWith('#')).length).toBeGreaterThan(10);
    expect(lines).toContain(`acl_file ${DEPLOY_ACL}`);
    expect(lines).toContain(`certfile ${pki.server.cert}`);
    // The devices' listener: MQTT over TLS on 8883.
    expect(listeners[0]).toMatchObject({ configuredPort: 8883, protocol: 'mqtt', tls: true });
    expect(lines.filter((line) => line.startsWith('listener '))).toEqual(
      listeners.map((listener) => `listener ${listener.port} 127.0.0.1`),
    );
  });

  it('refuses to run an option it cannot carry over rather than dropping it', async () => {
    const deploy = { conf: 'test.conf', acl: 'acl', tls: { ca: 'ca', cert: 'cert', key: 'key' } };
    await expect(
      rewriteDeployConfig('include_dir /etc/mosquitto/conf.d\nlistener 1', deploy, 'unused-dir'),
    ).rejects.toThrow(/test.conf:1: include_dir .* cannot run on a test machine/);
    await expect(rewriteDeployConfig('listener 1\nhttp_dir /srv/www', deploy, 'unused-dir')).rejects.toThrow(
      /http_dir/,
    );
    await expect(rewriteDeployConfig('listener 1\nsome_option /etc/secret', deploy, 'unused-dir')).rejects.toThrow(
      /test.conf:2: some_option \/etc\/secret: names a path of this machine/,
    );
    // Accepted as a control: the same shape without the machine path.
    await expect(rewriteDeployConfig('listener 1\nsome_option 5', deploy, 'unused-dir')).resolves.toMatchObject({
      lines: [
        expect.stringMatching(/^log_dest file /),
        expect.stringMatching(/^listener \d+ 127\.0\.0\.1$/),
        'some_option 5',
      ],
    });
  });
});

describe('fleet broker (deploy/mosquitto) with mTLS and the ACL', () => {
  it('a device on its certificate is online, its telemetry and events reach the back office, and it answers a command', async () => {
    const fleet = await startFleet();
    const backend = await Client.connect(fleet, BACKEND);
    await backend.client.subscribeAsync('stb/#', { qos: 1 });
    const { link, topics, commands } = await device(fleet, BOX_A);

    // The online status is retained: a dashboard connecting later sees it.
    expect(await retainedAsDashboard(fleet, topics.status)).toEqual({
      state: 'online',
      version: '0.1.0-test',
      device: BOX_A,
    });
    link.publishRetained(topics.capabilities, { adapters: 2 });
    link.publishTelemetry({ streams: 3 });
    link.publishEvent('errno', { errno: 'EOVERFLOW' });
    const event = await backend.waitFor((m) => m.topic === topics.event('errno'), 'the event');
    expect(JSON.parse(event.text)).toEqual({ errno: 'EOVERFLOW' });
    expect(backend.on(topics.telemetry).map((m) => JSON.parse(m.text) as unknown)).toEqual([{ streams: 3 }]);
    expect(backend.on(topics.capabilities).map((m) => JSON.parse(m.text) as unknown)).toEqual([{ adapters: 2 }]);

    // A command with an MQTT 5 response topic inside the box's own response/ subtree.
    const responseTopic = `${topics.base}/response/req-1`;
    await backend.client.publishAsync(topics.command('status'), JSON.stringify({ id: 'req-1' }), {
      qos: 1,
      properties: { responseTopic, correlationData: Buffer.from('corr-1') },
    });
    await waitUntil(() => commands.length === 1, 'the command');
    const request = commands[0]!;
    expect(request).toMatchObject({ name: 'status', body: { id: 'req-1' } });
    link.publishResponse(
      request.packet.properties?.responseTopic ?? topics.response(request.name),
      { id: 'req-1', status: 'ok', data: {} },
      request.packet.properties?.correlationData,
    );
    const answer = await backend.waitFor((m) => m.topic === responseTopic, 'the answer');
    expect(JSON.parse(answer.text)).toEqual({ id: 'req-1', status: 'ok', data: {} });
    expect(answer.packet.properties?.correlationData?.toString()).toBe('corr-1');
  });

  it('a device can answer only below its own stb/<id>/response/: another response topic is refused', async () => {
    const fleet = await startFleet();
    const backend = await Client.connect(fleet, BACKEND);
    await backend.client.subscribeAsync('stb/#', { qos: 1 });
    const b = await device(fleet, BOX_B);
    const { link, topics, commands } = await device(fleet, BOX_A);

    // A client picking a response topic outside the box's subtree: here, another box's command topic.
    const elsewhere = b.topics.command('status');
    await backend.client.publishAsync(topics.command('status'), JSON.stringify({ id: 'r-out' }), {
      qos: 1,
      properties: { responseTopic: elsewhere },
    });
    await backend.client.publishAsync(topics.command('status'), JSON.stringify({ id: 'r-in' }), { qos: 1 });
    await waitUntil(() => commands.length === 2, 'both commands');
    for (const request of commands) {
      const id = (request.body as { id: string }).id;
      link.publishResponse(request.packet.properties?.responseTopic ?? topics.response(request.name), {
        id,
        status: 'ok',
      });
    }

    // The answer on the default topic went out after the other one, on the same connection.
    await backend.waitFor((m) => m.topic === topics.response('status'), 'the answer on the default topic');
    expect(backend.on(elsewhere)).toEqual([]);
    expect(b.commands).toEqual([]);
    expect(backend.on(topics.response('status')).map((m) => JSON.parse(m.text) as unknown)).toEqual([
      { id: 'r-in', status: 'ok' },
    ]);
    // The refusal is not silent on the box: the broker's PUBACK said 0x87 and the link counted it.
    await waitUntil(() => link.stats().refused === 1, 'the refusal counted');
  });

  it("device B cannot read device A's topics: the broker grants the subscription but delivers nothing of A's", async () => {
    const fleet = await startFleet();
    const backend = await Client.connect(fleet, BACKEND);
    await backend.client.subscribeAsync('stb/#', { qos: 1 });
    const a = await device(fleet, BOX_A);
    a.link.publishRetained(a.topics.capabilities, { adapters: 1 });
    await backend.waitFor((m) => m.topic === a.topics.capabilities, "A's capabilities");

    const spy = await Client.connect(fleet, BOX_B);
    const filters = [`stb/${BOX_A}/#`, 'stb/#', '#', `stb/${BOX_A}/status`];
    const granted = await spy.client.subscribeAsync(filters, { qos: 1 });
    // What mosquitto 2.0.11 really does: the SUBACK grants QoS 1 for every filter (no 0x87 Not
    // authorized); the ACL is applied to each message at delivery, retained ones included.
    expect(granted.map((grant) => [grant.topic, grant.qos])).toEqual(filters.map((filter) => [filter, 1]));

    a.link.publishTelemetry({ secret: 'telemetry' });
    a.link.publishEvent('errno', { secret: 'event' });
    await backend.waitFor((m) => m.topic === a.topics.event('errno'), "A's event at the back office");
    await backend.client.publishAsync(a.topics.command('status'), JSON.stringify({ id: 'for-a' }), { qos: 1 });
    await waitUntil(() => a.commands.length === 1, "A's command");
    // Positive control through the same subscriptions: B may read its own commands. The broker routed
    // everything of A's above before this message, so anything of A's B could see would be here by now.
    await backend.client.publishAsync(`stb/${BOX_B}/cmd/marker`, JSON.stringify({ id: 'for-b' }), { qos: 1 });
    await spy.waitFor((m) => m.topic === `stb/${BOX_B}/cmd/marker`, "B's own command");
    expect(spy.messages.filter((m) => m.topic.startsWith(`stb/${BOX_A}/`))).toEqual([]);
    expect(spy.messages.every((m) => m.topic === `stb/${BOX_B}/cmd/marker`)).toBe(true);
  });

  it('device B cannot command device A: its publish is refused and only the back office command arrives', async () => {
    const fleet = await startFleet();
    const a = await device(fleet, BOX_A);
    const attacker = await Client.connect(fleet, BOX_B);
    const backend = await Client.connect(fleet, BACKEND);

    expect(await attacker.publishRefusal(a.topics.command('status'), JSON.stringify({ id: 'from-b' }))).toBe(
      NOT_AUTHORIZED,
    );
    expect(await attacker.publishRefusal(a.topics.command('reboot'), JSON.stringify({ id: 'from-b-2' }))).toBe(
      NOT_AUTHORIZED,
    );
    // Positive control: the same topic from the back office, sent after the refused ones.
    expect(await backend.publishRefusal(a.topics.command('status'), JSON.stringify({ id: 'from-backend' }))).toBeNull();
    await waitUntil(() => a.commands.length >= 1, 'the back office command');
    expect(a.commands.map((command) => [command.name, command.body])).toEqual([['status', { id: 'from-backend' }]]);
  });

  it("device B cannot pass for device A: claimed client id and user name are ignored, A's topics stay A's", async () => {
    const fleet = await startFleet();
    const backend = await Client.connect(fleet, BACKEND);
    await backend.client.subscribeAsync('stb/#', { qos: 1, rap: true });
    const a = await device(fleet, BOX_A);
    await backend.waitFor((m) => m.topic === a.topics.status, "A's online status");

    // B's certificate, everything else claiming to be A, including A's Last Will. mosquitto 2.0.11
    // accepts the CONNECT: it checks the Will's topic only when it publishes the Will.
    const impostor = await attemptConnection(fleet.broker.url, {
      ...tlsOptions(fleet.pki, fleet.pki.client(BOX_B)),
      clientId: `dmx-agent-${BOX_A}`,
      username: BOX_A,
      clean: false,
      properties: { sessionExpiryInterval: 3600 },
      will: { topic: a.topics.status, payload: Buffer.from('{"state":"offline"}'), qos: 1, retain: true },
    });
    expect(impostor.client).not.toBeNull();
    // A fresh session: it did not take over A's (use_username_as_clientid made its client id "box-b").
    expect(impostor.connack?.sessionPresent).toBe(false);
    const client = new Client(impostor.client!);
    expect(await client.publishRefusal(a.topics.status, '{"state":"offline","forged":true}', true)).toBe(
      NOT_AUTHORIZED,
    );
    expect(await client.publishRefusal(a.topics.event('errno'), '{"forged":true}')).toBe(NOT_AUTHORIZED);
    // Positive control: the broker knows it as B, and B's own topics are open to it.
    expect(await client.publishRefusal(`stb/${BOX_B}/events/hello`, '{"from":"impostor"}')).toBeNull();
    await backend.waitFor((m) => m.topic === `stb/${BOX_B}/events/hello`, "the impostor's message under B");

    // Its Will is due when its connection drops, and is refused then. A second client of B's with its
    // own Will connects only after that drop (one TLS handshake later): once its Will is in, the
    // impostor's would have been too.
    impostor.client!.stream.destroy();
    await waitUntil(() => !impostor.client!.connected, 'the impostor to be gone');
    const control = await attemptConnection(fleet.broker.url, {
      ...tlsOptions(fleet.pki, fleet.pki.client(BOX_B)),
      will: { topic: `stb/${BOX_B}/status`, payload: Buffer.from('{"state":"offline"}'), qos: 1, retain: true },
    });
    expect(control.client).not.toBeNull();
    control.client!.stream.destroy();
    await backend.waitFor((m) => m.topic === `stb/${BOX_B}/status`, "B's own Will");

    // A was never disconnected (nobody took its client id), still gets commands, and its status is its own.
    await backend.client.publishAsync(a.topics.command('status'), JSON.stringify({ id: 'still-a' }), { qos: 1 });
    await waitUntil(() => a.commands.length === 1, "A's command");
    expect(a.link.stats()).toMatchObject({ connects: 1, disconnects: 0 });
    expect(backend.on(a.topics.status).map((m) => JSON.parse(m.text) as unknown)).toEqual([
      { state: 'online', version: '0.1.0-test', device: BOX_A },
    ]);
    expect(backend.on(a.topics.event('errno'))).toEqual([]);
    expect(await retainedAsDashboard(fleet, a.topics.status)).toMatchObject({ state: 'online', device: BOX_A });
  });

  it('the dashboard reads everything and sends commands, and writes nothing else', async () => {
    const fleet = await startFleet();
    const a = await device(fleet, BOX_A);
    const dashboard = await Client.connect(fleet, DASHBOARD);
    await dashboard.client.subscribeAsync('stb/#', { qos: 1 });
    await dashboard.waitFor((m) => m.topic === a.topics.status && m.retain, "A's retained status");

    expect(await dashboard.publishRefusal(a.topics.status, '{"state":"offline"}', true)).toBe(NOT_AUTHORIZED);
    expect(await dashboard.publishRefusal(a.topics.response('status'), '{"id":"forged"}')).toBe(NOT_AUTHORIZED);
    expect(await dashboard.publishRefusal('dashboards/notes', '{}')).toBe(NOT_AUTHORIZED);
    // Positive control: a command from the dashboard reaches the box, after the refused messages.
    expect(
      await dashboard.publishRefusal(a.topics.command('status'), JSON.stringify({ id: 'from-dashboard' })),
    ).toBeNull();
    await waitUntil(() => a.commands.length === 1, 'the command from the dashboard');
    a.link.publishEvent('marker', {});
    await dashboard.waitFor((m) => m.topic === a.topics.event('marker'), "A's event, read by the dashboard");
    expect(dashboard.on(a.topics.response('status'))).toEqual([]);
    expect(dashboard.on(a.topics.status).map((m) => JSON.parse(m.text).state)).toEqual(['online']);
    const backend = await Client.connect(fleet, BACKEND);
    await backend.client.subscribeAsync(a.topics.status, { qos: 1 });
    const status = await backend.waitFor((m) => m.retain, "A's retained status, as the back office sees it");
    expect(JSON.parse(status.text)).toMatchObject({ state: 'online', device: BOX_A });
  });

  it("the agent's Last Will passes the ACL: a box that vanishes is seen offline", async () => {
    const fleet = await startFleet();
    const backend = await Client.connect(fleet, BACKEND);
    await backend.client.subscribeAsync(`stb/${BOX_A}/status`, { qos: 1 });
    const relay = await TcpGate.start(fleet.broker.port);
    cleanups.push(() => relay.close());
    // Through the relay, as far as TLS is concerned still 127.0.0.1 (the server certificate's address).
    const a = await device(fleet, BOX_A, { url: `mqtts://127.0.0.1:${relay.port}` });
    await backend.waitFor((m) => JSON.parse(m.text).state === 'online', 'online');

    relay.refuse = true;
    relay.cut();
    const offline = await backend.waitFor((m) => JSON.parse(m.text).state === 'offline', 'the Last Will');
    expect(JSON.parse(offline.text)).toEqual({ state: 'offline' });
    await waitUntil(() => !a.link.connected, 'the link to notice the cut');
    expect(await retainedAsDashboard(fleet, a.topics.status)).toEqual({ state: 'offline' });
  });

  it('a command queued for an offline box survives a broker restart (persistence)', async () => {
    const fleet = await startFleet();
    const first = await device(fleet, BOX_A);
    // A clean stop keeps the session (MQTT 5 session expiry), with its command subscription.
    await first.link.stop();
    const backend = await Client.connect(fleet, BACKEND);
    expect(
      await backend.publishRefusal(first.topics.command('stream.restart'), JSON.stringify({ id: 'while-away' })),
    ).toBeNull();
    await backend.client.endAsync();

    await fleet.broker.restart();
    const again = await device(fleet, BOX_A);
    await waitUntil(() => again.commands.length === 1, 'the command queued before the restart');
    expect(again.commands[0]).toMatchObject({ name: 'stream.restart', body: { id: 'while-away' } });
  });

  it('picks up a rotated certificate at the next reconnect, with no restart', async () => {
    const fleet = await startFleet();
    const backend = await Client.connect(fleet, BACKEND);
    await backend.client.subscribeAsync(`stb/${BOX_A}/status`, { qos: 1 });
    // The box's certificate files hold one the broker refuses (another CA): the link keeps retrying.
    const dir = mkdtempSync(join(tmpdir(), 'dmx-rotation-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const files = { cert: join(dir, 'device.pem'), key: join(dir, 'device.key') };
    const install = (pair: KeyPair) => {
      copyFileSync(pair.cert, files.cert);
      copyFileSync(pair.key, files.key);
    };
    install(fleet.pki.foreignClient(BOX_A));
    const errors: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => errors.push(JSON.parse(line).err ?? '') });
    const options = { ...linkOptions(fleet.broker.url, fleet.pki, BOX_A, files as ClientCertificate), logger };
    const link = new MqttLink(options);
    cleanups.push(() => link.stop());
    void link.start();
    await waitUntil(() => errors.length >= 2, 'refused attempts');
    expect(link.connected).toBe(false);

    // The files are replaced in place, as a provisioning service renews a certificate.
    install(fleet.pki.client(BOX_A));
    await waitUntil(() => link.connected, 'the connection with the new certificate');
    await backend.waitFor((m) => JSON.parse(m.text).state === 'online', 'the box online');
  });

  it('refuses a client without a certificate, with one from another CA or not made for clients, and plain TCP', async () => {
    const fleet = await startFleet();
    const { broker, pki } = fleet;

    const withoutCertificate = await attemptConnection(broker.url, {
      ...tlsOptions(pki),
      username: BACKEND,
      password: 'anything',
    });
    expect(withoutCertificate.client).toBeNull();
    expect(withoutCertificate.error?.message).toMatch(/certificate required|handshake failure/);

    // A foreign CA's certificate claiming the back office's CN.
    const foreign = await attemptConnection(broker.url, { ...tlsOptions(pki, pki.foreignClient(BACKEND)) });
    expect(foreign.client).toBeNull();
    expect(foreign.error?.message).toMatch(/unknown ca/);

    // The fleet CA's server certificate (extended key usage serverAuth only).
    const serverCertificate = await attemptConnection(broker.url, { ...tlsOptions(pki, pki.server) });
    expect(serverCertificate.client).toBeNull();
    expect(serverCertificate.error?.message).toMatch(/unsupported certificate/);

    const plain = await attemptConnection(`mqtt://127.0.0.1:${broker.port}`, { clientId: BOX_A });
    expect(plain.client).toBeNull();

    // Positive control on the same port: the same CN from the fleet CA connects and is the back office.
    const backend = await Client.connect(fleet, BACKEND);
    await backend.client.subscribeAsync('stb/#', { qos: 1 });
    expect(await backend.publishRefusal(`stb/${BOX_A}/cmd/status`, JSON.stringify({ id: 'ok' }))).toBeNull();
    await backend.waitFor((m) => m.topic === `stb/${BOX_A}/cmd/status`, 'its own command, read back');
  });
});
