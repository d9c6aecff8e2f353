// Each SQL detector fires on its loop and stays quiet on its hard negatives, on sessions
// inserted as OpenTelemetry spans into otel_traces (the real views normalize them) in the real
// embedded ClickHouse.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadModelPrices, mergedPrices } from '../../collector/src/detect/prices.js';
import { findingId, loopSpanId, runDetectors } from '../../collector/src/detect/run-detectors.js';
import { LoopGuard, type GuardFinding } from '../../instrumentation/src/guard/loop-guard.js';
import { normalizeErrorMessage } from '../../queries/src/detector-defaults.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { buildSession, insertSession, insertSpans, times, type BuiltSession, type CallSpec } from './helpers.js';

let tc: TestCollector;
interface F { finding_id: string; detector: string; session_id: string; first_span_id: string; last_span_id: string; repeats: number; wasted_calls: number; wasted_tokens: number; wasted_cost_usd: number; wasted_time_ns: number; tools: string[]; model: string; message: string; details: string; version: number }
const sessions: Record<string, BuiltSession> = {};
let findings: F[] = [];
const PARAMS = { budgetMaxCalls: 10, budgetMaxToolDepth: 3 };

const fail = (message: string, type = 'ToolError'): CallSpec['error'] => ({ type, message });

// name -> calls; loops first, then hard negatives
const CASES: Record<string, CallSpec[]> = {
  repeat_loop: times(6, { tool: 'search', args: { q: 'x' }, error: fail('timeout after 30s') }).map((c, i) => (i % 2 ? { ...c, error: undefined, result: 'none' } : c)),
  stuck_loop: [{ tool: 'plan', args: {} }, ...times(4, { tool: 'read_file', args: { path: 'a.ts' }, result: 'same' })],
  osc2_loop: [0, 1, 2].flatMap(() => [{ tool: 'open', args: { id: 1 }, result: 'page1' }, { tool: 'back', args: {}, result: 'home' }]),
  osc3_loop: [0, 1, 2].flatMap(() => [
    { tool: 'edit', args: { f: 'a', v: 1 }, result: 'ok' }, { tool: 'build', args: {}, result: 'err E1' }, { tool: 'revert', args: { f: 'a' }, result: 'ok' },
  ]),
  // two fixes flip-flopping, the tests run after each: run_tests comes back within the cycle of 4
  osc4_flipflop: [0, 1, 2].flatMap(() => [
    { tool: 'edit_file', args: { path: 'a.ts', fix: 'A' }, result: 'ok' }, { tool: 'run_tests', args: {}, result: '1 failing: X' },
    { tool: 'edit_file', args: { path: 'a.ts', fix: 'B' }, result: 'ok' }, { tool: 'run_tests', args: {}, result: '1 failing: Y' },
  ]),
  storm_loop: Array.from({ length: 6 }, (_, i) => ({ tool: 'http_get', args: { url: `u${i}` }, error: fail(`503 from upstream ${1000 + i}`) })),
  error_loop: [0, 1, 2, 3].flatMap((i) => [
    { tool: 'edit', args: { f: 'x', v: i }, result: `ok${i}` }, { tool: 'compile', args: { n: i }, error: fail(`cannot find module 'foo' at line ${i + 10}`, 'CompileError') },
  ]),
  redundant_waste: [
    { tool: 'read_file', args: { path: 'cfg' }, result: 'A' }, { tool: 'ls', args: { d: '.' }, result: 'l1' },
    { tool: 'read_file', args: { path: 'cfg' }, result: 'A' }, { tool: 'ls', args: { d: 'src' }, result: 'l2' },
    { tool: 'read_file', args: { path: 'cfg' }, result: 'A' },
  ],
  runaway_budget: Array.from({ length: 12 }, (_, i) => ({ tool: 'step', args: { i }, result: `r${i}` })),
  runaway_depth: [
    { tool: 'agent', args: { d: 0 }, result: 'r0' },
    { tool: 'agent', args: { d: 1 }, result: 'r1', parentCall: 0 },
    { tool: 'agent', args: { d: 2 }, result: 'r2', parentCall: 1 },
    { tool: 'agent', args: { d: 3 }, result: 'r3', parentCall: 2 },
  ],
  runaway_no_progress: Array.from({ length: 22 }, (_, i) => ({ tool: 'web_search', args: { q: `query ${i}` }, result: { results: [] } })),
  // calls the in-process guard stopped (never ran) are not failures: no retry storm
  halted_calls: [
    ...times(3, { tool: 'read_file', args: { path: 'b.ts' }, result: 'same' }),
    ...times(5, { tool: 'read_file', args: { path: 'b.ts' }, error: fail('Loopwatch halted a looping tool call', 'LoopDetectedError') }),
  ],
  // hard negatives
  neg_polling: Array.from({ length: 8 }, (_, i) => ({ tool: 'job_status', args: { id: 7 }, result: `progress ${i * 10}%` })),
  neg_pagination: Array.from({ length: 8 }, (_, i) => ({ tool: 'list_items', args: { page: i }, result: `items ${i}` })),
  neg_reading_files: Array.from({ length: 10 }, (_, i) => ({ tool: 'read_file', args: { path: `src/f${i}.ts` }, result: `content ${i}` })),
  neg_retry_succeeds: [
    { tool: 'http_get', args: { url: 'a' }, error: fail('ECONNRESET') }, { tool: 'http_get', args: { url: 'a' }, error: fail('ECONNRESET') },
    { tool: 'http_get', args: { url: 'a' }, result: 'data' }, { tool: 'parse', args: {}, result: 'parsed' },
  ],
  neg_tests_after_edits: [0, 1, 2, 3].flatMap((i) => [
    { tool: 'edit_file', args: { path: 'a.ts', patch: `p${i}` }, result: 'ok' }, { tool: 'run_tests', args: {}, result: `${4 - i} failing` },
  ]),
  neg_polling_with_sleep: [0, 1, 2, 3].flatMap((i) => [{ tool: 'sleep', args: { s: 5 }, result: '' }, { tool: 'job_status', args: { id: 1 }, result: `step ${i}` }]),
  // the error says how many tests still fail, or which status came back: each is another error
  neg_failing_less: [0, 1, 2, 3, 4].flatMap((i) => [
    { tool: 'edit_file', args: { path: `src/f${i}.ts` }, result: `patched ${i}` },
    i < 4 ? { tool: 'run_tests', args: {}, error: fail(`${5 - i} tests failed`, 'TestFailure') } : { tool: 'run_tests', args: {}, result: 'all passed' },
  ]),
  // a passing error, each time got past by retrying the same call at once
  neg_transient_recovered: [0, 1, 2, 3].flatMap((i) => [
    { tool: 'http_get', args: { url: `/items/${i}` }, error: fail('503 Service Unavailable', 'HttpError') },
    { tool: 'http_get', args: { url: `/items/${i}` }, result: `item ${i}` },
  ]),
  // retried after a growing backoff, and got past on the fifth try: a passing error, not a wall
  neg_backoff_recovered: [
    ...[1, 2, 4, 8].flatMap((s) => [{ tool: 'http_get', args: { url: '/report' }, error: fail('503 Service Unavailable', 'HttpError') }, { tool: 'sleep', args: { s }, result: '' }]),
    { tool: 'http_get', args: { url: '/report' }, result: 'the report' },
  ],
  // fetches run two at a time; each that failed is retried, successfully, with the next turn's
  neg_parallel_flaky: [
    { tool: 'fetch', args: { url: '/a' }, error: fail('503 Service Unavailable', 'HttpError') },
    { tool: 'fetch', args: { url: '/b' }, error: fail('503 Service Unavailable', 'HttpError'), parallel: true },
    { tool: 'fetch', args: { url: '/a' }, result: 'page a' },
    { tool: 'fetch', args: { url: '/b' }, result: 'page b', parallel: true },
    { tool: 'fetch', args: { url: '/c' }, error: fail('503 Service Unavailable', 'HttpError'), parallel: true },
    { tool: 'fetch', args: { url: '/d' }, error: fail('503 Service Unavailable', 'HttpError'), parallel: true },
    { tool: 'fetch', args: { url: '/c' }, result: 'page c' },
    { tool: 'fetch', args: { url: '/d' }, result: 'page d', parallel: true },
  ],
  // the test command fails with the same generic message after each edit (an exec error carries
  // only the command), then passes: every failure of that call was got past, no impossible task
  neg_fixed_generic_error: [
    ...[0, 1, 2, 3].flatMap((i) => [
      { tool: 'run_shell', args: { command: 'npm test' }, error: fail('Command failed with exit code 1: npm test', 'Error') },
      { tool: 'edit_file', args: { path: `src/f${i}.ts` }, result: `patched src/f${i}.ts` },
    ]),
    { tool: 'run_shell', args: { command: 'npm test' }, error: fail('Command failed with exit code 1: npm test', 'Error') },
    { tool: 'run_shell', args: { command: 'npm test' }, result: 'Tests: 42 passed' },
  ],
  neg_status_codes: [401, 404, 400, 422].flatMap((code, i) => [
    { tool: 'http_request', args: { url: `/v${i}` }, error: fail(`Request failed with status code ${code}`, 'AxiosError') }, { tool: 'read_docs', args: { page: i }, result: `doc ${i}` },
  ]),
};

const EXPECT: Record<string, string[]> = {
  repeat_loop: ['redundant', 'repeat'],
  stuck_loop: ['redundant', 'stuck'],
  osc2_loop: ['oscillation', 'redundant'],
  osc3_loop: ['oscillation', 'redundant'],
  osc4_flipflop: ['oscillation', 'redundant', 'runaway'], // 12 calls: over this file's calls budget of 10
  storm_loop: ['retry_storm'],
  error_loop: ['error_loop'],
  redundant_waste: ['redundant'],
  runaway_budget: ['runaway'],
  runaway_depth: ['runaway'],
  runaway_no_progress: ['runaway'],
  halted_calls: ['redundant', 'stuck'],
};

beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
  const client = tc.collector.store.client;
  for (const [name, calls] of Object.entries(CASES)) sessions[name] = await insertSession(client, buildSession(`sql-${name}`, calls));
  const r = await runDetectors(client, { params: PARAMS });
  expect(r.errors).toEqual({});
  findings = await tc.rows<F>('SELECT * FROM agent_findings FINAL ORDER BY session_id, detector');
});
afterAll(async () => {
  await tc?.close();
});

const of = (name: string) => findings.filter((f) => f.session_id === `sql-${name}`);

describe('SQL detectors on hand-written sessions', () => {
  for (const name of Object.keys(CASES)) {
    const expected = EXPECT[name] ?? [];
    it(`${name}: ${expected.length ? expected.join(' + ') : 'no finding'}`, () => {
      const got = [...new Set(of(name).map((f) => f.detector))].sort();
      if (name.startsWith('runaway')) expect(got).toContain('runaway');
      else expect(got).toEqual(expected);
    });
  }
});

describe('runaway reasons', () => {
  const details = (name: string) => JSON.parse(of(name).find((f) => f.detector === 'runaway')!.details) as Record<string, string>;
  it('calls budget: anchored on the first call, wasted = calls past the budget', () => {
    const f = of('runaway_budget').find((x) => x.detector === 'runaway')!;
    expect(details('runaway_budget').reasons).toBe('calls');
    expect(f.first_span_id).toBe(sessions.runaway_budget!.spanIds[0]);
    expect(Number(f.wasted_calls)).toBe(2);
    expect(details('runaway_budget').trigger_span_id).toBe(sessions.runaway_budget!.spanIds[10]);
  });
  it('depth: tool calls nested through parent_span_id', () => {
    expect(details('runaway_depth').reasons).toBe('depth');
    expect(details('runaway_depth').max_tool_depth).toBe('4');
  });
  it('no progress: a long run of calls returning nothing new', () => {
    const f = of('runaway_no_progress').find((x) => x.detector === 'runaway')!;
    expect(details('runaway_no_progress').reasons.split(',')).toContain('no_progress'); // and calls (budget 10 here)
    expect(Number(f.wasted_calls)).toBe(21); // the first empty answer was new
  });
  it('no progress counts an action (a call that returns nothing) not made before as progress, not a repeated one', async () => {
    const client = tc.collector.store.client;
    const writes = (name: string, paths: (i: number) => string) =>
      insertSession(client, buildSession(name, Array.from({ length: 22 }, (_, i) => ({ tool: 'write_file', args: { path: paths(i) }, result: '' }))));
    const scaffold = await writes('sql-np-scaffold', (i) => `src/m${i}.ts`);
    const same = await writes('sql-np-same-write', () => 'src/a.ts');
    const r = await runDetectors(client, { params: { ...PARAMS, budgetMaxCalls: 0 } });
    expect(r.errors).toEqual({});
    const runaway = (s: string) => tc.rows<{ details: string }>(`SELECT details FROM agent_findings FINAL WHERE session_id = {s:String} AND detector = 'runaway'`, { s });
    expect(await runaway('sql-np-scaffold')).toEqual([]);
    expect(JSON.parse((await runaway('sql-np-same-write'))[0]!.details).reasons).toBe('no_progress');
    // and the guard, the same
    for (const [session, expected] of [[scaffold, []], [same, ['runaway']]] as const) {
      const guard = new LoopGuard({ params: { ...PARAMS, budgetMaxCalls: 0 } });
      for (const row of session.guardRows) guard.observe(row);
      expect(guard.findings().filter((f) => f.kind === 'runaway').map((f) => f.kind)).toEqual(expected);
    }
  });
  it('wall time leaves out the gaps between calls longer than budgetIdleGapS: a conversation resumed hours later', async () => {
    const client = tc.collector.store.client;
    // three searches, then the same conversation five hours later
    const calls = Array.from({ length: 6 }, (_, i) => ({ tool: 'search', args: { q: i }, result: `r${i}`, durMs: 1000, pauseMs: i === 3 ? 5 * 3600_000 : 0 }));
    const runaway = async (session: string) =>
      tc.rows<{ message: string }>(`SELECT message FROM agent_findings FINAL WHERE session_id = {s:String} AND detector = 'runaway'`, { s: session });
    const check = async (session: string, params: Record<string, number>) => {
      const s = await insertSession(client, buildSession(session, calls, { startMs: Date.now() - 6 * 3600_000 }));
      const r = await runDetectors(client, { params: { ...PARAMS, budgetMaxCalls: 0, budgetMaxWallTimeS: 10, ...params } });
      expect(r.errors).toEqual({});
      const guard = new LoopGuard({ params: { ...PARAMS, budgetMaxCalls: 0, budgetMaxWallTimeS: 10, ...params } });
      for (const row of s.guardRows) guard.observe(row);
      return { sql: (await runaway(session)).map((f) => f.message), live: guard.findings().filter((f) => f.kind === 'runaway').map((f) => f.message) };
    };
    // two sittings of about 3 s: 6 s of the 10 s budget
    expect(await check('sql-resumed', {})).toEqual({ sql: [], live: [] });
    // with every gap counted (0), the second sitting is over the budget: 5 h
    const all = await check('sql-resumed-all-gaps', { budgetIdleGapS: 0 });
    expect(all.sql).toHaveLength(1);
    expect(all.sql[0]).toMatch(/^Runaway session: wall_time \(3 calls wasted since .*; used 1800\d s of 10 s\)\.$/);
    expect(all.live[0]).toMatch(/^Runaway session: wall_time \(3 calls wasted; used 1800\d s of 10 s\)\.$/);
  });
  it('an interactive conversation (the person answers after 15 to 40 minutes) is not a runaway on the default budgets', async () => {
    const client = tc.collector.store.client;
    // ten exchanges of three tool calls each, about 30 s of work, over six hours
    const calls = Array.from({ length: 30 }, (_, i) => ({ tool: 'lookup', args: { i }, result: `r${i}`, durMs: 1000, pauseMs: i > 0 && i % 3 === 0 ? (15 + (i % 26)) * 60_000 : 0 }));
    const s = await insertSession(client, buildSession('sql-chat-thread', calls, { startMs: Date.now() - 7 * 3600_000 }));
    // the wall-time budget and idle gap on their defaults; this session's pass alone (no overlap)
    const r = await runDetectors(client, { params: { ...PARAMS, budgetMaxCalls: 0, watermarkOverlapS: 0 } });
    expect(r.errors).toEqual({});
    expect(await tc.rows(`SELECT message FROM agent_findings FINAL WHERE session_id = 'sql-chat-thread'`)).toEqual([]);
    const guard = new LoopGuard({ params: { ...PARAMS, budgetMaxCalls: 0 } });
    for (const row of s.guardRows) guard.observe(row);
    expect(guard.findings()).toEqual([]);
  });

  it('a chat (the agent answers, the person replies 20 minutes later, the agent plans again) is not a runaway: the pause within the turn is not wall time', async () => {
    const client = tc.collector.store.client;
    // ten exchanges: three lookups of 1 s, an answer; the answer, the reply's pause and the next
    // planning call are one turn (every LLM call since the call before)
    const calls = Array.from({ length: 30 }, (_, i) => ({
      tool: 'lookup', args: { i }, result: `r${i}`, durMs: 1000, pauseMs: i > 0 && i % 3 === 0 ? 20 * 60_000 : 0, ...(i % 3 === 2 ? { answerMs: 3000 } : {}),
    }));
    const s = await insertSession(client, buildSession('sql-chat-answers', calls, { startMs: Date.now() - 5 * 3600_000 }));
    const r = await runDetectors(client, { params: { ...PARAMS, budgetMaxCalls: 0, watermarkOverlapS: 0 } });
    expect(r.errors).toEqual({});
    expect(await tc.rows(`SELECT message FROM agent_findings FINAL WHERE session_id = 'sql-chat-answers'`)).toEqual([]);
    const guard = new LoopGuard({ params: { ...PARAMS, budgetMaxCalls: 0 } });
    for (const row of s.guardRows) guard.observe(row);
    expect(guard.findings()).toEqual([]);
    // the pauses are what kept it under: counted (an idle gap longer than them), both find it
    const strict = new LoopGuard({ params: { ...PARAMS, budgetMaxCalls: 0, budgetIdleGapS: 3600 } });
    for (const row of s.guardRows) strict.observe(row);
    expect(strict.findings().map((f) => f.kind)).toEqual(['runaway']);
  });

  it('one step\'s parallel calls failing together are not a retry storm (live and in SQL); retries one after the other are', async () => {
    const client = tc.collector.store.client;
    const down = (i: number) => ({ tool: 'fetch_url', args: { url: `https://example.com/${i}` }, error: fail('connect ECONNREFUSED 10.0.0.1:443', 'Error') });
    const parallel = [down(0), ...[1, 2, 3, 4].map((i) => ({ ...down(i), parallel: true })), { tool: 'fetch_url', args: { url: 'https://example.com/0' }, result: 'page' }];
    const p = await insertSession(client, buildSession('sql-parallel-fail', parallel));
    const q = await insertSession(client, buildSession('sql-sequential-fail', [0, 1, 2, 3, 4].map(down)));
    const r = await runDetectors(client, { params: PARAMS });
    expect(r.errors).toEqual({});
    const storms = await tc.rows<{ session_id: string; repeats: number }>(
      `SELECT session_id, repeats FROM agent_findings FINAL WHERE detector = 'retry_storm' AND session_id IN ('sql-parallel-fail', 'sql-sequential-fail')`);
    expect(storms.map((x) => [x.session_id, Number(x.repeats)])).toEqual([['sql-sequential-fail', 5]]);
    // the guard sees calls as they end: the parallel ones, each started before the one before it ended
    const live = (rows: typeof p.guardRows) => {
      const g = new LoopGuard({ params: PARAMS });
      for (const row of [...rows].sort((a, b) => Number(a.endTs) - Number(b.endTs))) g.observe(row);
      return g.findings().filter((f) => f.kind === 'retry_storm').map((f) => f.repeats);
    };
    expect(live(p.guardRows)).toEqual([]);
    expect(live(q.guardRows)).toEqual([5]);
  });

  it('a session busy in long LLM calls (a reasoning model, 12 minutes a step) runs past the wall-time budget: they are not pauses', async () => {
    const client = tc.collector.store.client;
    const calls = Array.from({ length: 20 }, (_, i) => ({ tool: 'run_step', args: { i }, result: `r${i}`, durMs: 5000, llmMs: 12 * 60_000 }));
    const s = await insertSession(client, buildSession('sql-long-llm', calls, { startMs: Date.now() - 6 * 3600_000 }));
    const r = await runDetectors(client, { params: { ...PARAMS, budgetMaxCalls: 0, watermarkOverlapS: 0 } });
    expect(r.errors).toEqual({});
    const [sql] = await tc.rows<{ message: string }>(`SELECT message FROM agent_findings FINAL WHERE session_id = 'sql-long-llm' AND detector = 'runaway'`);
    expect(sql?.message).toMatch(/^Runaway session: wall_time \(\d+ calls wasted since .*; used \d+ s of 7200 s\)\.$/);
    const guard = new LoopGuard({ params: { ...PARAMS, budgetMaxCalls: 0 } });
    for (const row of s.guardRows) guard.observe(row);
    expect(guard.findings().map((f) => f.kind)).toEqual(['runaway']);
    // the same seconds on both sides
    expect(/used (\d+) s/.exec(guard.findings()[0]!.message)?.[1]).toBe(/used (\d+) s/.exec(sql!.message)?.[1]);
  });

  it('token, cost and wall-time budgets', async () => {
    const client = tc.collector.store.client;
    await insertSession(client, buildSession('sql-budget-tokens', Array.from({ length: 6 }, (_, i) => ({ tool: 't', args: { i }, result: i, tokensIn: 3000 }))));
    await insertSession(client, buildSession('sql-budget-cost', Array.from({ length: 6 }, (_, i) => ({ tool: 't', args: { i }, result: i, tokensIn: 100_000, tokensOut: 0, model: 'claude-opus-4-1-20250805' }))));
    await insertSession(client, buildSession('sql-budget-wall', Array.from({ length: 6 }, (_, i) => ({ tool: 't', args: { i }, result: i, durMs: 1000 }))));
    const r = await runDetectors(client, { params: { ...PARAMS, budgetMaxTokens: 10_000, budgetMaxCostUsd: 5, budgetMaxWallTimeS: 3.5 } });
    expect(r.errors).toEqual({});
    const rows = await tc.rows<{ session_id: string; details: string; wasted_calls: number }>(
      `SELECT session_id, details, wasted_calls FROM agent_findings FINAL WHERE detector = 'runaway' AND session_id LIKE 'sql-budget-%' ORDER BY session_id`);
    const reasons = Object.fromEntries(rows.map((x) => [x.session_id, (JSON.parse(x.details) as { reasons: string }).reasons]));
    // 3100 tokens per call: past 10k at the 4th call; opus 4.1 at $15/Mtok input: $1.5 per call, past $5 at the 4th
    expect(reasons).toMatchObject({ 'sql-budget-tokens': 'tokens', 'sql-budget-wall': 'wall_time' });
    expect(reasons['sql-budget-cost']!.split(',')).toContain('cost');
    expect(Number(rows.find((x) => x.session_id === 'sql-budget-tokens')!.wasted_calls)).toBe(3);
  });
});

describe('error identity', () => {
  it('loopwatch_error_norm (SQL) and normalizeErrorMessage (the guard) agree; ids, times and long numbers go, small numbers stay', async () => {
    const messages = [
      '5 tests failed', '1 tests failed', 'Request failed with status code 401', 'Request failed with status code 404',
      'connect ECONNREFUSED 10.0.0.42:443', 'request 550e8400-e29b-41d4-a716-446655440000 failed', 'at 2026-12-05T14:03:22.123Z: timeout',
      'took 1234ms', 'timed out after 30s', 'Time: 1.5 s', 'order ORD-123456 not found', 'trace 4bf92f3577b34da6a3ce929d0e0e4736',
      'line 12, col 5', 'Ünïcödé   FEHLER\n\t 7', 'x'.repeat(300),
      '503 Service Unavailable (request id: req_8KzQ3vHtPlMn7)', 'open /tmp/tmpk3j9_xq2/out.json: ENOENT', 'took 734 ms', 'retry in 5 minutes',
      'worker (pid 812) exited', 'sha256sum mismatch in python3', 'Error [ERR_HTTP2_STREAM_CANCEL]: canceled', '0x7fff5fbff8c8 not mapped',
      'request failed: HTTP_401_UNAUTHORIZED', 'missing OAUTH2_CLIENT_ID', 'apps/v1beta1 not served', 'timeout\u00a0', '\ufeffboom\u3000',
    ];
    const [row] = await tc.rows<{ norm: string[] }>('SELECT arrayMap(m -> loopwatch_error_norm(m), {m:Array(String)}) AS norm', { m: messages });
    expect(row!.norm).toEqual(messages.map(normalizeErrorMessage));
    expect(row!.norm.slice(0, 13)).toEqual([
      '5 tests failed', '1 tests failed', 'request failed with status code 401', 'request failed with status code 404',
      'connect econnrefused #', 'request # failed', 'at #t#z: timeout', 'took #', 'timed out after #', 'time: #', 'order ord-# not found',
      'trace #', '#, #',
    ]);
    // ids (words that go from letters to digits or back three times or more), durations with a space or
    // in words, process ids; names with digits stay (sha256sum, ERR_HTTP2_*, HTTP_401_*, OAUTH2_*); only
    // spaces are trimmed, as trimBoth trims them (not a no-break space or U+3000)
    expect(row!.norm.slice(15)).toEqual([
      '503 service unavailable (request id: #)', 'open /tmp/#/out.json: enoent', 'took #', 'retry in #', 'worker (#) exited',
      'sha256sum mismatch in python3', 'error [err_http2_stream_cancel]: canceled', '# not mapped',
      'request failed: http_401_unauthorized', 'missing oauth2_client_id', 'apps/# not served', 'timeout\u00a0', '\ufeffboom\u3000',
    ]);
  });

  it('errors named with digits (HTTP_401_UNAUTHORIZED, OAUTH2_CLIENT_ID) stay different errors: no error loop, in SQL or the guard', async () => {
    const client = tc.collector.store.client;
    const named = ['HTTP_401_UNAUTHORIZED', 'HTTP_403_FORBIDDEN', 'HTTP_404_NOT_FOUND', 'HTTP_422_UNPROCESSABLE_ENTITY'];
    const envs = ['AWS_S3_BUCKET', 'OAUTH2_CLIENT_ID', 'REDIS_URL_V2', 'SMTP_HOST_2'];
    const calls = named.flatMap((code, i) => [
      { tool: 'api_call', args: { endpoint: `/v${i}` }, error: fail(`request failed: ${code}`, 'HttpError') }, { tool: 'read_docs', args: { page: i }, result: `doc ${i}` },
      { tool: 'run_app', args: { n: i }, error: fail(`missing environment variable ${envs[i]}`, 'ConfigError') },
    ]);
    const s = await insertSession(client, buildSession('sql-error-names', calls));
    expect((await runDetectors(client, { params: PARAMS })).errors).toEqual({});
    expect(await tc.rows(`SELECT detector FROM agent_findings FINAL WHERE session_id = 'sql-error-names' AND detector = 'error_loop'`)).toEqual([]);
    const guard = new LoopGuard({ params: PARAMS });
    for (const row of s.guardRows) guard.observe(row);
    expect(guard.findings().filter((f) => f.kind === 'error_loop')).toEqual([]);
  });

  it('a call retried with backoff that fails with another request id each time is one error: SQL and the guard find the error loop', async () => {
    const client = tc.collector.store.client;
    const ids = ['8KzQ3vHtPlMn', 'Tq7RwXzYpLmK', 'uVx9QrTzPwMk', 'Lm3NbVcXzAsD', 'Qw2ErTyUiOpA'];
    const calls = ids.flatMap((id, i) => [
      { tool: 'http_get', args: { url: '/v1/report' }, error: fail(`503 Service Unavailable (request id: req_${id}${i})`, 'HttpError') },
      ...(i < ids.length - 1 ? [{ tool: 'sleep', args: { s: 2 ** i }, result: '' }] : []),
    ]);
    const s = await insertSession(client, buildSession('sql-error-ids', calls));
    const r = await runDetectors(client, { params: PARAMS });
    expect(r.errors).toEqual({});
    const sql = await tc.rows<{ detector: string; repeats: number }>(`SELECT detector, repeats FROM agent_findings FINAL WHERE session_id = 'sql-error-ids' ORDER BY detector`);
    expect(sql.map((f) => [f.detector, Number(f.repeats)])).toEqual([['error_loop', 5]]);
    const guard = new LoopGuard({ params: PARAMS });
    for (const row of s.guardRows) guard.observe(row);
    expect(guard.findings().map((f) => [f.kind, f.repeats])).toEqual([['error_loop', 5]]);
  });
});

describe('model prices', () => {
  it('LOOPWATCH_MODEL_PRICES entries replace the defaults; prefix and exact matching', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'loopwatch-prices-'));
    const path = join(dir, 'prices.json');
    writeFileSync(path, JSON.stringify({ updated: '2026-01-01', models: [
      { model: 'gpt-4o', match: 'prefix', input_per_mtok: 100, output_per_mtok: 0 },
      { model: 'acme-1', match: 'exact', input_per_mtok: 1, output_per_mtok: 2 },
    ] }));
    const merged = mergedPrices(path);
    expect(merged.find((m) => m.model === 'gpt-4o' && m.match === 'prefix')!.input_per_mtok).toBe(100);
    expect(merged.find((m) => m.model === 'acme-1')).toBeTruthy();
    expect(merged.find((m) => m.model.startsWith('claude-sonnet-4'))).toBeTruthy();
    const client = tc.collector.store.client;
    const n = await loadModelPrices(client, path);
    try {
      const key = async (m: string) => (await tc.rows<{ k: string; p: number }>(
        `SELECT loopwatch_model_key({m:String}) AS k,
                (SELECT argMax(input_per_mtok, tuple(match = 'exact', length(model))) FROM model_prices FINAL
                 WHERE (match = 'exact' AND model = k) OR (match = 'prefix' AND startsWith(k, model))) AS p`, { m }))[0]!;
      expect(await key('openai/GPT-4o-2024-11-20')).toEqual({ k: 'gpt-4o-2024-11-20', p: 100 });
      expect((await key('gpt-4o-mini')).p).toBe(0.15); // the longer prefix wins
      expect((await key('us.anthropic.claude-sonnet-4-5-20250929-v1:0')).p).toBe(3);
      // Bedrock's geographies of more than two letters (cross-region inference profiles)
      for (const geo of ['global', 'apac', 'us-gov']) expect(await key(`${geo}.anthropic.claude-sonnet-4-5-20250929-v1:0`)).toEqual({ k: 'claude-sonnet-4-5-20250929-v1:0', p: 3 });
    } finally {
      await loadModelPrices(client, undefined);
      rmSync(dir, { recursive: true, force: true });
    }
    expect(n).toBe(merged.length);
  });
});

describe('waste accounting', () => {
  it('stuck: wasted calls, tokens (ASOF-attributed), cost (model_prices), time', () => {
    const f = of('stuck_loop').find((x) => x.detector === 'stuck')!;
    const s = sessions.stuck_loop!;
    expect(f.first_span_id).toBe(s.spanIds[1]);
    expect(f.last_span_id).toBe(s.spanIds[4]);
    expect(Number(f.repeats)).toBe(4);
    expect(Number(f.wasted_calls)).toBe(3);
    expect(Number(f.wasted_tokens)).toBe(3 * 1100); // each looping call was requested by a 1000+100 token gpt-4o call
    expect(f.wasted_cost_usd).toBeCloseTo(3 * (1000 * 2.5 + 100 * 10) / 1e6, 9);
    expect(Number(f.wasted_time_ns)).toBe(3 * (50 + 20) * 1e6); // tool call + the LLM call that asked for it
    expect(f.model).toBe('gpt-4o');
    expect(f.tools).toEqual(['read_file']);
  });

  it('tokens: a streamed LLM call is charged to the tool call it asked for, not the one after', async () => {
    const client = tc.collector.store.client;
    // each turn streams, runs its tool call before it ends, and uses more tokens than the last
    await insertSession(client, buildSession('sql-streamed', [1000, 2000, 3000, 4000].map((tokensIn) =>
      ({ tool: 'read_file', args: { path: 'a.ts' }, result: 'same', streamed: true, tokensIn, tokensOut: 0 }))));
    const r = await runDetectors(client, { params: PARAMS });
    expect(r.errors).toEqual({});
    const [stuck] = await tc.rows<{ wasted_tokens: number }>(`SELECT wasted_tokens FROM agent_findings FINAL WHERE session_id = 'sql-streamed' AND detector = 'stuck'`);
    expect(Number(stuck!.wasted_tokens)).toBe(2000 + 3000 + 4000);
  });
  it('tokens: an LLM call made inside a tool call is charged to that tool call, not to the next one', async () => {
    const client = tc.collector.store.client;
    // a turn asks for summarize and fetch; summarize calls a model itself (50k tokens)
    const turn = [
      { tool: 'summarize', args: { doc: 1 }, result: 'short', tokensIn: 1000, tokensOut: 0, innerLlmTokens: 50_000 },
      { tool: 'fetch', args: { url: 'a' }, result: 'page', tokensIn: 0, tokensOut: 0 },
    ];
    await insertSession(client, buildSession('sql-inner-llm', [...turn, ...turn, ...turn]));
    const r = await runDetectors(client, { params: PARAMS });
    expect(r.errors).toEqual({});
    const rows = await tc.rows<{ detector: string; tools: string[]; wasted_tokens: number }>(
      `SELECT detector, tools, wasted_tokens FROM agent_findings FINAL WHERE session_id = 'sql-inner-llm' AND detector = 'redundant' ORDER BY tools`);
    // each turn's 1000 tokens split between its two calls; summarize also spent its own 50k each time
    expect(rows.map((x) => [x.tools.join(), Number(x.wasted_tokens)])).toEqual([['fetch', 2 * 500], ['summarize', 2 * (500 + 50_000)]]);
  });
  it('tokens: a tool call another tool call made (build runs compile and link) takes no share of the turn: the model asked for build', async () => {
    const client = tc.collector.store.client;
    const step = (k: number) => [
      { tool: 'build', args: {}, result: 'built' },
      { tool: 'compile', args: {}, result: 'compiled', parentCall: 3 * k, tokensIn: 0, tokensOut: 0 },
      { tool: 'link', args: {}, result: 'linked', parentCall: 3 * k, tokensIn: 0, tokensOut: 0 },
    ];
    await insertSession(client, buildSession('sql-nested-share', [0, 1, 2, 3].flatMap(step)));
    const r = await runDetectors(client, { params: { ...PARAMS, budgetMaxToolDepth: 0 } });
    expect(r.errors).toEqual({});
    const rows = await tc.rows<{ tools: string[]; wasted_tokens: number }>(
      `SELECT tools, wasted_tokens FROM agent_findings FINAL WHERE session_id = 'sql-nested-share' AND detector = 'redundant' ORDER BY tools`);
    expect(rows.map((x) => [x.tools.join(), Number(x.wasted_tokens)])).toEqual([['build', 3 * 1100], ['compile', 0], ['link', 0]]);
  });

  it('a cost budget spent exactly is not blown (twenty calls of 0.1 USD sum to 2.0000000000000004), one cent more is', async () => {
    const client = tc.collector.store.client;
    // 0.1 USD per call: gpt-4o at 2.5 USD per Mtok input is 40,000 tokens
    const calls = (extra: number) => Array.from({ length: 20 }, (_, i) => ({ tool: 'step', args: { i }, result: `r${i}`, tokensIn: i === 19 ? 40_000 + extra : 40_000, tokensOut: 0 }));
    const at = await insertSession(client, buildSession('sql-cost-at-budget', calls(0)));
    await insertSession(client, buildSession('sql-cost-over-budget', calls(4000)));
    const params = { ...PARAMS, budgetMaxCalls: 0, budgetMaxCostUsd: 2 };
    const r = await runDetectors(client, { params });
    expect(r.errors).toEqual({});
    const rows = await tc.rows<{ session_id: string }>(`SELECT session_id FROM agent_findings FINAL WHERE detector = 'runaway' AND session_id LIKE 'sql-cost-%-budget'`);
    expect(rows.map((x) => x.session_id)).toEqual(['sql-cost-over-budget']);
    expect(at.guardRows.reduce((a, x) => a + x.costUsd!, 0)).toBeGreaterThan(2); // the float sum the guard adds up
    const guard = new LoopGuard({ params });
    for (const row of at.guardRows) guard.observe(row);
    expect(guard.findings()).toEqual([]);
  });

  it('time: calls run at once waste the time they ran together, not the sum of their durations', async () => {
    const client = tc.collector.store.client;
    const fetch = { tool: 'fetch_url', args: { url: 'https://example.com/a' }, result: 'same page', durMs: 2000 };
    await insertSession(client, buildSession('sql-parallel-time', [fetch, ...times(4, { ...fetch, parallel: true })]));
    const r = await runDetectors(client, { params: PARAMS });
    expect(r.errors).toEqual({});
    const rows = await tc.rows<{ detector: string; wasted_calls: number; wasted_time_ns: number }>(
      `SELECT detector, wasted_calls, wasted_time_ns FROM agent_findings FINAL WHERE session_id = 'sql-parallel-time' AND detector = 'redundant'`);
    expect(rows).toHaveLength(1);
    expect(Number(rows[0]!.wasted_calls)).toBe(4);
    // the five ran within 2 s and 4 µs: not 8 s
    expect(Number(rows[0]!.wasted_time_ns)).toBe(2000 * 1e6 + 4000);
  });
  it('oscillation: wasted = calls after the first cycle', () => {
    const f = of('osc3_loop').find((x) => x.detector === 'oscillation')!;
    expect(Number(f.repeats)).toBe(9);
    expect(Number(f.wasted_calls)).toBe(6);
    expect(f.first_span_id).toBe(sessions.osc3_loop!.spanIds[0]);
    expect(f.last_span_id).toBe(sessions.osc3_loop!.spanIds[8]);
    expect([...f.tools].sort()).toEqual(['build', 'edit', 'revert']);
  });

  it('reported cost wins over the price table', async () => {
    const client = tc.collector.store.client;
    const s = buildSession('sql-reported-cost', times(3, { tool: 'ping', args: {}, result: 'same', model: 'some-unpriced-model' }));
    // the same LLM spans, with a reported cost
    for (const r of s.rows) {
      const a = r.SpanAttributes as Record<string, string>;
      if (a['gen_ai.operation.name'] === 'chat') a['llm.cost.total'] = '0.25';
    }
    await insertSession(client, s);
    await runDetectors(client, { params: PARAMS });
    const [f] = await tc.rows<F>(`SELECT * FROM agent_findings FINAL WHERE session_id = 'sql-reported-cost' AND detector = 'stuck'`);
    expect(f!.wasted_cost_usd).toBeCloseTo(0.5, 9);
  });

  it('the detector pass prices LLM calls as the reports and dashboards do (loopwatch_model_key_prices)', async () => {
    const client = tc.collector.store.client;
    // a provider path and a dated id (prefix), the longer of two prefixes, a Bedrock id, a model without a price
    const models = ['openai/gpt-4o-2024-08-06', 'gpt-4o-mini', 'us.anthropic.claude-sonnet-4-5-20250929-v1:0', 'some-unpriced-model'];
    const s = buildSession('sql-price-agree', models.map((model, i) => ({ tool: 'read_file', args: { i }, result: i, model, tokensIn: 10_000, tokensOut: 1_000 })));
    await insertSession(client, s);
    await runDetectors(client, { params: PARAMS });
    // each LLM call asked for one tool call, which carries all of its cost in the kept features
    const [pass] = await tc.rows<{ cost: number; priced: number }>(
      `SELECT sum(cost_usd) AS cost, countIf(cost_usd > 0) AS priced FROM loopwatch_call_features WHERE session_id = 'sql-price-agree'`,
    );
    const [view] = await tc.rows<{ cost: number }>(
      `SELECT sum(loopwatch_llm_cost(l.reported_cost_usd, l.input_tokens, l.cache_read_tokens, l.cache_creation_tokens, l.output_tokens, pr.price)) AS cost
       FROM agent_llm_calls AS l FINAL LEFT JOIN loopwatch_model_key_prices AS pr ON loopwatch_model_key(l.model) = pr.model_key
       WHERE l.session_id = 'sql-price-agree'`,
    );
    expect(Number(pass!.priced)).toBe(3);
    expect(pass!.cost).toBeGreaterThan(0);
    expect(pass!.cost).toBeCloseTo(view!.cost, 12);
  });
});

describe('guard and SQL agree (same rules, same defaults)', () => {
  for (const name of Object.keys(CASES)) {
    it(name, () => {
      const guard = new LoopGuard({ params: PARAMS });
      for (const row of sessions[name]!.guardRows) guard.observe(row);
      const key = (f: { kind: string; first: string; last: string; repeats: number }) => `${f.kind} ${f.first} ${f.last} ${f.repeats}`;
      const fromGuard = guard.findings().filter((f) => f.kind !== 'runaway' || !name.endsWith('depth'))
        .map((f: GuardFinding) => key({ kind: f.kind, first: f.firstSpanId, last: f.lastSpanId, repeats: f.repeats })).sort();
      const fromSql = of(name).filter((f) => f.detector !== 'runaway' || !name.endsWith('depth'))
        .map((f) => key({ kind: f.detector, first: f.first_span_id, last: f.last_span_id, repeats: Number(f.repeats) })).sort();
      expect(fromGuard).toEqual(fromSql);
    });
  }
});

describe('loop spans', () => {
  it('land in the looping trace, under the first looping call\'s parent, and are not tool or LLM calls', async () => {
    const s = sessions.stuck_loop!;
    const f = of('stuck_loop').find((x) => x.detector === 'stuck')!;
    const spans = await tc.rows<{ SpanId: string; ParentSpanId: string; ServiceName: string; StatusCode: string; StatusMessage: string; a: Record<string, string>; Duration: string }>(
      `SELECT SpanId, ParentSpanId, ServiceName, StatusCode, StatusMessage, SpanAttributes AS a, toString(Duration) AS Duration
       FROM otel_traces WHERE TraceId = {t:String} AND SpanName = 'loopwatch.loop' AND SpanAttributes['loop.detector'] = 'stuck'`,
      { t: s.traceId },
    );
    expect(spans).toHaveLength(1);
    const sp = spans[0]!;
    expect(sp.SpanId).toBe(loopSpanId(findingId('stuck', s.sessionId, s.spanIds[1]!), 1));
    expect(sp.ParentSpanId).toBe(s.rootSpanId);
    expect(sp.ServiceName).toBe('test-agent-svc');
    expect(sp.StatusCode).toBe('Error');
    expect(sp.StatusMessage).toMatch(/read_file .* 4 times in a row/);
    expect(sp.a['loop.session_id']).toBe(s.sessionId);
    expect(sp.a['loop.agent']).toBe('test-agent');
    expect(sp.a['loop.model']).toBe('gpt-4o');
    expect(sp.a['loop.tools']).toBe('read_file');
    expect(sp.a['loop.repeats']).toBe('4');
    expect(sp.a['loop.first_span_id']).toBe(s.spanIds[1]);
    expect(sp.a['loop.last_span_id']).toBe(s.spanIds[4]);
    expect(sp.a['loop.wasted_calls']).toBe('3');
    expect(sp.a['loop.wasted_tokens']).toBe('3300');
    expect(Number(sp.a['loop.wasted_cost_usd'])).toBeCloseTo(0.0105, 9);
    expect(sp.a['loop.wasted_time_ns']).toBe(String(210e6));
    expect(sp.a['loop.finding_id']).toBe(f.finding_id);
    expect(sp.a['loop.severity']).toBe('warning');
    expect(Number(sp.Duration)).toBe((4 * 50 + 3 * (20 + 10 + 10)) * 1e6); // first call start -> last call end
    const [n] = await tc.rows<{ tools: string; llm: string }>(
      `SELECT (SELECT count() FROM agent_tool_calls WHERE span_id IN (SELECT SpanId FROM otel_traces WHERE SpanName = 'loopwatch.loop')) AS tools,
              (SELECT count() FROM agent_llm_calls WHERE span_id IN (SELECT SpanId FROM otel_traces WHERE SpanName = 'loopwatch.loop')) AS llm`,
    );
    expect(Number(n!.tools)).toBe(0);
    expect(Number(n!.llm)).toBe(0);
  });
});

describe('idempotent and incremental', () => {
  it('a full re-run stores nothing new: no duplicate findings, no duplicate loop spans', async () => {
    const client = tc.collector.store.client;
    const count = async () => (await tc.rows<{ f: string; s: string }>(
      `SELECT (SELECT count() FROM agent_findings) AS f, (SELECT count() FROM otel_traces WHERE SpanName = 'loopwatch.loop') AS s`))[0]!;
    // tests above judged some sessions under other settings (no calls budget); a later pass under
    // PARAMS re-examines them only within the watermark overlap, which a slow machine outlasts
    // (then this re-run found their runaway as new): every session judged under PARAMS first
    expect((await runDetectors(client, { params: PARAMS, full: true })).errors).toEqual({});
    const before = await count();
    const r = await runDetectors(client, { params: PARAMS, full: true });
    expect(r.errors).toEqual({});
    expect(r.findings).toBeGreaterThan(10);
    expect(r.newFindings).toBe(0);
    expect(r.grownFindings).toBe(0);
    expect(await count()).toEqual(before);
  });

  it('a growing loop is the same finding with a higher version and a new loop span', async () => {
    const client = tc.collector.store.client;
    const s = buildSession('sql-growing', times(7, { tool: 'fetch', args: { u: 1 }, result: 'same' }));
    const cut = s.toolRowIndex[3]! + 1; // first 4 calls
    await insertSpans(client, s.rows.slice(0, cut));
    await runDetectors(client, { params: { ...PARAMS, watermarkOverlapS: 0 } });
    const v1 = await tc.rows<F>(`SELECT * FROM agent_findings FINAL WHERE session_id = 'sql-growing' AND detector = 'stuck'`);
    expect(v1.map((f) => [Number(f.version), Number(f.repeats)])).toEqual([[1, 4]]);
    await insertSpans(client, s.rows.slice(cut));
    const r = await runDetectors(client, { params: { ...PARAMS, watermarkOverlapS: 0 } });
    expect(r.sessions).toBe(1); // only the session that received calls
    const v2 = await tc.rows<F>(`SELECT * FROM agent_findings FINAL WHERE session_id = 'sql-growing' AND detector = 'stuck'`);
    expect(v2.map((f) => [Number(f.version), Number(f.repeats), f.last_span_id])).toEqual([[2, 7, s.spanIds[6]]]);
    expect(v2[0]!.finding_id).toBe(v1[0]!.finding_id);
    const spans = await tc.rows<{ v: string }>(
      `SELECT SpanAttributes['loop.version'] AS v FROM otel_traces WHERE SpanName = 'loopwatch.loop' AND SpanAttributes['loop.finding_id'] = {id:String} ORDER BY v`,
      { id: v1[0]!.finding_id },
    );
    expect(spans.map((x) => x.v)).toEqual(['1', '2']);
  });

  it('a Bedrock global. model is priced (its key made by the view as it stores the calls): the waste has its cost', async () => {
    const client = tc.collector.store.client;
    await insertSession(client, buildSession('sql-bedrock-global', times(4, { tool: 'read_file', args: { path: 'b.ts' }, result: 'same', model: 'global.anthropic.claude-sonnet-4-5-20250929-v1:0' })));
    await runDetectors(client, { params: { ...PARAMS, watermarkOverlapS: 0 } });
    const [f] = await tc.rows<F>(`SELECT * FROM agent_findings FINAL WHERE session_id = 'sql-bedrock-global' AND detector = 'stuck'`);
    expect(Number(f!.wasted_calls)).toBe(3);
    expect(Number(f!.wasted_cost_usd)).toBeCloseTo(3 * (1000 * 3 + 100 * 15) / 1e6, 9);
  });

  it('LLM spans that arrive after the tool spans: the finding is stored again with their tokens and cost', async () => {
    // a streamed turn ends after the calls it asked for, and its span comes in a later export
    const client = tc.collector.store.client;
    const s = buildSession('sql-late-llm', times(5, { tool: 'read_file', args: { path: 'a.ts' }, result: 'same' }));
    const tools = new Set(s.toolRowIndex);
    await insertSpans(client, s.rows.filter((_, i) => tools.has(i) || i === s.rows.length - 1));
    await runDetectors(client, { params: { ...PARAMS, watermarkOverlapS: 0 } });
    const stuck = () => tc.rows<F>(`SELECT * FROM agent_findings FINAL WHERE session_id = 'sql-late-llm' AND detector = 'stuck'`);
    expect((await stuck()).map((f) => [Number(f.version), Number(f.repeats), Number(f.wasted_tokens)])).toEqual([[1, 5, 0]]);
    await insertSpans(client, s.rows.filter((_, i) => !tools.has(i) && i !== s.rows.length - 1));
    const r = await runDetectors(client, { params: { ...PARAMS, watermarkOverlapS: 0 } });
    expect(r.grownFindings).toBeGreaterThanOrEqual(1);
    const first = (await tc.rows<{ d: string }>(`SELECT toString(detected_at) AS d FROM agent_findings WHERE session_id = 'sql-late-llm' AND detector = 'stuck' AND version = 1`))[0]!.d;
    const [f] = await stuck();
    expect([Number(f!.version), Number(f!.repeats), Number(f!.wasted_tokens)]).toEqual([2, 5, 4 * 1100]);
    // found when it was found: the loop alert (keyed on detected_at) does not page again for it
    expect((await tc.rows<{ d: string }>(`SELECT toString(detected_at) AS d FROM agent_findings FINAL WHERE session_id = 'sql-late-llm' AND detector = 'stuck'`))[0]!.d).toBe(first);
    expect(Number(f!.wasted_cost_usd)).toBeCloseTo(4 * (1000 * 2.5 + 100 * 10) / 1e6, 9);
    const span = await tc.rows<{ t: string }>(
      `SELECT SpanAttributes['loop.wasted_tokens'] AS t FROM otel_traces WHERE SpanName = 'loopwatch.loop' AND SpanAttributes['loop.finding_id'] = {id:String} AND SpanAttributes['loop.version'] = '2'`,
      { id: f!.finding_id },
    );
    expect(span.map((x) => x.t)).toEqual(['4400']);
    const [at] = await tc.rows<{ d: string }>(
      `SELECT SpanAttributes['loop.detected_at'] AS d FROM otel_traces WHERE SpanName = 'loopwatch.loop' AND SpanAttributes['loop.finding_id'] = {id:String} AND SpanAttributes['loop.version'] = '2'`,
      { id: f!.finding_id },
    );
    expect(at!.d).toBe(first);
    // and a pass with nothing new stores nothing again
    expect((await runDetectors(client, { params: PARAMS, full: true })).grownFindings).toBe(0);
  });

  it('a call that arrives late before the loop: one finding, from that call, not a second one beside the first', async () => {
    // the loop's first call ran long and was exported when it ended, after the others were stored
    const client = tc.collector.store.client;
    const s = buildSession('sql-late-first', times(6, { tool: 'get_status', args: { id: 1 }, result: 'pending' }));
    const first = s.toolRowIndex[0]!;
    await insertSpans(client, s.rows.filter((_, i) => i !== first));
    await runDetectors(client, { params: { ...PARAMS, watermarkOverlapS: 0 } });
    const before = await tc.rows<F>(`SELECT * FROM agent_findings FINAL WHERE session_id = 'sql-late-first' ORDER BY detector`);
    expect(before.map((f) => [f.detector, f.first_span_id, Number(f.repeats)])).toEqual([
      ['redundant', s.spanIds[1], 5], ['repeat', s.spanIds[1], 5], ['stuck', s.spanIds[1], 5],
    ]);
    await insertSpans(client, [s.rows[first]!]);
    const r = await runDetectors(client, { params: { ...PARAMS, watermarkOverlapS: 0 } });
    expect(r.withdrawnFindings).toBe(3);
    const after = await tc.rows<F>(`SELECT * FROM agent_findings FINAL WHERE session_id = 'sql-late-first' ORDER BY detector`);
    expect(after.map((f) => [f.detector, f.first_span_id, Number(f.repeats), Number(f.wasted_calls)])).toEqual([
      ['redundant', s.spanIds[0], 6, 5], ['repeat', s.spanIds[0], 6, 5], ['stuck', s.spanIds[0], 6, 5],
    ]);
    // the trace keeps the loop spans of the findings that stand, only
    const spans = await tc.rows<{ id: string }>(
      `SELECT DISTINCT SpanAttributes['loop.finding_id'] AS id FROM otel_traces WHERE SpanName = 'loopwatch.loop' AND SpanAttributes['loop.session_id'] = 'sql-late-first' ORDER BY id`);
    expect(spans.map((x) => x.id)).toEqual(after.map((f) => f.finding_id).sort());
  });

  it('a call that arrives late inside a loop and breaks it: the findings are those of the history as it now is', async () => {
    const client = tc.collector.store.client;
    const poll = { tool: 'get_status', args: { id: 2 }, result: 'pending' };
    const s = buildSession('sql-late-middle', [...times(3, poll), { tool: 'run_build', args: {}, result: 'built' }, ...times(3, poll)]);
    const late = s.toolRowIndex[3]!;
    await insertSpans(client, s.rows.filter((_, i) => i !== late));
    await runDetectors(client, { params: { ...PARAMS, watermarkOverlapS: 0 } });
    const before = await tc.rows<F>(`SELECT * FROM agent_findings FINAL WHERE session_id = 'sql-late-middle' ORDER BY detector`);
    expect(before.map((f) => [f.detector, Number(f.repeats), f.severity])).toEqual([['redundant', 6, 'info'], ['repeat', 6, 'warning'], ['stuck', 6, 'critical']]);
    await insertSpans(client, [s.rows[late]!]);
    await runDetectors(client, { params: { ...PARAMS, watermarkOverlapS: 0 } });
    const after = await tc.rows<F>(`SELECT * FROM agent_findings FINAL WHERE session_id = 'sql-late-middle' ORDER BY detector, first_span_id`);
    // two stuck runs of 3, no run of 5 in a row any more; the 6 identical calls are still redundant
    expect(after.map((f) => [f.detector, f.first_span_id, Number(f.repeats)])).toEqual([
      ['redundant', s.spanIds[0], 6],
      ...[s.spanIds[0], s.spanIds[4]].sort().map((id) => ['stuck', id, 3]),
    ]);
  });

  it('an incremental pass examines only sessions with new calls', async () => {
    const client = tc.collector.store.client;
    const quiet = await runDetectors(client, { params: { ...PARAMS, watermarkOverlapS: 0 } });
    expect(quiet.sessions).toBe(0);
    expect(quiet.findings).toBe(0);
    await insertSession(client, buildSession('sql-incr-a', times(3, { tool: 'x', args: {}, result: 'y' })));
    await insertSession(client, buildSession('sql-incr-b', times(2, { tool: 'x', args: {}, result: 'y' })));
    const r = await runDetectors(client, { params: { ...PARAMS, watermarkOverlapS: 0 } });
    expect(r.sessions).toBe(2);
    expect(r.perDetector.stuck).toBe(1);
    expect(r.newFindings).toBe(2); // stuck + redundant of sql-incr-a
  });
});
