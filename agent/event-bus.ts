/**
 * The typed event bus every module talks through. Each event maps to one
 * argument tuple; listeners are filed under their owner object (not its
 * class name: the agent runs many instances of one class) so a module's
 * stop() removes exactly its own listeners. A throwing listener is logged
 * and the others still run.
 */
import type { AgentConfig } from './config/types.js';
import type { ErrnoEvent } from './diagnosis/types.js';
import type { AgentHealth, StreamHealth } from './health/types.js';
import type { StreamStateChange } from './streams/types.js';

export interface AgentEvents {
  streamState: [StreamStateChange];
  streamHealth: [StreamHealth];
  agentHealth: [AgentHealth];
  /** A failed or prevented call, diagnosed; coalesced per window. */
  errnoEvent: [ErrnoEvent];
  /** Something the data path noticed that is not an error (pump notes: decoder-gone, demux-poll-spin, ...). */
  streamNote: [{ stream: string; what: string; detail: string; atMs: number }];
  /** A resize attempt finished: applied, or rolled back with the reason. */
  poolResized: [
    {
      stream: string;
      from: { count: number; size: number };
      to: { count: number; size: number };
      outcome: 'applied' | 'rolled-back';
      reason: string;
    },
  ];
  configReloaded: [{ config: AgentConfig; changed: string[] }];
}

export type AgentEventName = keyof AgentEvents;
type Listener<E extends AgentEventName> = (...args: AgentEvents[E]) => void;

export type ListenerErrorReporter = (event: AgentEventName, error: unknown) => void;

export class EventBus {
  private readonly listeners = new Map<AgentEventName, Array<{ owner: object; fn: Listener<AgentEventName> }>>();

  constructor(private readonly onListenerError: ListenerErrorReporter = () => {}) {}

  on<E extends AgentEventName>(event: E, owner: object, fn: Listener<E>): void {
    let list = this.listeners.get(event);
    if (!list) {
      list = [];
      this.listeners.set(event, list);
    }
    list.push({ owner, fn: fn as unknown as Listener<AgentEventName> });
  }

  emit<E extends AgentEventName>(event: E, ...args: AgentEvents[E]): void {
    const list = this.listeners.get(event);
    if (!list) return;
    // A copy: a listener may remove listeners while we iterate.
    for (const { fn } of [...list]) {
      try {
        (fn as unknown as Listener<E>)(...args);
      } catch (err) {
        this.onListenerError(event, err);
      }
    }
  }

  removeListeners(owner: object): void {
    for (const [event, list] of this.listeners) {
      const kept = list.filter((l) => l.owner !== owner);
      if (kept.length) this.listeners.set(event, kept);
      else this.listeners.delete(event);
    }
  }

  listenerCount(event: AgentEventName): number {
    return this.listeners.get(event)?.length ?? 0;
  }
}
