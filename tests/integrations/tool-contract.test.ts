// The contract of a traced tool: telemetry never breaks or changes the agent. The tool's own
// return value comes back (a promise subclass with its methods, a generator with its prototype),
// a rejection the agent handled stays handled, what was thrown is thrown (whatever it is), values
// that cannot be hashed are traced without a hash instead of failing the call, a loop guard's
// halt of an async tool is a rejected promise, and wrapTools keeps the tool set's shape. Real
// SDK, real exporter, real collector (an exploratory pass found each of these broken).
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { onToolCall, traceTool, withSession, wrapTools } from '../../instrumentation/src/api.js';
import { enableLoopGuard, LoopDetectedError } from '../../instrumentation/src/guard/index.js';
import { startPipeline, type Pipeline } from './helpers.js';

let p: Pipeline;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => void unhandled.push(reason);
beforeAll(async () => {
  p = await startPipeline('tool-contract');
  process.on('unhandledRejection', onUnhandled);
});
afterAll(async () => {
  process.off('unhandledRejection', onUnhandled);
  await p?.close();
});

interface Row { tool: string; status: string; error_type: string; error_message: string; args_hash: string; result_hash: string }
async function rowsOf(session: string): Promise<Row[]> {
  await p.landed();
  return p.tc.rows<Row>(
    `SELECT tool, status, error_type, error_message, toString(args_hash) AS args_hash, toString(result_hash) AS result_hash
     FROM agent_tool_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
}
const tick = () => new Promise((r) => setTimeout(r, 20));

describe('a traced tool returns and throws what the tool does', () => {
  it('the same promise object (a subclass keeps its methods); a rejection the tool handled stays handled', async () => {
    class ApiPromise<T> extends Promise<T> {
      withResponse() {
        return 'response';
      }
    }
    const made: Promise<unknown>[] = [];
    const fetchIt = traceTool('fetch_it', () => {
      const r = new ApiPromise((resolve) => resolve({ ok: true }));
      made.push(r);
      return r;
    });
    const notify = traceTool('notify', () => {
      const r = Promise.reject(new Error('webhook down'));
      r.catch(() => {}); // fire and forget: the tool handles its own failure
      return r;
    });
    await withSession('contract-promise', async () => {
      const r = fetchIt();
      expect(r).toBe(made[0]);
      expect((r as ApiPromise<unknown>).withResponse()).toBe('response');
      expect(await r).toEqual({ ok: true });
      void notify(); // not awaited
      await tick();
    });
    expect(unhandled).toEqual([]);
    const rows = await rowsOf('contract-promise');
    expect(rows.map((r) => `${r.tool}:${r.status}`)).toEqual(['fetch_it:ok', 'notify:error']);
  });

  it('throws exactly what the tool threw, also values whose name or message getters throw', async () => {
    const nullProto = Object.create(null) as object;
    const trap = new Error('x');
    Object.defineProperty(trap, 'message', { get() { throw new Error('getter'); } });
    const weird = { toString() { throw new Error('toString'); } };
    for (const thrown of [nullProto, trap, weird, 'plain text', null, 42]) {
      const t = traceTool('thrower', () => { throw thrown; });
      const at = traceTool('async_thrower', async () => { throw thrown; });
      let got: unknown = 'nothing';
      try {
        withSession('contract-throw', () => t());
      } catch (err) {
        got = err;
      }
      expect(got).toBe(thrown);
      await expect(withSession('contract-throw', () => at())).rejects.toBe(thrown);
    }
    const rows = await rowsOf('contract-throw');
    expect(rows).toHaveLength(12);
    expect(rows.every((r) => r.status === 'error')).toBe(true);
    expect(new Set(rows.map((r) => r.error_type))).toEqual(new Set(['object', 'Error', 'string', 'null', 'number']));
    expect(rows.find((r) => r.error_type === 'string')!.error_message).toBe('plain text');
  });

  it('arguments and results that cannot be hashed: the tool runs and its value comes back, traced without a hash', async () => {
    const getterBomb = { get boom() { throw new Error('no'); } };
    const toJsonBomb = { toJSON() { throw new Error('no'); } };
    const revoked = Proxy.revocable({}, {});
    revoked.revoke();
    let deep: object = {};
    for (let i = 0; i < 100_000; i++) deep = { d: deep };
    // 40 levels of shared nodes: 2^40 paths if written out in full
    let dag: object = { leaf: 1 };
    for (let i = 0; i < 40; i++) dag = { a: dag, b: dag };
    let ran = 0;
    const echo = traceTool('echo', (v: unknown) => {
      ran++;
      return v;
    });
    withSession('contract-hash', () => {
      for (const v of [getterBomb, toJsonBomb, revoked.proxy, deep, dag]) expect(echo(v)).toBe(v);
    });
    expect(ran).toBe(5);
    const rows = await rowsOf('contract-hash');
    expect(rows).toHaveLength(5);
    expect(rows.every((r) => r.status === 'ok')).toBe(true);
    // each unhashable value gets a hash of its own: never taken for a repeat
    expect(new Set(rows.map((r) => r.args_hash)).size).toBe(5);
  });

  it('a generator comes back with its prototype and properties; a function keeps its properties and arity', async () => {
    function* counter() {
      yield 1;
      return 2;
    }
    const gen = traceTool('gen', () => Object.assign(counter(), { label: 'c' }));
    const g = withSession('contract-shape', () => gen());
    expect(Object.prototype.toString.call(g)).toBe('[object Generator]');
    expect(g).toBeInstanceOf(counter);
    expect((g as unknown as { label: string }).label).toBe('c');
    expect([...g]).toEqual([1]);
    const described = Object.assign((a: number, b: number) => a + b, { description: 'adds', schema: { type: 'object' } });
    const t = traceTool('add', described);
    expect(t.length).toBe(2);
    expect((t as unknown as { description: string }).description).toBe('adds');
    expect((t as unknown as { schema: object }).schema).toEqual({ type: 'object' });
  });
});

describe('the loop guard', () => {
  it("halts an async tool with a rejected promise the agent's .catch sees", async () => {
    const guard = enableLoopGuard({ policy: 'halt', log: () => {} });
    try {
      const write = traceTool('write_file', async (a: { path: string }) => ({ wrote: a.path }));
      const caught: unknown[] = [];
      await withSession('contract-halt', async () => {
        for (let i = 0; i < 8; i++) await write({ path: 'a.ts' }).catch((err: unknown) => void caught.push(err));
      });
      expect(caught.length).toBeGreaterThan(0);
      expect(caught[0]).toBeInstanceOf(LoopDetectedError);
      // a streaming tool (an async generator function) halted: still an async generator, which throws when read
      const poll = traceTool('poll', async function* (q: string) {
        yield q;
      });
      const halted: unknown[] = [];
      await withSession('contract-halt-gen', async () => {
        for (let i = 0; i < 8; i++) {
          try {
            for await (const v of poll('same')) void v;
          } catch (err) {
            halted.push(err);
          }
        }
      });
      expect(halted.length).toBeGreaterThan(0);
      expect(halted[0]).toBeInstanceOf(LoopDetectedError);
    } finally {
      guard.disable();
    }
  });
});

describe('wrapTools', () => {
  it('keeps the tool set and each tool: prototype methods, symbol and hidden members, every argument, `this`', async () => {
    class Toolkit {
      base = 10;
      inc(n: number) {
        return n + 1;
      }
    }
    const hidden = Symbol('hidden');
    const kit = new Toolkit();
    const seen: unknown[][] = [];
    const tool = {
      description: 'adds',
      secret: 7,
      execute(this: { secret: number }, input: { n: number }, options: { toolCallId: string }, extra: string) {
        seen.push([this.secret, options.toolCallId, extra]);
        return input.n + this.secret;
      },
    };
    const set = Object.defineProperties({ add: tool, double: (n: number) => n * 2 } as Record<string, unknown>, {
      hiddenTool: { value: (n: number) => n - 1, enumerable: false },
      [hidden]: { value: 'kept', enumerable: true },
    });
    const wrapped = wrapTools(set as never) as Record<PropertyKey, unknown>;
    const wrappedKit = wrapTools(kit as never) as unknown as Toolkit;
    const result = withSession('contract-wrap', () => {
      const add = wrapped.add as typeof tool;
      return [
        add.execute.call(add, { n: 1 }, { toolCallId: 'call-1' }, 'third'),
        (wrapped.double as (n: number) => number)(4),
        (wrapped.hiddenTool as (n: number) => number)(4),
        wrappedKit.inc(1),
      ];
    });
    expect(result).toEqual([8, 8, 3, 2]);
    expect(seen).toEqual([[7, 'call-1', 'third']]);
    expect((wrapped.add as { description: string }).description).toBe('adds');
    expect(wrapped[hidden]).toBe('kept');
    expect(wrappedKit).toBeInstanceOf(Toolkit);
    expect(wrappedKit.base).toBe(10);
    // a frozen tool and tool set (as some frameworks hand them out)
    const frozen = wrapTools(Object.freeze({ f: Object.freeze({ description: 'f', execute: (x: number) => x * 3 }) }));
    expect(withSession('contract-wrap', () => frozen.f.execute(2))).toBe(6);
    expect(frozen.f.description).toBe('f');
  });
});

describe('withSession', () => {
  it('wrapTools identifies a call by the arguments the tool declares, not the context a framework passes after them', async () => {
    const tools = wrapTools({
      write_file: async (path: string, content: string) => `${path}: ${content.length}`,
      read_file: async (input: { path: string }) => `contents of ${input.path}`,
    });
    await withSession('contract-declared', async () => {
      for (let i = 0; i < 3; i++) await tools.write_file('notes.txt', `draft ${i}`);
      // a runner or run manager after the input, new each time
      for (let i = 0; i < 3; i++) await (tools.read_file as (...a: unknown[]) => Promise<string>)({ path: 'a.ts' }, { conversation: [i] }, { runId: `r${i}` });
    });
    const rows = await rowsOf('contract-declared');
    const hashes = (tool: string) => new Set(rows.filter((r) => r.tool === tool).map((r) => r.args_hash));
    expect(hashes('write_file').size).toBe(3); // different contents: different calls
    expect(hashes('read_file').size).toBe(1); // the same input: the same call
  });

  it('takes a number as the id', async () => {
    const t = traceTool('numbered', () => 1);
    withSession(42 as unknown as string, () => t());
    expect((await rowsOf('42')).map((r) => r.tool)).toEqual(['numbered']);
  });

  it('an onToolCall observer that throws, or an async one that rejects, changes nothing for the call or the other observers; said once', async () => {
    const warned = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    const seen: string[] = [];
    const offs = [
      onToolCall(() => {
        throw new Error('meter down');
      }),
      onToolCall(async () => {
        throw new Error('async meter down');
      }),
      onToolCall((c) => void seen.push(c.tool)),
    ];
    const before = unhandled.length;
    try {
      const read = traceTool('read_file', async (path: string) => `contents of ${path}`);
      await withSession('observers-fail', async () => {
        expect(await read('a.ts')).toBe('contents of a.ts');
        expect(await read('b.ts')).toBe('contents of b.ts');
      });
      await new Promise((resolve) => setImmediate(resolve)); // the async observer's rejections settle
      expect(seen).toEqual(['read_file', 'read_file']);
      expect(unhandled.length).toBe(before);
      expect(warned.mock.calls.map((c) => String(c[0])).filter((w) => w.includes('observer'))).toEqual(['[loopwatch] an onToolCall observer failed (meter down): the tool call goes on']);
      expect((await rowsOf('observers-fail')).map((r) => r.status)).toEqual(['ok', 'ok']);
    } finally {
      for (const off of offs) off();
      warned.mockRestore();
    }
  });
});
