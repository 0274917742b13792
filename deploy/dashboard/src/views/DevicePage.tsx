/** One device: its status, streams with their ledger and history, capabilities, events and commands. */
import type { CommandClient } from '../commands.js';
import type { DeviceView, FleetStore, StreamView } from '../fleet-store.js';
import { formatAge, formatBps, formatBytes, formatMs } from '../format.js';
import { CommandPanel } from './CommandPanel.js';
import { EventRow } from './EventFeed.js';
import { ConditionBadge, Sparkline } from './widgets.js';

function StreamCard(props: { stream: StreamView }) {
  const { stream } = props;
  const h = stream.health;
  const ledger = h ? { kernel: h.ledger[0], agent: h.ledger[1], decoder: h.ledger[2], consumer: h.ledger[3] } : null;
  const pool = h?.pool ?? ('pool' in stream.latest ? stream.latest.pool : undefined);
  return (
    <article class={`stream-card level-${h?.level ?? 'none'}`} data-stream={stream.id}>
      <header>
        <h3>{stream.id}</h3>
        <span class="state">{stream.state}</span>
        {h ? <span class={`level-badge lvl-${h.level}`}>{h.level}</span> : null}
        {h ? <span class="watermark">watermark {h.watermark}</span> : null}
      </header>
      {h?.reasons?.length ? (
        <ul class="reasons">
          {h.reasons.map((r) => (
            <li key={r}>{r}</li>
          ))}
        </ul>
      ) : null}
      <div class="stream-body">
        <div class="charts">
          <figure>
            <Sparkline values={stream.series.values('bps')} width={260} height={48} label={`${stream.id} throughput`} />
            <figcaption>
              throughput {h ? formatBps(h.bps) : '-'} (scale 0 to{' '}
              {formatBps(Math.max(0, ...stream.series.values('bps')))})
            </figcaption>
          </figure>
          <figure>
            <Sparkline
              values={stream.series.values('zeroQueuedMs')}
              width={260}
              height={48}
              className="zq"
              label={`${stream.id} time with zero buffers queued`}
            />
            <figcaption>zero buffers queued {h ? formatMs(h.zeroQueuedMs) : '-'} in the last window</figcaption>
          </figure>
        </div>
        <div>
          <dl class="facts">
            <dt>pool</dt>
            <dd>{pool ? `${pool[0]} × ${formatBytes(pool[1])}` : 'none'}</dd>
            {h ? (
              <>
                <dt>buffers/s</dt>
                <dd>{h.bufps}</dd>
                <dt>fill</dt>
                <dd>{h.fill === null ? '-' : h.fill.toFixed(2)}</dd>
                <dt>CC gaps</dt>
                <dd>
                  {h.ccGaps} in window, {h.ccGapsTotal} total
                </dd>
                <dt>loss</dt>
                <dd>{formatBytes(h.lossBytes)}</dd>
                <dt>sink p99</dt>
                <dd>{h.sinkP99Ms === null ? '-' : formatMs(h.sinkP99Ms)}</dd>
                <dt>failed ioctls</dt>
                <dd>{h.errors}</dd>
                <dt>errno events</dt>
                <dd>{stream.errnoEvents}</dd>
                <dt>exported fds</dt>
                <dd>{h.exportedFds}</dd>
                <dt>stuck buffers</dt>
                <dd>{h.stuck}</dd>
              </>
            ) : null}
          </dl>
          {ledger ? (
            <table class="ledger" aria-label={`${stream.id} buffer ledger`}>
              <caption>Who holds the buffers</caption>
              <thead>
                <tr>
                  <th>kernel</th>
                  <th>agent</th>
                  <th>decoder</th>
                  <th>consumer</th>
                </tr>
              </thead>
              <tbody>
                <tr>
                  <td>{ledger.kernel}</td>
                  <td>{ledger.agent}</td>
                  <td>{ledger.decoder}</td>
                  <td>{ledger.consumer}</td>
                </tr>
              </tbody>
            </table>
          ) : null}
        </div>
      </div>
    </article>
  );
}

function Capabilities(props: { device: DeviceView }) {
  const caps = props.device.capabilities;
  if (caps === null) return <p class="muted">No capabilities published yet.</p>;
  return (
    <div class="capabilities">
      <p>
        backend <b>{caps.backend}</b>, media path {caps.mediaPathUsable ? 'usable' : <b class="bad">not usable</b>}
        {caps.problems.length > 0 ? `: ${caps.problems.join('; ')}` : ''}
      </p>
      <table>
        <caption>DVB adapters</caption>
        <thead>
          <tr>
            <th>adapter</th>
            <th>frontend</th>
            <th>demux mmap</th>
            <th>dvr mmap</th>
            <th>problems</th>
          </tr>
        </thead>
        <tbody>
          {caps.adapters.map((a) => (
            <tr key={a.adapter}>
              <td>{a.adapter}</td>
              <td>{a.frontend ?? '-'}</td>
              <td>{a.demuxMmap ? 'yes' : 'no'}</td>
              <td>{a.dvrMmap ? 'yes' : 'no'}</td>
              <td>{a.problems.join('; ')}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <table>
        <caption>Decoders</caption>
        <thead>
          <tr>
            <th>device</th>
            <th>name</th>
            <th>DMABUF import</th>
            <th>OUTPUT formats</th>
          </tr>
        </thead>
        <tbody>
          {caps.decoders.map((d) => (
            <tr key={d.path}>
              <td>{d.path}</td>
              <td>
                {d.name} ({d.driver})
              </td>
              <td>{d.supportsDmabufImport ? 'yes' : 'no'}</td>
              <td>{d.outputFormats.map((f) => f.fourcc).join(', ')}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function DevicePage(props: {
  deviceId: string;
  store: FleetStore;
  commands: CommandClient;
  now: number;
  connected: boolean;
  onBack: () => void;
}) {
  const device = props.store.devices.get(props.deviceId);
  if (device === undefined) {
    return (
      <main class="device-page">
        <button type="button" class="link" onClick={props.onBack}>
          ← all devices
        </button>
        <p>
          No device <b>{props.deviceId}</b> has reported{props.connected ? '' : ' (not connected to the broker)'}.
        </p>
      </main>
    );
  }
  const condition = props.store.condition(device, props.now);
  const status = device.status;
  const agent = device.agent;
  const events = props.store.deviceFeed(device.id, 50);
  return (
    <main class="device-page" data-device={device.id}>
      <button type="button" class="link back" onClick={props.onBack}>
        ← all devices
      </button>
      <header class="device-head">
        <h1>{device.id}</h1>
        <ConditionBadge condition={condition} />
        <span class="muted">
          {device.online === false ? 'offline' : 'online'}
          {device.statusAt !== null ? ` since ${formatAge(props.now - device.statusAt)}` : ''}
        </span>
      </header>
      <dl class="facts device-facts">
        <dt>agent</dt>
        <dd>{status?.version ?? '-'}</dd>
        <dt>started</dt>
        <dd>{status?.bootTime ?? '-'}</dd>
        <dt>config</dt>
        <dd title={status?.configDigest}>{status?.configDigest?.slice(0, 12) ?? '-'}</dd>
        <dt>telemetry</dt>
        <dd>
          {device.telemetryAt !== null ? formatAge(props.now - device.telemetryAt) : 'none yet'}
          {device.telemetryPeriodMs !== null ? `, every ${formatMs(device.telemetryPeriodMs)}` : ''}
        </dd>
        {agent ? (
          <>
            <dt>memory</dt>
            <dd>{formatBytes(agent.rssBytes)} resident</dd>
            <dt>open fds</dt>
            <dd>{agent.openFds < 0 ? '-' : agent.openFds}</dd>
            <dt>event loop</dt>
            <dd>p99 lag {formatMs(agent.eventLoopLagMs.p99)}</dd>
          </>
        ) : null}
        <dt>errno events</dt>
        <dd>
          {device.errnoTotal === 0
            ? 'none'
            : [...device.errnoCounts.entries()].map(([errno, n]) => `${errno} ${n}`).join(', ')}
        </dd>
      </dl>
      <div class="device-grid">
        <div class="device-main">
          <section class="panel" aria-label="streams">
            <h2>Streams</h2>
            {device.streams.size === 0 ? <p class="muted">No stream reported yet.</p> : null}
            {[...device.streams.values()].map((s) => (
              <StreamCard key={s.id} stream={s} />
            ))}
          </section>
          <section class="panel" aria-label="capabilities">
            <h2>Capabilities</h2>
            <Capabilities device={device} />
          </section>
        </div>
        <div class="device-side">
          <CommandPanel
            key={device.id}
            device={device}
            commands={props.commands}
            now={props.now}
            connected={props.connected}
          />
          <section class="panel" aria-label="device events">
            <h2>Events</h2>
            <div class="device-events">
              {events.length === 0 ? <p class="muted">No event from this device since the page opened.</p> : null}
              {events.map((entry) => (
                <EventRow key={entry.seq} entry={entry} showDevice={false} />
              ))}
            </div>
          </section>
        </div>
      </div>
    </main>
  );
}
