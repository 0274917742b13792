/**
 * Routers share their compiled validators: a fleet simulator builds thousands
 * of routers, and compiling the schemas again for each made a router cost
 * milliseconds and tens of KB (issue 6). Compilation is observed through
 * Ajv's own compile(), so these tests fail if a router compiles for itself.
 */
import { Ajv } from 'ajv';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type CommandAnswer,
  type CommandHandlers,
  CommandRouter,
  type CommandRouterOptions,
  compiledValidator,
} from '../../agent/mqtt/command-router.js';
import { COMMAND_ARGS_SCHEMAS, REQUEST_ENVELOPE_SCHEMA } from '../../agent/mqtt/command-schemas.js';

const HANDLERS: CommandHandlers = {
  status: () => 'up',
  'pool.resize': (args) => args,
  'telemetry.interval': (args) => args.ms,
};

function router(answers: CommandAnswer[], overrides: Partial<CommandRouterOptions> = {}): CommandRouter {
  return new CommandRouter({
    handlers: HANDLERS,
    respond: (_target, answer) => answers.push(answer),
    onRejected: () => {},
    defaultResponseTopic: (name) => `stb/box/response/${name}`,
    ...overrides,
  });
}

/** Counts Ajv compilations from now on (compile() lives on Ajv's base class). */
function spyOnCompile() {
  return vi.spyOn(Object.getPrototypeOf(Ajv.prototype) as Ajv, 'compile');
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('CommandRouter: validators compiled once per process', () => {
  it('a second router with the same schemas compiles nothing', () => {
    router([]);
    const compile = spyOnCompile();
    router([]);
    router([]);
    expect(compile).not.toHaveBeenCalled();
  });

  it('the spy sees a compilation: a schema object not seen before is compiled exactly once', () => {
    // Without this, the test above would also pass if compile() were not observed at all.
    const compile = spyOnCompile();
    const argsSchemas = { ...COMMAND_ARGS_SCHEMAS, status: { type: 'object', additionalProperties: false } };
    router([], { argsSchemas });
    router([], { argsSchemas });
    expect(compile).toHaveBeenCalledTimes(1);
    expect(compile).toHaveBeenCalledWith(argsSchemas.status);
  });

  it('routers use the very same validator functions', () => {
    const envelope = compiledValidator(REQUEST_ENVELOPE_SCHEMA);
    expect(compiledValidator(REQUEST_ENVELOPE_SCHEMA)).toBe(envelope);
    expect(compiledValidator(COMMAND_ARGS_SCHEMAS['pool.resize'])).toBe(
      compiledValidator(COMMAND_ARGS_SCHEMAS['pool.resize']),
    );
    expect(compiledValidator(COMMAND_ARGS_SCHEMAS.status)).not.toBe(envelope);
  });

  it('a shared validator leaves no state between routers: each refusal names its own error', async () => {
    const first: CommandAnswer[] = [];
    const second: CommandAnswer[] = [];
    const a = router(first);
    const b = router(second);
    await Promise.all([
      a.handle('pool.resize', Buffer.from(JSON.stringify({ id: 'a1', args: { stream: 'main', count: 1 } }))),
      b.handle('pool.resize', Buffer.from(JSON.stringify({ id: 'b1', args: { stream: 'main', colour: 1 } }))),
      a.handle('telemetry.interval', Buffer.from(JSON.stringify({ id: 'a2', args: { ms: 5000 } }))),
    ]);
    expect(first).toEqual([
      {
        id: 'a1',
        status: 'error',
        error: { code: 'invalid-args', message: expect.stringMatching(/^args\/count must be >= \d+$/) },
      },
      { id: 'a2', status: 'ok', data: 5000 },
    ]);
    expect(second).toEqual([
      {
        id: 'b1',
        status: 'error',
        error: { code: 'invalid-args', message: 'args must not have the property "colour"' },
      },
    ]);
  });
});
