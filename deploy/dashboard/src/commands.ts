/**
 * Commands from the page, on the agent's request/response contract: a
 * request on `<prefix>/<id>/cmd/<name>` with a unique `id`, answered with the
 * same `id`. Over MQTT 5 the request names a response topic below the
 * device's own `response/` (the fleet broker's ACL allows no other) and its
 * correlation data; over MQTT 3.1.1 (the development broker) the answer comes
 * on `response/<name>`. Either way the page subscribes to the device's
 * `response/#` before sending and matches answers by `id`.
 */
import type { CommandResponse } from './contract.js';

/** Commands the page offers (the agent has more; these are the ones an operator needs from a browser). */
export const PAGE_COMMANDS = ['status', 'streams', 'diag.dump', 'pool.resize'] as const;
export type PageCommand = (typeof PAGE_COMMANDS)[number];

/** What the page needs from the connection to send commands. */
export interface CommandTransport {
  readonly protocolVersion: 4 | 5 | null;
  subscribe(filter: string): Promise<void>;
  publish(
    topic: string,
    payload: string,
    options: { responseTopic?: string; correlationData?: Uint8Array; messageExpirySec?: number },
  ): Promise<void>;
}

export type CommandState = 'sending' | 'sent' | 'answered' | 'no-answer' | 'failed';

export interface SentCommand {
  id: string;
  deviceId: string;
  name: string;
  args: Record<string, unknown> | undefined;
  sentAt: number;
  state: CommandState;
  /** The answer as received. */
  response: CommandResponse | null;
  answeredAt: number | null;
  /** Why sending failed. */
  failure: string | null;
}

export interface CommandOptions {
  /** Seconds a request stays valid: `exp` in the request, and the MQTT 5 message expiry (a box offline longer never runs it). */
  ttlSec: number;
  /** How long the page waits before calling a command unanswered (an answer arriving later is still shown). */
  answerTimeoutMs: number;
}

export const DEFAULT_COMMAND_OPTIONS: CommandOptions = { ttlSec: 120, answerTimeoutMs: 15_000 };

/** Keeps this many commands (all devices together). */
const MAX_KEPT = 200;

export class CommandClient {
  /** Newest last. */
  readonly sent: SentCommand[] = [];
  version = 0;
  private readonly byId = new Map<string, SentCommand>();
  private readonly subscribed = new Set<string>();
  private counter = 0;

  constructor(
    private readonly transport: CommandTransport,
    private readonly prefix: string,
    /** Makes the ids of this page unique among the pages commanding the fleet. */
    private readonly session: string,
    private readonly options: CommandOptions = DEFAULT_COMMAND_OPTIONS,
    private readonly onChange: () => void = () => {},
    private readonly now: () => number = Date.now,
  ) {}

  /** Sends a command; the returned record is updated in place as it is answered. */
  async send(deviceId: string, name: PageCommand, args?: Record<string, unknown>): Promise<SentCommand> {
    const id = `dash-${this.session}-${++this.counter}`;
    const sentAt = this.now();
    const command: SentCommand = {
      id,
      deviceId,
      name,
      args,
      sentAt,
      state: 'sending',
      response: null,
      answeredAt: null,
      failure: null,
    };
    this.keep(command);
    const base = `${this.prefix}/${deviceId}`;
    const request = { id, ...(args ? { args } : {}), exp: sentAt + this.options.ttlSec * 1000 };
    try {
      const filter = `${base}/response/#`;
      if (!this.subscribed.has(filter)) {
        await this.transport.subscribe(filter);
        this.subscribed.add(filter);
      }
      await this.transport.publish(
        `${base}/cmd/${name}`,
        JSON.stringify(request),
        this.transport.protocolVersion === 5
          ? {
              responseTopic: `${base}/response/${name}`,
              correlationData: new TextEncoder().encode(id),
              messageExpirySec: this.options.ttlSec,
            }
          : {},
      );
      if (command.state === 'sending') command.state = 'sent';
      setTimeout(() => {
        if (command.state === 'sent') {
          command.state = 'no-answer';
          this.changed();
        }
      }, this.options.answerTimeoutMs);
    } catch (err) {
      command.state = 'failed';
      command.failure = err instanceof Error ? err.message : String(err);
    }
    this.changed();
    return command;
  }

  /** An answer from a device (FleetStore hands on every valid response payload). */
  handleResponse(deviceId: string, _name: string, json: unknown): void {
    const response = json as CommandResponse;
    if (response.id === null) return;
    const command = this.byId.get(response.id);
    // Another page's command, or one of ours answered twice (a retransmission): nothing to update.
    if (command === undefined || command.deviceId !== deviceId || command.response !== null) return;
    command.response = response;
    command.answeredAt = this.now();
    command.state = 'answered';
    this.changed();
  }

  /** The commands sent to one device, newest first. */
  forDevice(deviceId: string): SentCommand[] {
    return this.sent.filter((c) => c.deviceId === deviceId).reverse();
  }

  private keep(command: SentCommand): void {
    this.sent.push(command);
    this.byId.set(command.id, command);
    while (this.sent.length > MAX_KEPT) this.byId.delete(this.sent.shift()!.id);
    this.changed();
  }

  private changed(): void {
    this.version++;
    this.onChange();
  }
}
