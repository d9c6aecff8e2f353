// The guard and the collector together: an agent process halts its own loop; its spans travel
// over real OTLP/HTTP (protobuf) to a real collector; the SQL detectors find the same loop and
// ignore the call the guard stopped.
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import OpenAI from 'openai';
import { SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDetectors } from '../../collector/src/detect/run-detectors.js';
import { traceTool, withSession } from '../../instrumentation/src/api.js';
import { enableLoopGuard } from '../../instrumentation/src/guard/enable.js';
import { LoopDetectedError } from '../../instrumentation/src/guard/loop-guard.js';
import { SessionSpanProcessor } from '../../instrumentation/src/sdk.js';
import { LlmCallTap } from '../../instrumentation/src/llm-calls.js';
import { instrumentOpenAI } from '../../instrumentation/src/integrations/openai.js';
import { fakeApi } from '../integrations/helpers.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

let tc: TestCollector;
let provider: NodeTracerProvider;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
  provider = new NodeTracerProvider({
    spanProcessors: [new SessionSpanProcessor(), new LlmCallTap(), new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${tc.url}/v1/traces` }))],
  });
  provider.register();
});
afterAll(async () => {
  await provider?.shutdown();
  await tc?.close();
});

/** A chat completion reporting these tokens, asking for read_file or answering in text. */
function completion(asksForTool: boolean, promptTokens: number, completionTokens: number): object {
  return {
    id: 'c', object: 'chat.completion', created: 1, model: 'gpt-4o-mini-2024-07-18',
    choices: [{ index: 0, finish_reason: asksForTool ? 'tool_calls' : 'stop', message: asksForTool
      ? { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'read_file', arguments: '{"path":"a.ts"}' } }] }
      : { role: 'assistant', content: 'a long plan' } }],
    usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
  };
}

/**
 * An agent (a real OpenAI client against a fake API answering `reply(request body)`) running up
 * to 6 steps under a 1M-token budget with the guard halting: the steps begun, the halt, the
 * guard's runaway finding, and the runaway finding SQL stores for the session.
 */
async function underTokenBudget(
  session: string,
  reply: (body: string) => object,
  step: (ask: (content: string) => Promise<unknown>, readFile: (a: { path: string }) => Promise<unknown>, n: number) => Promise<void>,
) {
  const api = await fakeApi((req) => ({ json: reply(JSON.stringify(req.body)) }));
  const client = instrumentOpenAI(new OpenAI({ apiKey: 'test-key', baseURL: `${api.url}/v1`, maxRetries: 0 }));
  const guard = enableLoopGuard({ policy: 'halt', params: { budgetMaxTokens: 1_000_000 }, log: () => undefined });
  const ask = (content: string) => client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }] });
  const readFile = traceTool('read_file', async (a: { path: string }) => ({ text: `contents of ${a.path}` }));
  let steps = 0;
  let halted: LoopDetectedError | undefined;
  try {
    await withSession({ sessionId: session, agent: 'spender' }, async () => {
      for (steps = 1; steps <= 6; steps++) await step(ask, readFile, steps);
    });
  } catch (err) {
    if (err instanceof LoopDetectedError) halted = err;
    else throw err;
  } finally {
    guard.disable();
    await api.close();
  }
  const live = guard.guard.findings(session).find((f) => f.kind === 'runaway')!;
  await provider.forceFlush();
  await tc.collector.flush();
  const r = await runDetectors(tc.collector.store.client, { params: { budgetMaxTokens: 1_000_000 } });
  expect(r.errors).toEqual({});
  const [sql] = await tc.rows<{ details: string; wasted_calls: number; wasted_tokens: number; message: string }>(
    `SELECT details, wasted_calls, wasted_tokens, message FROM agent_findings FINAL WHERE session_id = {s:String} AND detector = 'runaway'`, { s: session });
  return { steps, halted, live, sql: sql! };
}

describe('LoopGuard halt + SQL detectors on the same session', () => {
  it('agree on the loop; the halted call is stored but not counted', async () => {
    const guard = enableLoopGuard({ policy: 'halt', log: () => undefined });
    let runs = 0;
    const search = traceTool('search_docs', async (q: string) => {
      runs++;
      return { hits: [], query: q };
    });
    let halted: LoopDetectedError | undefined;
    await withSession({ sessionId: 'guard-e2e', agent: 'doc-agent' }, async () => {
      try {
        for (let i = 0; i < 5; i++) await search('how to exit vim');
      } catch (err) {
        if (err instanceof LoopDetectedError) halted = err;
        else throw err;
      }
    });
    guard.disable();
    expect(runs).toBe(3);
    expect(halted?.finding.kind).toBe('stuck');
    await provider.forceFlush();
    await tc.collector.flush();

    const calls = await tc.rows<{ status: string; error_type: string }>(
      `SELECT status, error_type FROM agent_tool_calls FINAL WHERE session_id = 'guard-e2e' ORDER BY ts`);
    expect(calls.map((c) => c.error_type)).toEqual(['', '', '', 'LoopDetectedError']);

    const r = await runDetectors(tc.collector.store.client);
    expect(r.errors).toEqual({});
    const findings = await tc.rows<{ detector: string; first_span_id: string; last_span_id: string; repeats: number; agent: string }>(
      `SELECT detector, first_span_id, last_span_id, repeats, agent FROM agent_findings FINAL WHERE session_id = 'guard-e2e' ORDER BY detector`);
    expect(findings.map((f) => f.detector)).toEqual(['redundant', 'stuck']);
    const stuck = findings.find((f) => f.detector === 'stuck')!;
    expect(stuck.first_span_id).toBe(halted!.finding.firstSpanId);
    expect(stuck.last_span_id).toBe(halted!.finding.lastSpanId);
    expect(Number(stuck.repeats)).toBe(halted!.finding.repeats);
    expect(stuck.agent).toBe('doc-agent');
  });

  it('token budget: each tool call is charged with the LLM call before it (a real OpenAI client), the guard halts the session past the budget, and SQL finds the same', async () => {
    // every turn the model asks for a file and reports 400k tokens; a different file each turn,
    // a different text back: no loop but the spending
    const run = await underTokenBudget('guard-e2e-budget', () => completion(true, 300_000, 100_000), async (ask, readFile, n) => {
      await ask('next file');
      await readFile({ path: `src/${n}.ts` });
    });
    // 400k tokens a turn: 1.2M after the third tool call, so the fourth does not run
    expect(run.steps).toBe(4);
    expect(run.halted?.finding.kind).toBe('runaway');
    expect(run.halted?.finding.message).toMatch(/^Runaway session: tokens \(\d+ calls wasted; used 1200000 tokens of 1000000\)\.$/);
    expect(JSON.parse(run.sql.details)).toMatchObject({ reasons: 'tokens', session_tokens: '1200000', session_calls: '3' });
    expect(run.sql.message).toMatch(/^Runaway session: tokens \(\d+ calls wasted since .*; used 1200000 tokens of 1000000\)\.$/);
    expect(Number(run.sql.wasted_calls)).toBe(run.live.wastedCalls);
    expect(Number(run.sql.wasted_tokens)).toBe(run.live.wastedTokens);
  });

  it('token budget: the planning calls before each step count too (live and in SQL), not only the call that asked for the tool', async () => {
    // each step: a long planning call (300k tokens, no tool asked for), then a short one that asks for the file (10k)
    const run = await underTokenBudget(
      'guard-e2e-planning',
      (body) => (body.includes('plan the next step') ? completion(false, 250_000, 50_000) : completion(true, 9_000, 1_000)),
      async (ask, readFile, n) => {
        await ask('plan the next step');
        await ask('next file');
        await readFile({ path: `src/${n}.ts` });
      },
    );
    // 310k tokens a step: 1.24M after the fourth tool call, so the fifth does not run (charged
    // only the 10k that asked for each file, it never would)
    expect(run.steps).toBe(5);
    expect(run.halted?.finding.message).toMatch(/^Runaway session: tokens \(\d+ calls wasted; used 1240000 tokens of 1000000\)\.$/);
    expect(JSON.parse(run.sql.details)).toMatchObject({ reasons: 'tokens', session_tokens: '1240000', session_calls: '4' });
    expect(Number(run.sql.wasted_tokens)).toBe(run.live.wastedTokens);
  });

  it('an LLM call a tool makes is charged to that tool call (live and in SQL), not to the next tool call', async () => {
    // the planner's turn costs 1,000 tokens; the summarizer the summarize tool runs 60,000
    const api = await fakeApi((req) => {
      const planner = (req.body as { messages: { content: string }[] }).messages[0]!.content === 'plan';
      const tokens = planner ? 1_000 : 60_000;
      return { json: {
        id: 'c', object: 'chat.completion', created: 1, model: 'gpt-4o-mini-2024-07-18',
        choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'ok' } }],
        usage: { prompt_tokens: tokens, completion_tokens: 0, total_tokens: tokens },
      } };
    });
    const client = instrumentOpenAI(new OpenAI({ apiKey: 'test-key', baseURL: `${api.url}/v1`, maxRetries: 0 }));
    const guard = enableLoopGuard({ policy: 'warn', log: () => undefined });
    const summarize = traceTool('summarize', async (doc: string) => {
      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: `summarize ${doc}` }] });
      return `summary of ${doc}`;
    });
    const fetchPage = traceTool('fetch_page', async (url: string) => `page ${url}`);
    try {
      // the same turn three times: both calls redundant
      await withSession({ sessionId: 'guard-e2e-inner-llm', agent: 'reader' }, async () => {
        for (let turn = 0; turn < 3; turn++) {
          await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'plan' }] });
          await summarize('a');
          await fetchPage('a');
        }
      });
    } finally {
      guard.disable();
      await api.close();
    }
    // live, the turn's first call takes the planner's tokens; summarize also its summarizer's
    const wasted = (f: { kind: string; tools: string[]; wastedTokens: number }[]) =>
      Object.fromEntries(f.filter((x) => x.kind === 'redundant').map((x) => [x.tools.join(), x.wastedTokens]));
    expect(wasted(guard.guard.findings('guard-e2e-inner-llm'))).toEqual({ summarize: 2 * 61_000, fetch_page: 0 });

    await provider.forceFlush();
    await tc.collector.flush();
    const r = await runDetectors(tc.collector.store.client);
    expect(r.errors).toEqual({});
    // in SQL each turn is split between its two calls; summarize also spent its own 60,000 each time
    const sql = await tc.rows<{ tools: string[]; wasted_tokens: number }>(
      `SELECT tools, wasted_tokens FROM agent_findings FINAL WHERE session_id = 'guard-e2e-inner-llm' AND detector = 'redundant'`);
    expect(Object.fromEntries(sql.map((x) => [x.tools.join(), Number(x.wasted_tokens)]))).toEqual({ summarize: 2 * 60_500, fetch_page: 2 * 500 });
  });

  it('live: a nested tool call takes no share of the turn (build does, not the compile it runs), and a chat\'s pause within a turn is not wall time', async () => {
    const tracer = provider.getTracer('guard-e2e');
    // an LLM call of a GenAI instrumentation, as its span records it
    const llm = (tokens: number, ms: number) => {
      const span = tracer.startSpan('chat gpt-4o', { attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': tokens, 'gen_ai.usage.output_tokens': 0 } });
      return sleep(ms).then(() => span.end());
    };
    // wall time 1 s, idle gap 0.15 s: an exchange is ~0.1 s of work, the person's reply 0.3 s
    const guard = enableLoopGuard({ policy: 'warn', log: () => undefined, params: { budgetMaxWallTimeS: 1, budgetIdleGapS: 0.15, budgetMaxCalls: 0 } });
    const compile = traceTool('compile', async () => 'compiled');
    const build = traceTool('build', async () => `${await compile()} and linked`);
    try {
      await withSession({ sessionId: 'guard-e2e-chat-nested', agent: 'chat' }, async () => {
        for (let exchange = 0; exchange < 5; exchange++) {
          await llm(1_000, 10); // plans
          await build();
          await llm(500, 10); // answers
          await sleep(300); // the person replies
        }
      });
    } finally {
      guard.disable();
    }
    const findings = guard.guard.findings('guard-e2e-chat-nested');
    // the turn after the first (answer, reply, planning) went to build, the call the model asked for
    expect(Object.fromEntries(findings.filter((f) => f.kind === 'redundant').map((f) => [f.tools.join(), f.wastedTokens]))).toEqual({ build: 4 * 1_500, compile: 0 });
    // 5 x 0.3 s of replies would blow the 1 s: they are pauses
    expect(findings.filter((f) => f.kind === 'runaway')).toEqual([]);
  });

  it('live: a sub-agent with a session of its own, run by another session\'s tool call, keeps its LLM calls (the delegate is not charged with them)', async () => {
    const tracer = provider.getTracer('guard-e2e');
    const guard = enableLoopGuard({ policy: 'warn', log: () => undefined, params: { budgetMaxTokens: 10_000 } });
    const search = traceTool('search', async (q: string) => `results for ${q}`);
    const delegate = traceTool('delegate', async (task: string) =>
      withSession({ sessionId: 'guard-e2e-sub-agent', agent: 'researcher' }, async () => {
        const span = tracer.startSpan('chat gpt-4o', { attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': 20_000, 'gen_ai.usage.output_tokens': 0 } });
        span.end();
        return search(task);
      }));
    try {
      await withSession({ sessionId: 'guard-e2e-parent', agent: 'planner' }, () => delegate('find it'));
    } finally {
      guard.disable();
    }
    const runaway = (session: string) => guard.guard.findings(session).filter((f) => f.kind === 'runaway').map((f) => f.wastedTokens);
    // the sub-agent's 20,000 tokens are its search call's: over its budget; the planner's delegate spent nothing of its own
    expect({ sub: runaway('guard-e2e-sub-agent').length, parent: runaway('guard-e2e-parent') }).toEqual({ sub: 1, parent: [] });
  });

  it('a recursive tool chain: the live guard sees its depth (children end before their parents) and agrees with SQL', async () => {
    const seen: string[] = [];
    const guard = enableLoopGuard({ policy: 'warn', params: { budgetMaxToolDepth: 3 }, log: () => undefined, onLoop: (f) => seen.push(`${f.kind}:${f.message}`) });
    // a planner tool that delegates to itself, six levels deep (distinct arguments: no other rule fires)
    const plan: (level: number) => Promise<string> = traceTool('plan_step', async (level: number) => (level < 6 ? `${level}>${await plan(level + 1)}` : 'leaf'));
    await withSession({ sessionId: 'guard-e2e-nested', agent: 'planner' }, () => plan(1));
    guard.disable();
    const runaway = guard.guard.findings('guard-e2e-nested').filter((f) => f.kind === 'runaway');
    expect(runaway).toHaveLength(1);
    expect(runaway[0]!.message).toMatch(/depth/);
    // the calls nested deeper than 3: levels 4, 5 and 6
    expect(runaway[0]!.wastedCalls).toBe(3);
    expect(seen.filter((x) => x.startsWith('runaway')).length).toBe(1);

    await provider.forceFlush();
    await tc.collector.flush();
    const r = await runDetectors(tc.collector.store.client, { params: { budgetMaxToolDepth: 3 } });
    expect(r.errors).toEqual({});
    const [sql] = await tc.rows<{ wasted_calls: number; details: string }>(
      `SELECT wasted_calls, details FROM agent_findings FINAL WHERE session_id = 'guard-e2e-nested' AND detector = 'runaway'`);
    expect(JSON.parse(sql!.details).reasons).toBe('depth');
    expect(JSON.parse(sql!.details).max_tool_depth).toBe('6');
    expect(Number(sql!.wasted_calls)).toBe(runaway[0]!.wastedCalls);
  });
});

describe('the guard names the agent that looped', () => {
  it('in a session sub-agents share: the log line, the span event, onLoop and the halt error name the looping agent', async () => {
    const lines: string[] = [];
    const seen: (string | undefined)[] = [];
    const session = `shared-${Date.now()}`;
    const search = traceTool('search', async (a: { q: string }) => ({ hits: [`about ${a.q}`] }));
    const read = traceTool('read_file', async (a: { path: string }) => ({ text: `contents of ${a.path}` }));
    const warnGuard = enableLoopGuard({ policy: 'warn', log: (m) => lines.push(m), onLoop: (f) => seen.push(f.agent) });
    try {
      await withSession({ sessionId: session, agent: 'reader' }, async () => {
        for (const path of ['a.ts', 'b.ts']) await read({ path });
      });
      await withSession({ sessionId: session, agent: 'looper' }, async () => {
        for (let i = 0; i < 3; i++) await search({ q: 'config loader' });
      });
    } finally {
      warnGuard.disable();
    }
    expect(seen.length).toBeGreaterThan(0);
    expect(seen.every((a) => a === 'looper')).toBe(true);
    expect(lines[0]).toMatch(new RegExp(`^stuck loop in session ${session} \\(agent looper\\): `));

    // two sub-agents of one session looping alike within a minute: each gets its line
    const twoLines: string[] = [];
    const twoGuard = enableLoopGuard({ policy: 'warn', log: (m) => twoLines.push(m) });
    try {
      for (const agent of ['alpha', 'beta']) {
        await withSession({ sessionId: `${session}-two`, agent }, async () => {
          for (let i = 0; i < 3; i++) await search({ q: `x-${agent}` });
        });
      }
    } finally {
      twoGuard.disable();
    }
    expect(twoLines.filter((l) => l.startsWith('stuck loop')).map((l) => /\(agent (\w+)\)/.exec(l)?.[1])).toEqual(['alpha', 'beta']);

    // halted in a shared session: the line names the agent stopped, not the one whose calls raised the loop
    const haltLines: string[] = [];
    const sharedHalt = enableLoopGuard({ policy: 'halt', log: (m) => haltLines.push(m) });
    const stopped: (string | undefined)[] = [];
    try {
      for (const agent of ['sub-a', 'sub-b', 'sub-c', 'sub-d']) {
        await withSession({ sessionId: `${session}-shared-halt`, agent }, async () => {
          try {
            await read({ path: 'package.json' });
          } catch (err) {
            stopped.push((err as LoopDetectedError).finding.agent);
          }
        });
      }
    } finally {
      sharedHalt.disable();
    }
    expect(stopped).toEqual(['sub-d']);
    expect(haltLines.at(-1)).toMatch(new RegExp(`^halted a read_file call in session ${session}-shared-halt \\(agent sub-d\\): it would continue a stuck loop of the session: `));

    const haltGuard = enableLoopGuard({ policy: 'halt', log: () => undefined });
    try {
      const halted = await withSession({ sessionId: `${session}-halt`, agent: 'looper' }, async () => {
        for (let i = 0; i < 5; i++) {
          try {
            await search({ q: 'config loader' });
          } catch (err) {
            return err;
          }
        }
        return undefined;
      });
      expect(halted).toBeInstanceOf(LoopDetectedError);
      expect((halted as LoopDetectedError).finding.agent).toBe('looper');
    } finally {
      haltGuard.disable();
    }
    await provider.forceFlush();
    await tc.collector.flush();
    const events = await tc.rows<{ agent: string }>(
      `SELECT Events.Attributes[indexOf(Events.Name, 'loopwatch.loop_detected')]['loop.agent'] AS agent FROM otel_traces
       WHERE SpanAttributes['gen_ai.conversation.id'] IN ({s:String}, {h:String}) AND has(Events.Name, 'loopwatch.loop_detected')`, { s: session, h: `${session}-halt` });
    expect(events.length).toBeGreaterThan(0);
    expect(new Set(events.map((e) => e.agent))).toEqual(new Set(['looper']));
  });
});
