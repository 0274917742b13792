/**
 * The page: header with the broker connection, the fleet summary, then
 * either the device list beside the event feed, or one device (#/device/<id>).
 * It redraws on a timer, twice a second at most and only when something
 * changed, however fast messages arrive.
 */
import { useEffect, useMemo, useState } from 'preact/hooks';
import { validateDeviceId } from '../../../../agent/mqtt/topics.js';
import type { CommandClient } from '../commands.js';
import type { BrokerConnection, ConnectionState } from '../connection.js';
import { capabilitiesTopic } from '../contract.js';
import type { Condition, FleetStore, FleetSummary } from '../fleet-store.js';
import { formatBps, formatMs } from '../format.js';
import type { ResolvedSettings } from '../settings.js';
import { DeviceList, type ListFilter, visibleRows } from './DeviceList.js';
import { DevicePage } from './DevicePage.js';
import { EventFeed } from './EventFeed.js';
import { SettingsDialog } from './SettingsDialog.js';
import { CONDITION_LABELS } from './widgets.js';

const REDRAW_MS = 500;
/** Ages on the page ("12 s ago") move even when nothing arrives. */
const AGE_REDRAW_MS = 2000;

interface Route {
  deviceId: string | null;
  /** Why the address names no device this page can show. */
  problem: string | null;
}

/** `#/device/<id>`, with the id checked by the agent's own rule before it goes into any topic. */
function routeFromHash(hash: string): Route {
  const match = /^#\/device\/(.+)$/.exec(hash);
  if (!match) return { deviceId: null, problem: null };
  let id: string;
  try {
    id = decodeURIComponent(match[1]!);
  } catch {
    return { deviceId: null, problem: `the address names no device: ${match[1]} is not a valid escape` };
  }
  try {
    validateDeviceId(id);
  } catch (err) {
    return { deviceId: null, problem: err instanceof Error ? err.message : String(err) };
  }
  return { deviceId: id, problem: null };
}

function ConnectionBadge(props: { state: ConnectionState; source: string }) {
  const { state } = props;
  const label =
    state.phase === 'connected'
      ? `connected (MQTT ${state.protocolVersion === 5 ? '5' : '3.1.1'})`
      : state.phase === 'connecting'
        ? 'connecting…'
        : state.phase === 'refused'
          ? 'refused'
          : 'unreachable';
  return (
    <span class={`conn conn-${state.phase}`} data-phase={state.phase} title={`broker from ${props.source}`}>
      <span class="dot" /> {state.url} · {label}
    </span>
  );
}

/** Said plainly, at the top, whenever the page is not receiving. */
function ConnectionBanner(props: { state: ConnectionState; now: number }) {
  const { state } = props;
  if (state.phase === 'connected') return null;
  // The first attempt gets a moment before the page worries anyone.
  if (state.phase === 'connecting' && props.now - state.since < 3000) return null;
  const reason = state.lastError ? ` (${state.lastError})` : '';
  const text =
    state.phase === 'refused'
      ? `The broker at ${state.url} refused the dashboard${reason}. Check the user name, password or certificate in Settings.`
      : `Cannot reach the MQTT broker at ${state.url}${reason}. Retrying every few seconds (${state.failures} failed ${
          state.failures === 1 ? 'attempt' : 'attempts'
        } over ${formatMs(Math.max(0, props.now - state.since))}). What is shown is as last seen.`;
  return (
    <div class="banner" role="alert" data-phase={state.phase}>
      {text}
    </div>
  );
}

function SummaryBar(props: { summary: FleetSummary; filter: ListFilter; setFilter: (f: ListFilter) => void }) {
  const { summary, filter } = props;
  const chip = (condition: Condition) => (
    <button
      type="button"
      key={condition}
      class={`chip cond-${condition} ${filter.condition === condition ? 'active' : ''}`}
      data-summary={condition}
      onClick={() => props.setFilter({ ...filter, condition: filter.condition === condition ? 'all' : condition })}
    >
      <b>{summary.byCondition[condition]}</b> {CONDITION_LABELS[condition]}
    </button>
  );
  return (
    <section class="summary" aria-label="fleet summary">
      <button
        type="button"
        class={`chip ${filter.condition === 'all' ? 'active' : ''}`}
        data-summary="devices"
        onClick={() => props.setFilter({ ...filter, condition: 'all' })}
      >
        <b>{summary.devices}</b> devices
      </button>
      <span class="chip static" data-summary="online">
        <b>{summary.devices - summary.byCondition.offline}</b> online
      </span>
      {(['offline', 'critical', 'silent', 'degraded', 'ok'] as const).map(chip)}
      <span class="chip static" data-summary="errno">
        <b>{summary.errnoEvents}</b> errno events seen
      </span>
      <span class="chip static" data-summary="bps">
        <b>{formatBps(summary.bps)}</b> in all
      </span>
    </section>
  );
}

export function App(props: {
  store: FleetStore;
  commands: CommandClient;
  connection: BrokerConnection;
  settings: ResolvedSettings;
}) {
  const { store, commands, connection } = props;
  const [drawn, setDrawn] = useState({ store: -1, commands: -1, conn: connection.state, at: 0 });
  const [route, setRoute] = useState(() => routeFromHash(location.hash));
  const [filter, setFilter] = useState<ListFilter>({ text: '', condition: 'all', sort: 'condition' });
  const [showSettings, setShowSettings] = useState(false);
  const [errnoOnly, setErrnoOnly] = useState(false);

  useEffect(() => {
    const timer = setInterval(() => {
      setDrawn((d) => {
        const now = Date.now();
        const changed = d.store !== store.version || d.commands !== commands.version || d.conn !== connection.state;
        if (!changed && now - d.at < AGE_REDRAW_MS) return d;
        return { store: store.version, commands: commands.version, conn: connection.state, at: now };
      });
    }, REDRAW_MS);
    const onHash = () => setRoute(routeFromHash(location.hash));
    window.addEventListener('hashchange', onHash);
    return () => {
      clearInterval(timer);
      window.removeEventListener('hashchange', onHash);
    };
  }, [store, commands, connection]);

  // A device's capabilities are fetched (retained) when its page is first opened.
  const prefix = props.settings.settings.topicPrefix;
  useEffect(() => {
    if (route.deviceId !== null) void connection.subscribe(capabilitiesTopic(prefix, route.deviceId), 0);
  }, [route.deviceId, connection, prefix]);

  const state = drawn.conn;
  const connected = state.phase === 'connected';
  // While nothing can arrive, conditions are judged as of the moment the page lost the broker:
  // a quiet fleet is the page's problem then, not the devices'.
  const now = connected || state.phase === 'connecting' ? drawn.at || Date.now() : state.since;
  // `drawn` is the redraw signal: the store mutates in place, so its identity never changes.
  const summary = useMemo(() => store.summary(now), [drawn, store]);
  const rows = useMemo(() => visibleRows(store, filter, now), [drawn, filter, store]);
  const feed = useMemo(() => {
    const entries = errnoOnly ? store.feed.filter((e) => e.kind === 'errno') : [...store.feed];
    return entries.reverse();
  }, [drawn, errnoOnly, store]);
  const open = (id: string) => {
    location.hash = `#/device/${encodeURIComponent(id)}`;
  };

  return (
    <div class="app">
      <header class="top">
        <a class="brand" href="#/">
          dmx-agent fleet
        </a>
        <ConnectionBadge state={state} source={props.settings.source} />
        <button type="button" class="settings-button" onClick={() => setShowSettings(true)}>
          Settings
        </button>
      </header>
      <ConnectionBanner state={state} now={now} />
      {route.problem ? <div class="banner soft">{route.problem}</div> : null}
      {props.settings.problems.map((p) => (
        <div class="banner soft" key={p}>
          {p}
        </div>
      ))}
      <SummaryBar summary={summary} filter={filter} setFilter={setFilter} />
      {route.deviceId !== null ? (
        <DevicePage
          deviceId={route.deviceId}
          store={store}
          commands={commands}
          now={now}
          connected={connected}
          onBack={() => {
            location.hash = '#/';
          }}
        />
      ) : (
        <main class="overview">
          <section class="panel list-panel" aria-label="devices">
            <div class="toolbar">
              <input
                type="search"
                placeholder="Filter by device id"
                aria-label="filter by device id"
                value={filter.text}
                onInput={(e) => setFilter({ ...filter, text: (e.currentTarget as HTMLInputElement).value })}
              />
              <label>
                <input
                  type="checkbox"
                  checked={filter.condition === 'problems'}
                  onChange={(e) =>
                    setFilter({
                      ...filter,
                      condition: (e.currentTarget as HTMLInputElement).checked ? 'problems' : 'all',
                    })
                  }
                />{' '}
                problems only
              </label>
              <label>
                sort{' '}
                <select
                  value={filter.sort}
                  onChange={(e) =>
                    setFilter({ ...filter, sort: (e.currentTarget as HTMLSelectElement).value as ListFilter['sort'] })
                  }
                >
                  <option value="condition">worst first</option>
                  <option value="id">device id</option>
                  <option value="errno">most errno events</option>
                </select>
              </label>
              <span class="muted count" data-rows={rows.length}>
                {rows.length} shown
              </span>
            </div>
            <DeviceList rows={rows} now={now} onOpen={open} connected={connected} />
          </section>
          <section class="panel feed-panel" aria-label="event feed">
            <div class="toolbar">
              <h2>Events</h2>
              <label>
                <input
                  type="checkbox"
                  checked={errnoOnly}
                  onChange={(e) => setErrnoOnly((e.currentTarget as HTMLInputElement).checked)}
                />{' '}
                errno only
              </label>
            </div>
            <EventFeed entries={feed} onOpen={open} errnoOnly={errnoOnly} />
          </section>
        </main>
      )}
      <footer class="bottom">
        <span>
          {store.received} messages received
          {store.ignoredTotal > 0
            ? `; ${store.ignoredTotal} ignored as not in the contract (last: ${store.ignored.at(-1)?.topic}: ${
                store.ignored.at(-1)?.reason
              })`
            : ''}
        </span>
        <span>topic prefix {props.settings.settings.topicPrefix}</span>
      </footer>
      {showSettings ? <SettingsDialog resolved={props.settings} onClose={() => setShowSettings(false)} /> : null}
    </div>
  );
}
