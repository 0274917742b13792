/** The fleet at a glance: one row per device, worst first, only the visible rows in the DOM. */
import { CONDITIONS, type Condition, type DeviceView, type FleetStore } from '../fleet-store.js';
import { formatAge, formatBps, formatMs } from '../format.js';
import { ConditionBadge, Guard, Sparkline, VirtualList } from './widgets.js';

export type SortKey = 'condition' | 'id' | 'errno';

export interface ListFilter {
  text: string;
  condition: Condition | 'problems' | 'all';
  sort: SortKey;
}

export const ROW_HEIGHT = 52;
/** Streams shown inline in a row; a receiver has one or two. */
const INLINE_STREAMS = 2;

interface Row {
  device: DeviceView;
  condition: Condition;
}

const RANK = new Map<Condition, number>(CONDITIONS.map((c, i) => [c, i]));
const PROBLEMS = new Set<Condition>(['offline', 'critical', 'silent', 'degraded', 'unknown']);

export function visibleRows(store: FleetStore, filter: ListFilter, now: number): Row[] {
  const text = filter.text.trim().toLowerCase();
  const rows: Row[] = [];
  for (const device of store.devices.values()) {
    if (text !== '' && !device.id.toLowerCase().includes(text)) continue;
    const condition = store.condition(device, now);
    if (filter.condition === 'problems' && !PROBLEMS.has(condition)) continue;
    if (filter.condition !== 'problems' && filter.condition !== 'all' && filter.condition !== condition) continue;
    rows.push({ device, condition });
  }
  const byId = (a: Row, b: Row) => (a.device.id < b.device.id ? -1 : a.device.id > b.device.id ? 1 : 0);
  if (filter.sort === 'id') rows.sort(byId);
  else if (filter.sort === 'errno') rows.sort((a, b) => b.device.errnoTotal - a.device.errnoTotal || byId(a, b));
  else rows.sort((a, b) => RANK.get(a.condition)! - RANK.get(b.condition)! || byId(a, b));
  return rows;
}

function errnoSummary(device: DeviceView): string {
  if (device.errnoTotal === 0) return '0';
  return [...device.errnoCounts.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([errno, count]) => `${errno} ${count}`)
    .join(', ');
}

function DeviceRow(props: { row: Row; now: number; onOpen: (id: string) => void }) {
  const { device, condition } = props.row;
  const streams = [...device.streams.values()];
  let zeroQueuedMs = 0;
  let ccGaps = 0;
  let ccGapsTotal = 0;
  let failedIoctls = 0;
  for (const s of streams) {
    zeroQueuedMs += s.health?.zeroQueuedMs ?? 0;
    ccGaps += s.health?.ccGaps ?? 0;
    ccGapsTotal += s.health?.ccGapsTotal ?? 0;
    failedIoctls += s.health?.errors ?? 0;
  }
  const seen = Math.max(device.telemetryAt ?? 0, device.statusAt ?? 0);
  return (
    <button
      type="button"
      class={`device-row cond-row-${condition}`}
      data-device={device.id}
      data-condition={condition}
      onClick={() => props.onOpen(device.id)}
    >
      <span class="c-cond">
        <ConditionBadge condition={condition} />
      </span>
      <span class="c-id" title={device.id}>
        {device.id}
        {device.lastCause ? (
          <small class="cause" title={`${device.lastCause.errno}: ${device.lastCause.cause}`}>
            {device.lastCause.cause}
          </small>
        ) : null}
      </span>
      <span class="c-streams">
        {streams.slice(0, INLINE_STREAMS).map((s) => (
          <span class={`stream-chip level-${s.health?.level ?? 'none'}`} key={s.id} data-stream={s.id}>
            <b class="name">{s.id}</b>
            <span class="state">{s.state}</span>
            <span class="bps">{s.health ? formatBps(s.health.bps) : '-'}</span>
            <Sparkline values={s.series.values('bps')} width={72} height={16} label={`${s.id} throughput`} />
          </span>
        ))}
        {streams.length > INLINE_STREAMS ? <span class="more">+{streams.length - INLINE_STREAMS}</span> : null}
        {streams.length === 0 ? <span class="muted">no streams reported</span> : null}
      </span>
      <span class="c-num" title="time with zero buffers queued in the kernel, last window">
        {formatMs(zeroQueuedMs)}
      </span>
      <span class="c-num" title="continuity-counter gaps: last window / total">
        {ccGaps} / {ccGapsTotal}
      </span>
      <span
        class={`c-errno ${device.errnoTotal > 0 || failedIoctls > 0 ? 'has-errno' : ''}`}
        title="errno events seen since this page opened, by errno; failed data-path ioctls since the agent started"
      >
        {errnoSummary(device)}
        <small class="failed-ioctls">{failedIoctls} failed ioctls</small>
      </span>
      <span class="c-seen">{seen > 0 ? formatAge(props.now - seen) : '-'}</span>
    </button>
  );
}

export function DeviceList(props: { rows: Row[]; now: number; onOpen: (id: string) => void; connected: boolean }) {
  return (
    <div class="device-list">
      <div class="list-head" aria-hidden="true">
        <span class="c-cond">condition</span>
        <span class="c-id">device</span>
        <span class="c-streams">streams: throughput</span>
        <span class="c-num">zero queued</span>
        <span class="c-num">CC gaps</span>
        <span class="c-errno">errno events (seen)</span>
        <span class="c-seen">last seen</span>
      </div>
      <VirtualList
        label="devices"
        className="devices"
        items={props.rows}
        rowHeight={ROW_HEIGHT}
        rowKey={(row) => row.device.id}
        renderRow={(row) => (
          <Guard what={`device ${row.device.id}`}>
            <DeviceRow row={row} now={props.now} onOpen={props.onOpen} />
          </Guard>
        )}
        empty={props.connected ? 'No device matches, or none has reported yet.' : 'Waiting for the broker.'}
      />
    </div>
  );
}
