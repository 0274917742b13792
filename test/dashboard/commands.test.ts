// Commands from the page on the request/response contract, over a transport
// that records what would go to the broker.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CommandClient, type CommandTransport } from '../../deploy/dashboard/src/commands.js';

interface Published {
  topic: string;
  payload: Record<string, unknown>;
  options: Parameters<CommandTransport['publish']>[2];
}

function transport(protocolVersion: 4 | 5, fail?: string) {
  const published: Published[] = [];
  const subscribed: string[] = [];
  const t: CommandTransport = {
    protocolVersion,
    async subscribe(filter) {
      subscribed.push(filter);
    },
    async publish(topic, payload, options) {
      if (fail) throw new Error(fail);
      published.push({ topic, payload: JSON.parse(payload) as Record<string, unknown>, options });
    },
  };
  return { t, published, subscribed };
}

const NOW = 1_795_000_000_000;

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(NOW);
});
afterEach(() => {
  vi.useRealTimers();
});

describe('commands from the page', () => {
  it('over MQTT 5: a response topic below the device’s response/, correlation data, expiry in both places', async () => {
    const { t, published, subscribed } = transport(5);
    const client = new CommandClient(t, 'stb', 'p1', { ttlSec: 60, answerTimeoutMs: 15_000 });
    const command = await client.send('stb-7', 'pool.resize', { stream: 'hd', count: 8 });
    expect(subscribed).toEqual(['stb/stb-7/response/#']);
    expect(published).toHaveLength(1);
    const [request] = published;
    expect(request!.topic).toBe('stb/stb-7/cmd/pool.resize');
    expect(request!.payload).toEqual({ id: command.id, args: { stream: 'hd', count: 8 }, exp: NOW + 60_000 });
    expect(request!.options.responseTopic).toBe('stb/stb-7/response/pool.resize');
    expect(new TextDecoder().decode(request!.options.correlationData)).toBe(command.id);
    expect(request!.options.messageExpirySec).toBe(60);
    expect(command.state).toBe('sent');
    // A second command to the same device needs no second subscription; ids differ.
    const second = await client.send('stb-7', 'status');
    expect(subscribed).toHaveLength(1);
    expect(second.id).not.toBe(command.id);
    expect(published[1]!.payload).toEqual({ id: second.id, exp: NOW + 60_000 });
  });

  it('over MQTT 3.1.1: the plain request, answered on response/<name>', async () => {
    const { t, published } = transport(4);
    const client = new CommandClient(t, 'stb', 'p1');
    await client.send('stb-7', 'streams');
    expect(published[0]!.options).toEqual({});
  });

  it('matches answers by id and device; ignores other pages’ answers and repeats', async () => {
    const { t } = transport(5);
    const client = new CommandClient(t, 'stb', 'p1');
    const command = await client.send('stb-7', 'streams');
    client.handleResponse('stb-7', 'streams', { id: 'dash-other-1', status: 'ok', data: 'not ours' });
    client.handleResponse('stb-8', 'streams', { id: command.id, status: 'ok', data: 'wrong device' });
    client.handleResponse('stb-7', 'streams', { id: null, status: 'error', error: { code: 'bad-json', message: 'x' } });
    expect(command.state).toBe('sent');
    vi.setSystemTime(NOW + 40);
    client.handleResponse('stb-7', 'streams', { id: command.id, status: 'ok', data: ['hd'] });
    client.handleResponse('stb-7', 'streams', { id: command.id, status: 'ok', data: ['repeat'] });
    expect(command).toMatchObject({ state: 'answered', answeredAt: NOW + 40, response: { data: ['hd'] } });
    expect(client.forDevice('stb-7')).toEqual([command]);
    expect(client.forDevice('stb-8')).toEqual([]);
  });

  it('calls a command unanswered after the timeout, and still shows an answer that comes later', async () => {
    const { t } = transport(5);
    const client = new CommandClient(t, 'stb', 'p1', { ttlSec: 120, answerTimeoutMs: 15_000 });
    const command = await client.send('stb-7', 'diag.dump');
    vi.advanceTimersByTime(14_999);
    expect(command.state).toBe('sent');
    vi.advanceTimersByTime(1);
    expect(command.state).toBe('no-answer');
    client.handleResponse('stb-7', 'diag.dump', {
      id: command.id,
      status: 'error',
      error: { code: 'unknown-stream', message: 'no' },
    });
    expect(command.state).toBe('answered');
  });

  it('says why a command could not be sent', async () => {
    const { t } = transport(5, 'not connected to the broker at ws://x/mqtt');
    const client = new CommandClient(t, 'stb', 'p1');
    const command = await client.send('stb-7', 'status');
    expect(command).toMatchObject({ state: 'failed', failure: 'not connected to the broker at ws://x/mqtt' });
  });
});
