import { describe, expect, it } from 'vitest';
import { canTransition, IllegalTransitionError, StreamStateMachine } from '../../agent/streams/state-machine.js';
import { STREAM_STATES, type StreamStateChange } from '../../agent/streams/types.js';

function machine() {
  const changes: StreamStateChange[] = [];
  let clock = 1000;
  const m = new StreamStateMachine(
    'hd',
    (c) => changes.push(c),
    () => clock,
  );
  return { m, changes, tick: (ms: number) => (clock += ms) };
}

describe('the stream state machine', () => {
  it('walks the happy path and reports each transition with its reason and time', () => {
    const { m, changes, tick } = machine();
    expect(m.state).toBe('closed');
    m.transition('opening', 'start');
    tick(5);
    m.transition('configuring', 'filter');
    m.transition('allocating', 'DMX_REQBUFS 8 x 12032');
    m.transition('streaming', 'up');
    expect(m.up).toBe(true);
    expect(changes.map((c) => `${c.from}>${c.to}`)).toEqual([
      'closed>opening',
      'opening>configuring',
      'configuring>allocating',
      'allocating>streaming',
    ]);
    expect(changes[1]).toMatchObject({ stream: 'hd', reason: 'filter', atMs: 1005 });
    expect(m.sinceMs).toBe(1005);
  });

  it('refuses transitions that make no sense instead of reporting a wrong state', () => {
    const { m, changes } = machine();
    expect(() => m.transition('streaming', 'jump')).toThrow(IllegalTransitionError);
    expect(() => m.transition('allocating', 'jump')).toThrow(/closed -> allocating/);
    expect(m.state).toBe('closed');
    expect(changes).toHaveLength(0);
  });

  it('resize and restart go through draining and back to opening; stop ends closed', () => {
    const { m } = machine();
    for (const s of ['opening', 'configuring', 'allocating', 'streaming', 'degraded', 'draining', 'opening'] as const) {
      m.transition(s, s);
    }
    m.transition('failed', 'EBUSY');
    m.transition('opening', 'retry');
    m.transition('draining', 'stop');
    m.transition('closed', 'stop');
    expect(m.state).toBe('closed');
    expect(m.up).toBe(false);
  });

  it('a self-transition only updates the reason, and only reports a changed one', () => {
    const { m, changes } = machine();
    m.transition('opening', 'start');
    m.transition('opening', 'waiting for /dev/dvb/adapter0/demux0');
    m.transition('opening', 'waiting for /dev/dvb/adapter0/demux0');
    expect(changes).toHaveLength(2);
    expect(changes[1]).toMatchObject({
      from: 'opening',
      to: 'opening',
      reason: 'waiting for /dev/dvb/adapter0/demux0',
    });
    expect(m.reason).toBe('waiting for /dev/dvb/adapter0/demux0');
  });

  it('every state is reachable from closed and can get back to closed', () => {
    const reachable = (from: string, seen = new Set<string>()): Set<string> => {
      for (const to of STREAM_STATES) {
        if (!seen.has(to) && canTransition(from as never, to)) {
          seen.add(to);
          reachable(to, seen);
        }
      }
      return seen;
    };
    expect([...reachable('closed')].sort()).toEqual([...STREAM_STATES].sort());
    for (const s of STREAM_STATES) expect(reachable(s).has('closed')).toBe(true);
    // The kernel rules show up as missing edges: nothing streams without allocating first.
    expect(canTransition('opening', 'streaming')).toBe(false);
    expect(canTransition('configuring', 'streaming')).toBe(false);
    expect(canTransition('streaming', 'allocating')).toBe(false);
  });
});
