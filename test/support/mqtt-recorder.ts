/**
 * What the MQTT tests need on the client side: a recorder of the messages a
 * plain MQTT.js client receives, the commands an MqttLink hands over, and a
 * liveness wait that keeps polling while a test fakes the timers.
 */
import type { IPublishPacket, MqttClient } from 'mqtt';
import type { CommandPacket, MqttLink } from '../../agent/mqtt/link.js';

/** Liveness bound for anything a broker or a client should do soon; never a pass/fail timing. */
export const MQTT_LIVENESS_MS = 15_000;

// Taken at import, before any test fakes setTimeout for the code under test.
const realSetTimeout = globalThis.setTimeout;

export async function waitUntil(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + MQTT_LIVENESS_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => realSetTimeout(resolve, 10));
  }
}

export interface Received {
  topic: string;
  text: string;
  retain: boolean;
  packet: IPublishPacket;
}

/** Everything `client` receives, in order. */
export class MessageRecorder {
  readonly messages: Received[] = [];

  constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload, packet) => {
      this.messages.push({ topic, text: payload.toString(), retain: packet.retain, packet });
    });
  }

  on(topic: string): Received[] {
    return this.messages.filter((message) => message.topic === topic);
  }

  json(topic: string): unknown[] {
    return this.on(topic).map((message) => JSON.parse(message.text) as unknown);
  }

  async waitFor(predicate: (message: Received) => boolean, what: string): Promise<Received> {
    let found: Received | undefined;
    await waitUntil(() => {
      found = this.messages.find(predicate);
      return found !== undefined;
    }, what);
    return found!;
  }
}

export interface ReceivedCommand {
  name: string;
  body: unknown;
  packet: CommandPacket;
}

/** The commands the link hands over, parsed, in order (the link's one command handler). */
export function collectCommands(link: MqttLink): ReceivedCommand[] {
  const commands: ReceivedCommand[] = [];
  link.onCommand((name, payload, packet) => {
    commands.push({ name, body: JSON.parse(payload.toString()) as unknown, packet });
  });
  return commands;
}
