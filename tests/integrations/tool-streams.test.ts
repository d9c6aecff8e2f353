// Tools that return a generator (the AI SDK's streaming tools) or a stream: the call lasts while
// the generator is read and its result is the last value; a stream read elsewhere has no known
// result (hashing it would give the same `{}` every call: a false "stuck"). Through the real SDK,
// the real exporter and a real collector; the AI SDK case through the real `ai` package.
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, stepCountIs, tool } from 'ai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { onToolCall, traceTool, valueHash, withSession, wrapTools, type ToolCallRecord } from '../../instrumentation/src/api.js';
import { aiSdkTelemetry } from '../../instrumentation/src/integrations/ai-sdk.js';
import { fakeApi, startPipeline, type Pipeline } from './helpers.js';

let p: Pipeline;
beforeAll(async () => {
  p = await startPipeline('stream-tools');
});
afterAll(async () => {
  await p?.close();
});

interface Row { tool: string; span_id: string; parent_span_id: string; status: string; error_type: string; has_result: number; result_hash: string; duration_ms: number }
async function rowsOf(session: string): Promise<Row[]> {
  await p.landed();
  return p.tc.rows<Row>(
    `SELECT tool, span_id, parent_span_id, status, error_type, has_result, toString(result_hash) AS result_hash, duration_ns / 1e6 AS duration_ms
     FROM agent_tool_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
}
/** The collector's UInt64 of a 16-hex-digit hash (little-endian, as the schema reads it). */
const stored = (hex: string) => BigInt.asUintN(64, Buffer.from(hex, 'hex').readBigUInt64LE()).toString();

const lookup = traceTool('lookup', async (q: string) => ({ q, hits: 3 }));

describe('tools that return generators and streams', () => {
  it('an async generator: the call lasts until it is read, its result is the last value, tools it calls nest under it', async () => {
    const search = traceTool('search', async function* (q: string) {
      yield { status: 'searching' };
      await sleep(40);
      yield await lookup(q);
      yield { status: 'done', q };
    });
    const session = `gen-async-${Date.now()}`;
    const seen: unknown[] = [];
    await withSession(session, async () => {
      for await (const v of search('loops')) seen.push(v);
    });
    expect(seen).toEqual([{ status: 'searching' }, { q: 'loops', hits: 3 }, { status: 'done', q: 'loops' }]);
    const rows = await rowsOf(session);
    const outer = rows.find((r) => r.tool === 'search')!;
    const inner = rows.find((r) => r.tool === 'lookup')!;
    expect(outer).toMatchObject({ status: 'ok', has_result: 1, result_hash: stored(valueHash({ status: 'done', q: 'loops' })) });
    expect(outer.duration_ms).toBeGreaterThanOrEqual(35);
    expect(inner.parent_span_id).toBe(outer.span_id);
  });

  it('a sync generator, a generator that throws, one stopped early, and a stream read elsewhere', async () => {
    const pages = traceTool('pages', function* (n: number) {
      for (let i = 1; i <= n; i++) yield { page: i };
    });
    const flaky = traceTool('flaky', async function* () {
      yield 1;
      throw new TypeError('connection reset');
    });
    const tail = traceTool('tail', async function* () {
      try {
        for (let i = 0; ; i++) yield i;
      } finally {
        cleanedUp = true;
      }
    });
    let cleanedUp = false;
    const download = traceTool('download', () => Readable.from(['a', 'b']));
    const session = `gen-kinds-${Date.now()}`;
    await withSession(session, async () => {
      expect([...(pages(3) as Iterable<unknown>)]).toEqual([{ page: 1 }, { page: 2 }, { page: 3 }]);
      await expect((async () => {
        for await (const _ of flaky()) void _;
      })()).rejects.toThrow('connection reset');
      for await (const i of tail()) if (i === 2) break;
      const stream = download();
      expect(stream).toBeInstanceOf(Readable); // returned as is
      stream.resume();
    });
    expect(cleanedUp).toBe(true); // break reached the tool's own generator
    const byTool = Object.fromEntries((await rowsOf(session)).map((r) => [r.tool, r]));
    expect(byTool.pages).toMatchObject({ status: 'ok', has_result: 1, result_hash: stored(valueHash({ page: 3 })) });
    expect(byTool.flaky).toMatchObject({ status: 'error', error_type: 'TypeError' });
    expect(byTool.tail).toMatchObject({ status: 'ok', has_result: 0 });
    expect(byTool.download).toMatchObject({ status: 'ok', has_result: 0 });
  });

  it('observers (the loop guard) see a stream\'s result as unknown, not as the same result every time', async () => {
    const records: ToolCallRecord[] = [];
    const off = onToolCall((r) => records.push(r));
    try {
      const download = traceTool('download', () => Readable.from(['x']));
      withSession(`gen-observed-${Date.now()}`, () => {
        for (let i = 0; i < 3; i++) download().resume();
      });
    } finally {
      off();
    }
    expect(records.map((r) => [r.tool, r.status, r.resultHash])).toEqual([['download', 'ok', undefined], ['download', 'ok', undefined], ['download', 'ok', undefined]]);
  });

  it('an AI SDK streaming tool (execute is an async generator) under wrapTools: the result is the final output', async () => {
    const api = await fakeApi((req) => {
      const done = (req.body as { messages: Array<{ role: string }> }).messages.some((m) => m.role === 'tool');
      const usage = { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 };
      return done
        ? { json: { id: 'c1', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'ok' } }], usage } }
        : { json: { id: 'c0', object: 'chat.completion', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, finish_reason: 'tool_calls', message: { role: 'assistant', content: null, tool_calls: [
            { id: 'call_0', type: 'function', function: { name: 'weather', arguments: '{"city":"Oslo"}' } }] } }], usage } };
    });
    try {
      const weather = tool({
        description: 'weather',
        inputSchema: z.object({ city: z.string() }),
        async *execute({ city }) {
          yield { status: 'loading' as const, city };
          await sleep(30);
          yield { status: 'ready' as const, city, celsius: 4 };
        },
      });
      const session = `gen-aisdk-${Date.now()}`;
      const provider = createOpenAI({ apiKey: 'test-key', baseURL: `${api.url}/v1` });
      const r = await withSession(session, () =>
        generateText({ model: provider.chat('gpt-4o-mini'), prompt: 'weather?', tools: wrapTools({ weather }), stopWhen: stepCountIs(3), experimental_telemetry: aiSdkTelemetry() }),
      );
      expect(r.text).toBe('ok');
      const rows = (await rowsOf(session)).filter((x) => x.tool === 'weather');
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ status: 'ok', has_result: 1, result_hash: stored(valueHash({ status: 'ready', city: 'Oslo', celsius: 4 })) });
      expect(rows[0]!.duration_ms).toBeGreaterThanOrEqual(25);
    } finally {
      await api.close();
    }
  });
});
