/**
 * Commands to one device, and their answers. `pool.resize` reopens the
 * stream's pool (a short interruption of that stream), so it asks first.
 */
import { useState } from 'preact/hooks';
import type { CommandClient, PageCommand, SentCommand } from '../commands.js';
import type { DeviceView } from '../fleet-store.js';
import { formatClock, formatMs } from '../format.js';

/** The agent's limits for a pool (agent/mqtt/command-schemas.ts); the agent checks them again. */
const POOL_COUNT = { min: 2, max: 32 };
const TS_PACKET = 188;
const POOL_SIZE_MAX = 770_048;

/** A whole decimal number as typed ('0x10', '1e3' and ' 8' are not), or NaN. */
function wholeNumber(text: string): number {
  return /^[0-9]{1,9}$/.test(text) ? Number(text) : Number.NaN;
}

function resizeProblem(count: string, size: string): string | null {
  if (count === '' && size === '') return 'give a buffer count, a buffer size, or both';
  if (count !== '') {
    const n = wholeNumber(count);
    if (!Number.isInteger(n) || n < POOL_COUNT.min || n > POOL_COUNT.max) {
      return `the count must be a whole number from ${POOL_COUNT.min} to ${POOL_COUNT.max}`;
    }
  }
  if (size !== '') {
    const n = wholeNumber(size);
    if (!Number.isInteger(n) || n <= 0 || n % TS_PACKET !== 0 || n > POOL_SIZE_MAX) {
      return `the size must be a multiple of ${TS_PACKET} bytes, at most ${POOL_SIZE_MAX}`;
    }
  }
  return null;
}

function Answer(props: { command: SentCommand; now: number }) {
  const { command } = props;
  const argText = command.args ? ` ${JSON.stringify(command.args)}` : '';
  let outcome: string;
  switch (command.state) {
    case 'sending':
      outcome = 'sending…';
      break;
    case 'sent':
      outcome = `waiting for the answer (${formatMs(props.now - command.sentAt)})`;
      break;
    case 'no-answer':
      outcome = 'no answer yet: the device may be offline or busy; an answer arriving later shows here';
      break;
    case 'failed':
      outcome = `not sent: ${command.failure}`;
      break;
    case 'answered': {
      const latency = formatMs((command.answeredAt ?? command.sentAt) - command.sentAt);
      outcome = command.response?.status === 'ok' ? `ok in ${latency}` : `error in ${latency}`;
      break;
    }
  }
  const response = command.response;
  return (
    <li class={`answer state-${command.state}`} data-command={command.name} data-state={command.state}>
      <div class="answer-head">
        <time>{formatClock(command.sentAt)}</time>
        <code>
          {command.name}
          {argText}
        </code>
        <span class={`outcome ${response?.status === 'error' ? 'is-error' : ''}`}>{outcome}</span>
      </div>
      {response?.status === 'error' ? (
        <p class="answer-error">
          <b>{response.error.code}</b>: {response.error.message}
        </p>
      ) : null}
      {response?.status === 'ok' ? <pre class="answer-data">{JSON.stringify(response.data, null, 2)}</pre> : null}
    </li>
  );
}

export function CommandPanel(props: { device: DeviceView; commands: CommandClient; now: number; connected: boolean }) {
  const { device, commands } = props;
  const streams = [...device.streams.keys()];
  const [stream, setStream] = useState('');
  const [count, setCount] = useState('');
  const [size, setSize] = useState('');
  /** The arguments as checked when Resize… was pressed: exactly what the confirmation names and sends. */
  const [confirming, setConfirming] = useState<{ stream: string; count?: number; size?: number } | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const chosenStream = stream !== '' && streams.includes(stream) ? stream : (streams[0] ?? '');
  const send = (name: PageCommand, args?: Record<string, unknown>) => void commands.send(device.id, name, args);

  const askResize = () => {
    const c = count.trim();
    const z = size.trim();
    const why = chosenStream === '' ? 'this device reports no stream' : resizeProblem(c, z);
    setProblem(why);
    setConfirming(
      why === null
        ? {
            stream: chosenStream,
            ...(c !== '' ? { count: wholeNumber(c) } : {}),
            ...(z !== '' ? { size: wholeNumber(z) } : {}),
          }
        : null,
    );
  };
  const history = commands.forDevice(device.id);

  return (
    <section class="panel commands" aria-label="commands">
      <h2>Commands</h2>
      {!props.connected ? <p class="warn">Not connected to the broker: commands cannot be sent.</p> : null}
      {device.online === false ? (
        <p class="warn">
          This device is offline. A command waits in its session on the broker and runs if it is back before the command
          expires.
        </p>
      ) : null}
      <div class="command-buttons">
        <button type="button" onClick={() => send('status')} disabled={!props.connected}>
          status
        </button>
        <button type="button" onClick={() => send('streams')} disabled={!props.connected}>
          streams
        </button>
        <button
          type="button"
          onClick={() => send('diag.dump', chosenStream ? { stream: chosenStream } : undefined)}
          disabled={!props.connected}
        >
          diag.dump
        </button>
      </div>
      <fieldset class="resize">
        <legend>pool.resize</legend>
        <label>
          stream{' '}
          <select value={chosenStream} onChange={(e) => setStream((e.currentTarget as HTMLSelectElement).value)}>
            {streams.map((id) => (
              <option key={id} value={id}>
                {id}
              </option>
            ))}
          </select>
        </label>
        <label>
          buffers{' '}
          <input
            name="count"
            inputMode="numeric"
            placeholder={`${POOL_COUNT.min}–${POOL_COUNT.max}`}
            value={count}
            onInput={(e) => setCount((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        <label>
          bytes each{' '}
          <input
            name="size"
            inputMode="numeric"
            placeholder={`n × ${TS_PACKET}`}
            value={size}
            onInput={(e) => setSize((e.currentTarget as HTMLInputElement).value)}
          />
        </label>
        <button type="button" onClick={askResize} disabled={!props.connected}>
          Resize…
        </button>
        {problem ? <p class="warn">{problem}</p> : null}
      </fieldset>
      {confirming ? (
        <div class="confirm" role="alertdialog" aria-label="confirm pool.resize">
          <p>
            Resize the pool of stream <b>{confirming.stream}</b> on <b>{device.id}</b> to{' '}
            {confirming.count !== undefined ? `${confirming.count} buffers` : 'the same count'} of{' '}
            {confirming.size !== undefined ? `${confirming.size} bytes` : 'the same size'}? The stream's pool is
            reopened: its data stops briefly, and the agent rolls back if the new pool cannot be set up.
          </p>
          <button
            type="button"
            class="danger"
            onClick={() => {
              setConfirming(null);
              send('pool.resize', confirming);
            }}
          >
            Resize the pool
          </button>
          <button type="button" onClick={() => setConfirming(null)}>
            Cancel
          </button>
        </div>
      ) : null}
      <ol class="answers" aria-label="answers">
        {history.map((command) => (
          <Answer key={command.id} command={command} now={props.now} />
        ))}
      </ol>
    </section>
  );
}
