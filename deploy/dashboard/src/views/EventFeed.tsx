/** The event feed: newest first; errno events with their diagnosed cause and remedy. */
import type { FeedEntry } from '../fleet-store.js';
import { formatClock, formatDateTime, formatMs } from '../format.js';
import { Guard, VirtualList } from './widgets.js';

export const EVENT_ROW_HEIGHT = 76;

/** Headline, detail line and remedy line of one event. */
export function describeEvent(entry: FeedEntry): { title: string; detail: string; remedy: string | null } {
  switch (entry.kind) {
    case 'errno': {
      const e = entry.payload;
      const times = e.count > 1 ? ` ×${e.count}` : '';
      const where = [e.stream, e.device].filter((x) => x !== null).join(' · ');
      return {
        title: `${e.ioctl} ${e.errno}${times}${where ? ` (${where})` : ''}${e.prevented ? ', prevented' : ''}`,
        detail: e.summary,
        remedy: e.remedy,
      };
    }
    case 'stream-state': {
      const e = entry.payload;
      return { title: `stream ${e.stream}: ${e.from} → ${e.to}`, detail: e.reason ?? '', remedy: null };
    }
    case 'watermark': {
      const e = entry.payload;
      return {
        title: `stream ${e.stream}: watermark ${e.from === null ? '' : `${e.from} → `}${e.to}, ${e.level}`,
        detail: e.reasons.join('; '),
        remedy: null,
      };
    }
    case 'ledger': {
      const e = entry.payload;
      return {
        title: `stream ${e.stream}: buffer ledger`,
        detail: e.anomalies.map((a) => `buffer ${a.index} held by ${a.owner} for ${formatMs(a.heldMs)}`).join('; '),
        remedy: null,
      };
    }
    case 'command-rejected': {
      const e = entry.payload;
      return { title: `command ${e.name} rejected: ${e.code}`, detail: e.message, remedy: null };
    }
    case 'queue-overflow': {
      const e = entry.payload;
      return {
        title: `${e.dropped} events lost while offline`,
        detail: `${e.droppedBytes} bytes, since ${formatDateTime(e.since)}`,
        remedy: null,
      };
    }
  }
}

export function EventRow(props: { entry: FeedEntry; showDevice: boolean; onOpen?: (id: string) => void }) {
  const { entry } = props;
  const text = describeEvent(entry);
  const cause = entry.kind === 'errno' ? entry.payload.cause : null;
  return (
    <div class={`event kind-${entry.kind}`} data-kind={entry.kind} data-device={entry.deviceId}>
      <div class="event-head">
        <time
          title={
            entry.at === entry.receivedAt
              ? 'received'
              : `happened ${formatDateTime(entry.at)}, received ${formatDateTime(entry.receivedAt)}`
          }
        >
          {formatClock(entry.at)}
        </time>
        {props.showDevice ? (
          <button type="button" class="link" onClick={() => props.onOpen?.(entry.deviceId)}>
            {entry.deviceId}
          </button>
        ) : null}
        {cause ? (
          <span class="cause-code" data-cause={cause}>
            {cause}
          </span>
        ) : (
          <span class="kind">{entry.kind}</span>
        )}
      </div>
      <div class="event-title" title={text.title}>
        {text.title}
      </div>
      <div class="event-detail" title={text.detail}>
        {text.detail}
      </div>
      {text.remedy ? (
        <div class="event-remedy" title={text.remedy}>
          Remedy: {text.remedy}
        </div>
      ) : null}
    </div>
  );
}

export function EventFeed(props: { entries: FeedEntry[]; onOpen: (id: string) => void; errnoOnly: boolean }) {
  return (
    <VirtualList
      label="events"
      className="events"
      items={props.entries}
      rowHeight={EVENT_ROW_HEIGHT}
      rowKey={(e) => e.seq}
      renderRow={(entry) => (
        <Guard what={`event ${entry.seq}`}>
          <EventRow entry={entry} showDevice={true} onOpen={props.onOpen} />
        </Guard>
      )}
      empty={props.errnoOnly ? 'No errno event yet.' : 'No event yet.'}
    />
  );
}
