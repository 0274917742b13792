/**
 * The per-stream state machine: which transitions are legal, and a small
 * holder that applies them and tells listeners. The supervisor decides
 * *when* to move; this file only guarantees it never moves somewhere that
 * makes no sense (streaming straight from closed, say), so a bug shows up as
 * an exception in tests instead of a wrong state on a dashboard.
 *
 *   closed ─► opening ─► configuring ─► allocating ─► streaming ◄─► degraded
 *               ▲  │           │             │            │            │
 *               │  └───────────┴─────┬───────┴────────────┴────────────┘
 *               │                    ▼                   (stop, resize, restart)
 *               ├──────────────── draining ─► closed
 *               └── failed ◄── (any step that fails; retried with backoff)
 */
import type { StreamState, StreamStateChange } from './types.js';

const TRANSITIONS: Record<StreamState, readonly StreamState[]> = {
  closed: ['opening'],
  // opening stays put while a missing device is waited for (a self-transition is not a change).
  opening: ['configuring', 'failed', 'draining', 'closed'],
  configuring: ['allocating', 'failed', 'draining'],
  // degraded straight away: up, but without its decoder (not there yet).
  allocating: ['streaming', 'degraded', 'failed', 'draining'],
  streaming: ['degraded', 'draining', 'failed'],
  degraded: ['streaming', 'draining', 'failed'],
  // draining ends closed (stop) or opening again (resize, restart).
  draining: ['closed', 'opening', 'failed'],
  failed: ['opening', 'draining', 'closed'],
};

export function canTransition(from: StreamState, to: StreamState): boolean {
  return TRANSITIONS[from].includes(to);
}

export class IllegalTransitionError extends Error {
  constructor(
    readonly stream: string,
    readonly from: StreamState,
    readonly to: StreamState,
  ) {
    super(`stream ${stream}: illegal transition ${from} -> ${to}`);
    this.name = 'IllegalTransitionError';
  }
}

export class StreamStateMachine {
  private current: StreamState = 'closed';
  private currentReason = 'not started';
  private since: number;

  constructor(
    readonly stream: string,
    private readonly onChange: (change: StreamStateChange) => void,
    private readonly now: () => number = Date.now,
  ) {
    this.since = now();
  }

  get state(): StreamState {
    return this.current;
  }

  get reason(): string {
    return this.currentReason;
  }

  get sinceMs(): number {
    return this.since;
  }

  /** Moves to `to`; a move to the current state only updates the reason (and reports it if it changed). */
  transition(to: StreamState, reason: string): void {
    const from = this.current;
    if (from === to) {
      if (reason === this.currentReason) return;
      this.currentReason = reason;
      this.onChange({ stream: this.stream, from, to, reason, atMs: this.now() });
      return;
    }
    if (!canTransition(from, to)) throw new IllegalTransitionError(this.stream, from, to);
    this.current = to;
    this.currentReason = reason;
    this.since = this.now();
    this.onChange({ stream: this.stream, from, to, reason, atMs: this.since });
  }

  /** Up: the pool is cycling (streaming or degraded). */
  get up(): boolean {
    return this.current === 'streaming' || this.current === 'degraded';
  }
}
