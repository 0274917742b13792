/** Small pieces the views share: the error guard, the virtual list, the sparkline, the condition badge. */
import type { ComponentChildren } from 'preact';
import { useEffect, useErrorBoundary, useRef, useState } from 'preact/hooks';
import type { Condition } from '../fleet-store.js';

/**
 * A scrolling list that renders only the rows in view (plus a few either
 * side), whatever the number of items: a thousand devices cost the DOM what
 * twenty do. Rows have one fixed height.
 */
export function VirtualList<T>(props: {
  items: readonly T[];
  rowHeight: number;
  renderRow: (item: T, index: number) => ComponentChildren;
  rowKey: (item: T) => string | number;
  className?: string;
  label: string;
  empty?: ComponentChildren;
}) {
  const { items, rowHeight, renderRow, rowKey } = props;
  const viewport = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(600);

  useEffect(() => {
    const element = viewport.current;
    if (!element) return;
    const measure = () => setHeight(element.clientHeight);
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(element);
    return () => observer.disconnect();
  }, []);

  const overscan = 4;
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - overscan);
  const last = Math.min(items.length, Math.ceil((scrollTop + height) / rowHeight) + overscan);
  const rows: ComponentChildren[] = [];
  for (let i = first; i < last; i++) {
    const item = items[i]!;
    rows.push(
      <li key={rowKey(item)} class="vrow" style={{ top: `${i * rowHeight}px`, height: `${rowHeight}px` }}>
        {renderRow(item, i)}
      </li>,
    );
  }
  return (
    <div
      ref={viewport}
      class={`vlist ${props.className ?? ''}`}
      data-total={items.length}
      onScroll={(e) => setScrollTop((e.currentTarget as HTMLDivElement).scrollTop)}
    >
      {items.length === 0 && props.empty !== undefined ? <div class="vlist-empty">{props.empty}</div> : null}
      <ul class="vlist-space" aria-label={props.label} style={{ height: `${items.length * rowHeight}px` }}>
        {rows}
      </ul>
    </div>
  );
}

/** A line over the kept points, scaled to its own maximum. */
export function Sparkline(props: {
  values: readonly number[];
  width: number;
  height: number;
  className?: string;
  label: string;
}) {
  const { values, width, height } = props;
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const points = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 1 - (v / max) * (height - 2)).toFixed(1)}`);
  return (
    <svg
      class={`spark ${props.className ?? ''}`}
      width={width}
      height={height}
      viewBox={`0 0 ${width} ${height}`}
      role="img"
      aria-label={props.label}
    >
      <rect class="spark-bg" x="0" y="0" width={width} height={height} />
      {values.length > 1 ? <polyline points={points.join(' ')} /> : null}
    </svg>
  );
}

export const CONDITION_LABELS: Record<Condition, string> = {
  offline: 'offline',
  critical: 'critical',
  silent: 'silent',
  degraded: 'degraded',
  ok: 'ok',
  unknown: 'no data',
};

export function ConditionBadge(props: { condition: Condition }) {
  return (
    <span class={`badge cond-${props.condition}`} data-condition={props.condition}>
      {CONDITION_LABELS[props.condition]}
    </span>
  );
}

/**
 * Whatever a device sent that the contract allows but a view cannot draw
 * breaks only its own part of the page, which says so; the rest goes on.
 */
export function Guard(props: { what: string; children: ComponentChildren }) {
  const [error] = useErrorBoundary();
  if (error) {
    const message = error instanceof Error ? error.message : String(error);
    return <div class="guard-error">{`${props.what} cannot be shown: ${message}`}</div>;
  }
  return <>{props.children}</>;
}
