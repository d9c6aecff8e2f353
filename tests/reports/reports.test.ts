// Reports (queries/reports/*.sql through queries/src/reports.ts) and the degradation detector
// (queries/detectors/degradation.sql) on data sent through a real collector: hand-made sessions
// with known answers for the scorecard, eight days of generated sessions for the per-model-day
// report and the degradation baseline.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDetectorFiles, runDetectors } from '../../collector/src/detect/run-detectors.js';
import { DETECTOR_DEFAULTS, resolveDetectorParams, sqlParamName, type DetectorParams } from '../../queries/src/detector-defaults.js';
import { generateDailySessions, MODEL_PRICES, Rng, SessionBuilder, type LlmCall, type Session, type ToolCall } from '../../corpus/generate.js';
import { sendSessions } from '../../corpus/otlp.js';
import { modelReliabilityByDays, runReport, type ModelReliabilityRow, type SessionScorecardRow } from '../../queries/src/reports.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

const DAY = 86_400_000;
const firstDay = Math.floor(Date.now() / DAY) * DAY - 8 * DAY;
const handStart = firstDay + 7 * DAY + 20 * 3600_000; // yesterday 20:00 UTC

function hand(id: string, agent: 'coder' | 'support' | 'research', at: number, fill: (b: SessionBuilder) => void, model = 'gpt-4o'): Session {
  const b = new SessionBuilder(new Rng(id.length * 31 + at), id, agent, 'hand', at, model);
  fill(b);
  return b.build();
}

const clean = hand('rep-clean', 'coder', handStart, (b) => {
  b.tool('read_file', { path: 'src/a.ts' }, { result: { content: 'a' } });
  b.tool('read_file', { path: 'src/b.ts' }, { result: { content: 'b' } });
  b.tool('edit_file', { path: 'src/a.ts', old: 'x', new: 'y' }, { result: { ok: true } });
  b.tool('run_tests', { command: 'npm test' }, { error: ['TestFailure', '1 test failed'] });
  b.tool('run_tests', { command: 'npm test' }, { result: { passed: 3, failed: 0 } });
  b.tool('run_shell', { command: 'git status' }, { result: { exitCode: 0 } });
  b.tool('run_shell', { command: 'git diff' }, { result: { exitCode: 0 } });
});
const openLoop = hand('rep-open-loop', 'coder', handStart + 600_000, (b) => {
  b.tool('search_code', { query: 'parseConfig' }, { result: { matches: [] } });
  for (let i = 0; i < 5; i++) b.tool('read_file', { path: 'src/config.ts' }, { result: { content: 'same' } });
});
const closedLoop = hand('rep-closed-loop', 'research', handStart + 1_200_000, (b) => {
  for (let i = 0; i < 4; i++) b.tool('fetch_url', { url: 'https://example.com/x' }, { result: { status: 200, text: 'same' } });
  b.tool('web_search', { query: 'other angle' }, { result: { results: ['https://example.com/y'] } });
  b.tool('summarize', { topic: 'x', docs: 2 }, { result: { summary: 'done' } });
});
const failedEnd = hand('rep-failed-end', 'support', handStart + 1_800_000, (b) => {
  b.tool('lookup_customer', { email: 'a@example.com' }, { result: { id: 'cus_1' } });
  b.tool('refund', { order_id: 'ORD-1', amount: 10 }, { error: ['RefundWindowExpired', 'order is older than 30 days'] });
});
// two loops one after the other: the same read four times, then a fetch failing six times (a
// model of its own: the per-model-day figures below are the generated sessions')
// The config read at the start, between and at the end: redundant calls whose span holds both
// loops, which must not merge them into one (the waste then fell to the larger loop's)
const twoLoops = hand('rep-two-loops', 'coder', handStart + 700_000, (b) => {
  b.tool('read_file', { path: 'config.json' }, { result: { content: '{}' } });
  for (let i = 0; i < 4; i++) b.tool('read_file', { path: 'src/loop.ts' }, { result: { content: 'same' } });
  b.tool('read_file', { path: 'config.json' }, { result: { content: '{}' } });
  for (let i = 0; i < 6; i++) b.tool('fetch_url', { url: `https://example.com/${i}` }, { error: ['HTTPError', `503 unavailable (${i})`] });
  b.tool('read_file', { path: 'config.json' }, { result: { content: '{}' } });
}, 'gpt-4o-mini');
// the config read again before each edit: redundant calls (waste), not a loop
const rereads = hand('rep-rereads', 'coder', handStart + 800_000, (b) => {
  for (let i = 0; i < 3; i++) {
    b.tool('read_file', { path: 'config.json' }, { result: { content: '{}' } });
    b.tool('edit_file', { path: `src/f${i}.ts`, old: 'a', new: 'b' }, { result: { ok: true } });
  }
}, 'gpt-4o-mini');
// a chat: three LLM calls, no tool (the builder makes an LLM call before each tool call)
const chatOnly = hand('rep-chat', 'coder', handStart + 900_000, (b) => {
  for (let i = 0; i < 3; i++) b.tool('unused', { i }, { result: i });
}, 'gpt-4o-mini');
chatOnly.calls = chatOnly.calls.filter((c) => c.type === 'llm');
const handMade = [clean, openLoop, twoLoops, rereads, chatOnly, closedLoop, failedEnd];

const daily = generateDailySessions({
  firstDayMs: firstDay, days: 8, sessionsPerDay: 30, models: ['gpt-4o', 'claude-sonnet-4-5'],
  errorRate: (m, d) => (m === 'gpt-4o' && d === 7 ? 0.3 : 0.03),
  latencyScale: (m, d) => (m === 'claude-sonnet-4-5' && d === 7 ? 3 : 1),
});

let tc: TestCollector;
let firstPass: Awaited<ReturnType<typeof runDetectors>>;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
  await sendSessions(tc.url, [...daily, ...handMade]);
  await tc.collector.flush();
  firstPass = await runDetectors(tc.collector.store.client, { full: true });
}, 120_000);
afterAll(async () => {
  await tc?.close();
});

const tools = (s: Session) => s.calls.filter((c): c is ToolCall => c.type === 'tool');
const llms = (s: Session) => s.calls.filter((c): c is LlmCall => c.type === 'llm');

describe('session-scorecard', () => {
  let rows: Map<string, SessionScorecardRow>;
  beforeAll(async () => {
    const list = await runReport(tc.collector.store.client, 'session-scorecard', { from: handStart - 1000, to: handStart + 3 * 3600_000 });
    rows = new Map(list.map((r) => [r.session_id, r]));
  });

  it('reports only sessions active in the time range', () => {
    expect([...rows.keys()].sort()).toEqual(handMade.map((s) => s.sessionId).sort());
  });

  it('a session that recovered from a failure and ended cleanly', () => {
    const r = rows.get('rep-clean')!;
    expect(r).toMatchObject({
      agent: 'coder', service: 'coder-agent', model: 'gpt-4o', calls: 7, llm_calls: 7, errors: 1, retries: 1,
      loops_entered: 0, failed_tools: 1, recovered_tools: 1, recovered: 1, ended_cleanly: 1,
      files_touched: 2, files: ['src/a.ts', 'src/b.ts'], commands_run: 3, commands: ['git diff', 'git status', 'npm test'],
      wasted_calls: 0, waste_ratio: 0,
    });
    const l = llms(clean);
    expect(r.tokens).toBe(l.reduce((a, c) => a + c.inputTokens + c.outputTokens, 0));
    const p = MODEL_PRICES['gpt-4o']!;
    expect(r.cost_usd).toBeCloseTo(l.reduce((a, c) => a + (c.inputTokens * p.input + c.outputTokens * p.output) / 1e6, 0), 5);
    expect(r.wall_time_s).toBeCloseTo((clean.calls.at(-1)!.endMs - clean.calls[0]!.startMs) / 1000, 2);
    // ISO-8601 in UTC like every time of the read API, not the server's zone without a marker
    expect(r.started_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    expect(Date.parse(r.started_at)).toBe(clean.calls[0]!.startMs);
  });

  it('a session still looping at its end did not end cleanly; its waste is counted once', () => {
    const r = rows.get('rep-open-loop')!;
    expect(r.loops_entered).toBeGreaterThanOrEqual(1);
    expect(r.loop_kinds).toContain('stuck');
    expect(r.ended_cleanly).toBe(0);
    expect(r.wasted_calls).toBe(4); // 5 identical reads: 4 wasted, whichever detectors saw it
    expect(r.waste_ratio).toBeCloseTo(4 / 6, 4);
    expect(r.files).toEqual(['src/config.ts']);
  });

  it('separate loops of a session add up: each is counted once, by its largest detector', () => {
    const r = rows.get('rep-two-loops')!;
    expect(r.loop_kinds).toEqual(expect.arrayContaining(['stuck', 'retry_storm', 'redundant']));
    expect(r.wasted_calls).toBe(8); // 3 repeated reads + 5 retried fetches, not the larger of the two
  });

  it('redundant calls are waste, not a loop', () => {
    const r = rows.get('rep-rereads')!;
    expect(r.loop_kinds).toEqual(['redundant']);
    expect(r.loops_entered).toBe(0);
    expect(r.wasted_calls).toBe(2);
    expect(r.ended_cleanly).toBe(1);
  });

  it('a session of LLM calls only is scored too', () => {
    const r = rows.get('rep-chat')!;
    expect(r).toMatchObject({ agent: 'coder', calls: 0, llm_calls: 3, errors: 0, loops_entered: 0, wasted_calls: 0, waste_ratio: 0, ended_cleanly: 1 });
    const sent = llms(chatOnly);
    expect(r.tokens).toBe(sent.reduce((a, c) => a + c.inputTokens + c.outputTokens, 0));
    expect(r.wall_time_s).toBeCloseTo((sent.at(-1)!.endMs - sent[0]!.startMs) / 1000, 2);
  });

  it('filters a session by the agent it is shown with: its tool calls\', not an LLM call\'s of another agent', async () => {
    const c = tc.collector.store.client;
    const at = handStart + 950_000;
    await c.command({ query: `INSERT INTO agent_tool_calls (session_id, ts, end_ts, span_id, agent, service, tool, status)
                              VALUES ('rep-multi', fromUnixTimestamp64Milli(${at}), fromUnixTimestamp64Milli(${at + 100}), 'm1', 'coder', 'coder-svc', 'read_file', 'ok')` });
    await c.command({ query: `INSERT INTO agent_llm_calls (session_id, ts, end_ts, span_id, agent, service, model, status)
                              VALUES ('rep-multi', fromUnixTimestamp64Milli(${at + 200}), fromUnixTimestamp64Milli(${at + 300}), 'm2', 'planner', 'planner-svc', 'gpt-4o-mini', 'ok')` });
    try {
      const range = { from: at - 1000, to: at + 1000 };
      expect((await runReport(c, 'session-scorecard', { ...range, agent: 'planner' })).map((r) => r.session_id)).toEqual([]);
      expect((await runReport(c, 'session-scorecard', { ...range, agent: 'coder' })).map((r) => [r.session_id, r.agent])).toEqual([['rep-multi', 'coder']]);
      expect((await runReport(c, 'session-scorecard', { ...range, service: 'planner-svc' })).map((r) => r.session_id)).toEqual([]);
    } finally {
      await c.command({ query: "DELETE FROM agent_tool_calls WHERE session_id = 'rep-multi'" });
      await c.command({ query: "DELETE FROM agent_llm_calls WHERE session_id = 'rep-multi'" });
    }
  });

  it('a loop the agent got out of: ended cleanly', () => {
    const r = rows.get('rep-closed-loop')!;
    expect(r.loops_entered).toBeGreaterThanOrEqual(1);
    expect(r.ended_cleanly).toBe(1);
    expect(r.files_touched).toBe(0);
  });

  it('a session whose last call failed', () => {
    expect(rows.get('rep-failed-end')).toMatchObject({ errors: 1, failed_tools: 1, recovered: 0, ended_cleanly: 0, retries: 0, loops_entered: 0 });
  });

  it('filters: agent, session, empty range', async () => {
    const c = tc.collector.store.client;
    const range = { from: handStart - 1000, to: handStart + 3 * 3600_000 };
    expect((await runReport(c, 'session-scorecard', { ...range, agent: 'support' })).map((r) => r.session_id)).toEqual(['rep-failed-end']);
    expect((await runReport(c, 'session-scorecard', { ...range, session_id: 'rep-clean' })).map((r) => r.session_id)).toEqual(['rep-clean']);
    expect(await runReport(c, 'session-scorecard', { from: handStart + 10 * 3600_000, to: handStart + 11 * 3600_000 })).toEqual([]);
    expect((await runReport(c, 'session-scorecard', { ...range, limit: 2 })).length).toBe(2);
    // newest first: only the `limit` latest are scored (the read API's list, whatever the window holds)
    expect((await runReport(c, 'session-scorecard', { ...range, limit: 2, newest_first: 1 })).map((r) => r.session_id)).toEqual(['rep-failed-end', 'rep-closed-loop']);
    expect((await runReport(c, 'session-scorecard', { ...range, limit: 2 })).map((r) => r.session_id)).toEqual(['rep-clean', 'rep-open-loop']);
  });
});

describe('model-reliability', () => {
  let rows: ModelReliabilityRow[];
  beforeAll(async () => {
    // the daily sessions only: the hand-made ones start at 20:00 on the last day
    rows = await runReport(tc.collector.store.client, 'model-reliability', { from: firstDay, to: firstDay + 7 * DAY + 19 * 3600_000 });
  });

  it('over a long range, a few days per query (as the read API runs it) gives the same rows as one query', async () => {
    // from a time inside the first day, to the end of everything sent (the hand-made sessions too)
    const range = { from: firstDay + 5 * 3600_000, to: firstDay + 9 * DAY };
    // sums of prices in another order differ in the last of the 6 decimals shown
    const rounded = (rows: ModelReliabilityRow[]) => rows.map((r) => ({ ...r, cost_usd: r.cost_usd.toFixed(4), cost_per_session: r.cost_per_session.toFixed(4) }));
    const whole = await runReport(tc.collector.store.client, 'model-reliability', range);
    expect(whole.length).toBeGreaterThan(16);
    for (const days of [1, 3]) expect(rounded(await modelReliabilityByDays(tc.collector.store.client, range, days)), `${days} a query`).toEqual(rounded(whole));
  });

  it('one row per model and day, with the sessions, calls and errors that were sent', () => {
    expect(rows).toHaveLength(16);
    for (const r of rows) {
      const day = Math.round((Date.parse(`${r.day}T00:00:00Z`) - firstDay) / DAY);
      const sent = daily.filter((s) => s.model === r.model && s.sessionId.includes(`-d${day}-`));
      const calls = sent.flatMap(tools);
      expect(r.sessions).toBe(30);
      expect(r.llm_calls).toBe(sent.flatMap(llms).length);
      expect(r.tool_calls).toBe(calls.length);
      expect(r.tool_errors).toBe(calls.filter((c) => c.status === 'error').length);
      expect(r.tool_error_rate).toBeCloseTo(r.tool_errors / r.tool_calls, 4);
      const p = MODEL_PRICES[r.model]!;
      const cost = sent.flatMap(llms).reduce((a, c) => a + (c.inputTokens * p.input + c.outputTokens * p.output) / 1e6, 0);
      expect(r.cost_per_session).toBeCloseTo(cost / 30, 5);
      expect(r.latency_p50_ms).toBeLessThanOrEqual(r.latency_p95_ms);
      expect(r.latency_p95_ms).toBeLessThanOrEqual(r.latency_p99_ms);
      expect(r.loop_rate).toBeCloseTo(r.loop_sessions / r.sessions, 4);
      if (r.error_sessions > 0) expect(r.recovery_rate).toBeCloseTo(r.recovered_sessions / r.error_sessions, 4);
      else expect(r.recovery_rate).toBeNull();
    }
  });

  it('shows the bad day: gpt-4o errors, claude-sonnet-4-5 latency', () => {
    const last = rows.filter((r) => r.day === rows.at(-1)!.day);
    const base = rows.filter((r) => r.day !== rows.at(-1)!.day);
    const gpt = last.find((r) => r.model === 'gpt-4o')!;
    expect(gpt.tool_error_rate).toBeGreaterThan(0.2);
    for (const r of base) expect(r.tool_error_rate).toBeLessThan(0.1);
    const claude = last.find((r) => r.model === 'claude-sonnet-4-5')!;
    const claudeBase = base.filter((r) => r.model === 'claude-sonnet-4-5');
    expect(claude.latency_p50_ms).toBeGreaterThan(2 * Math.max(...claudeBase.map((r) => r.latency_p50_ms)));
  });

  it('filters by model', async () => {
    const only = await runReport(tc.collector.store.client, 'model-reliability', { from: firstDay, to: firstDay + 8 * DAY, model: 'gpt-4o' });
    expect(new Set(only.map((r) => r.model))).toEqual(new Set(['gpt-4o']));
    expect(only).toHaveLength(8);
  });
});

describe('degradation detector', () => {
  it('flags exactly the worse model-days against their trailing 7-day baseline', async () => {
    expect(firstPass.errors).toEqual({});
    const found = await tc.rows<{ session_id: string; model: string; tools: string[]; message: string; details: string; first_ts: string }>(
      `SELECT session_id, model, tools, message, details, toString(first_ts) AS first_ts FROM agent_findings FINAL WHERE detector = 'degradation' ORDER BY model`,
    );
    const lastDay = new Date(firstDay + 7 * DAY).toISOString().slice(0, 10);
    expect(found.map((f) => [f.session_id, f.tools])).toEqual([
      [`model:claude-sonnet-4-5@${lastDay}`, ['latency_p50']],
      // the day's 30% failures also put more of its sessions in loops, found in the same pass
      [`model:gpt-4o@${lastDay}`, ['tool_error_rate', 'loop_rate']],
    ]);
    expect(found[1]!.message).toMatch(/tool error rate \d+(\.\d)?% vs \d(\.\d)?%/);
    expect(JSON.parse(found[1]!.details)).toMatchObject({ baseline_days: '7' });
  });

  it('a second pass stores nothing new', async () => {
    const again = await runDetectors(tc.collector.store.client, { full: true });
    expect(again.perDetector.degradation).toBe(2);
    expect(again.newFindings).toBe(0);
    const [n] = await tc.rows<{ n: string }>(`SELECT toString(count()) AS n FROM agent_findings FINAL WHERE detector = 'degradation'`);
    expect(n!.n).toBe('2');
  });

  it('takes its thresholds and baseline length from the detector settings', async () => {
    const file = loadDetectorFiles().find((f) => f.name === 'degradation')!;
    const run = (settings: Partial<DetectorParams>) => {
      const params = resolveDetectorParams(settings);
      const bound: Record<string, unknown> = { since: '0.000', until: ((firstDay + 8 * DAY) / 1000).toFixed(3) };
      for (const [k, v] of Object.entries(params)) bound[sqlParamName(k)] = v;
      return tc.rows<{ model: string; tools: string[]; message: string; details: string }>(file.sql, Object.fromEntries(file.params.map((p) => [p, bound[p]])));
    };
    const byModel = (rows: { model: string; tools: string[] }[]) => Object.fromEntries(rows.map((r) => [r.model, r.tools]));
    expect(byModel(await run({}))).toEqual({ 'claude-sonnet-4-5': ['latency_p50'], 'gpt-4o': ['tool_error_rate', 'loop_rate'] });
    // latency must be 100x its baseline: only the error and loop rates are worse
    expect(byModel(await run({ degradationLatencyRatio: 100 }))).toEqual({ 'gpt-4o': ['tool_error_rate', 'loop_rate'] });
    // a z score no day reaches
    expect(byModel(await run({ degradationMinZ: 1000, degradationLatencyRatio: 100 }))).toEqual({});
    // a 3-day baseline: the same days are worse, compared with 3 days (the loop rate, judged
    // against fewer baseline sessions, no longer passes its tests)
    const short = await run({ degradationBaselineDays: 3 });
    expect(byModel(short)).toEqual({ 'claude-sonnet-4-5': ['latency_p50'], 'gpt-4o': ['tool_error_rate'] });
    expect(short[0]!.message).toContain('worse than its previous 3 days');
    expect(JSON.parse(short[0]!.details)).toMatchObject({ baseline_days: '3' });
    // more baseline days with data than the generated week has: no verdict
    expect(await run({ degradationBaselineDays: 14, degradationMinBaselineDays: 8 })).toEqual([]);
  });

  it('between full passes it judges yesterday and today once an hour, not on every pass', async () => {
    const file = loadDetectorFiles().find((f) => f.name === 'degradation')!;
    const today = firstDay + 8 * DAY;
    const run = (sinceMs: number, untilMs: number) => {
      const bound: Record<string, unknown> = { since: (sinceMs / 1000).toFixed(3), until: (untilMs / 1000).toFixed(3) };
      for (const [k, v] of Object.entries(DETECTOR_DEFAULTS)) bound[sqlParamName(k)] = v;
      return tc.rows<{ session_id: string }>(file.sql, Object.fromEntries(file.params.map((p) => [p, bound[p]])));
    };
    // within one hour: nothing to do
    expect(await run(today + 10 * 3600_000 + 60_000, today + 10 * 3600_000 + 120_000)).toEqual([]);
    // across an hour boundary: yesterday (the bad day) is judged
    const crossed = await run(today + 10 * 3600_000 - 5_000, today + 10 * 3600_000 + 5_000);
    expect(crossed.map((r) => r.session_id).sort()).toEqual([`model:claude-sonnet-4-5@${new Date(firstDay + 7 * DAY).toISOString().slice(0, 10)}`, `model:gpt-4o@${new Date(firstDay + 7 * DAY).toISOString().slice(0, 10)}`]);
    // two days later the bad day is no longer judged by hourly passes
    expect(await run(today + 2 * DAY + 3600_000 - 5_000, today + 2 * DAY + 3600_000 + 5_000)).toEqual([]);
  });
});
