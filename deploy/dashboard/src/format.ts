/** How numbers read on the page. */

export function formatBps(bps: number): string {
  if (bps >= 1e9) return `${(bps / 1e9).toFixed(2)} Gb/s`;
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(1)} Mb/s`;
  if (bps >= 1e3) return `${(bps / 1e3).toFixed(0)} kb/s`;
  return `${Math.round(bps)} b/s`;
}

export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60_000)} min`;
}

/** "12 s ago", "3 min ago", "2 h ago". */
export function formatAge(ms: number): string {
  if (ms < 1500) return 'now';
  if (ms < 60_000) return `${Math.round(ms / 1000)} s ago`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min ago`;
  if (ms < 86_400_000) return `${Math.round(ms / 3_600_000)} h ago`;
  return `${Math.round(ms / 86_400_000)} d ago`;
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1 << 30) return `${(bytes / (1 << 30)).toFixed(1)} GiB`;
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  if (bytes >= 1 << 10) return `${(bytes / (1 << 10)).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/** Largest time a Date holds, ms either side of 1970; beyond it toISOString() throws. */
const DATE_LIMIT_MS = 8.64e15;

/** ISO 8601 of an epoch ms, or a placeholder for a time no Date can hold (a device may send any integer). */
export function formatDateTime(epochMs: number): string {
  if (!Number.isFinite(epochMs) || Math.abs(epochMs) > DATE_LIMIT_MS) return `(invalid time ${epochMs})`;
  return new Date(epochMs).toISOString();
}

/** hh:mm:ss (UTC) of an epoch ms. */
export function formatClock(epochMs: number): string {
  if (!Number.isFinite(epochMs) || Math.abs(epochMs) > DATE_LIMIT_MS) return '--:--:--';
  return new Date(epochMs).toISOString().slice(11, 19);
}
