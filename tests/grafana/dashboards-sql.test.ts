// Every dashboard query (panels, template variables, annotations), with the plugin's macros
// and variables expanded as the plugin does, runs on the embedded ClickHouse against a real
// collector seeded over OTLP with looping and clean sessions, and returns the expected
// columns and rows.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runReport } from '../../queries/src/reports.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { dashboards, panelsOf, type Json } from './files.js';
import { expandPanelQuery, type VariableValue } from './macros.js';
import { seedLoops } from './seed.js';

let tc: TestCollector;
const now = new Date();
const range = { from: new Date(now.getTime() - 7 * 86_400_000), to: new Date(now.getTime() + 60_000), intervalMs: 3_600_000 };
let options: Record<string, string[]> = {};

beforeAll(async () => {
  tc = await startTestCollector();
  await seedLoops(tc, now);
}, 120_000);

afterAll(async () => {
  await tc?.close();
});

interface Result {
  columns: string[];
  rows: Record<string, unknown>[];
}

async function run(sql: string): Promise<Result> {
  const rs = await tc.collector.store.client.query({ query: sql, format: 'JSON' });
  const out = (await rs.json()) as { meta: { name: string }[]; data: Record<string, unknown>[] };
  return { columns: out.meta.map((m) => m.name), rows: out.data };
}

const all: Record<string, VariableValue> = {};
function allSelected(): Record<string, VariableValue> {
  return Object.fromEntries(Object.entries(options).map(([k, opts]) => [k, { current: ['$__all'], options: opts }]));
}

/** Expected result columns, per dashboard and panel title. */
const EXPECTED: Record<string, Record<string, string[]>> = {
  'overview.json': {
    Sessions: ['sessions'],
    'Tool calls': ['tool_calls'],
    'Tool error rate': ['error_rate'],
    'Loop findings': ['findings'],
    'Wasted tokens': ['wasted_tokens'],
    'Wasted cost': ['wasted_cost_usd'],
    'Findings by kind over time': ['time', 'detector', 'findings'],
    'Waste over time (tokens, cost)': ['time', 'wasted_tokens', 'wasted_cost_usd'],
    'Tool calls over time by status': ['time', 'status', 'calls'],
    'Findings by kind': ['kind', 'findings'],
    'Top looping agents': ['agent', 'loops', 'sessions', 'wasted_calls', 'wasted_tokens', 'wasted_cost_usd'],
    'Top looping tools': ['tool', 'loops', 'sessions', 'agents', 'wasted_calls', 'wasted_cost_usd'],
  },
  'sessions.json': {
    'Sessions over time': ['time', 'sessions', 'looping_sessions'],
    'Session scorecard': [
      'session_id', 'trace_id', 'agent', 'service', 'model', 'started', 'wall_time_s', 'tool_calls', 'tool_errors', 'error_rate',
      'halted', 'retries', 'recovered', 'ended_cleanly', 'llm_calls', 'tokens', 'cost_usd', 'loops', 'loop_kinds', 'wasted_calls',
      'wasted_cost_usd', 'waste_ratio',
    ],
    'Loop spans (loopwatch.loop)': ['time', 'trace_id', 'service', 'agent', 'detector', 'severity', 'tools', 'repeats', 'wasted_cost_usd', 'session_id', 'message'],
  },
  'loops-and-waste.json': {
    Findings: ['time', 'detector', 'severity', 'agent', 'model', 'service', 'tools', 'repeats', 'wasted_calls', 'wasted_tokens', 'wasted_cost_usd', 'wasted_time_s', 'message', 'session_id', 'trace_id'],
    'Waste by agent': ['agent', 'findings', 'sessions', 'wasted_calls', 'wasted_tokens', 'wasted_cost_usd', 'wasted_time_s'],
    'Waste by model': ['model', 'findings', 'sessions', 'wasted_calls', 'wasted_tokens', 'wasted_cost_usd', 'wasted_time_s'],
    'Waste by tool': ['tool', 'findings', 'wasted_calls', 'wasted_tokens', 'wasted_cost_usd'],
    'Wasted cost by detector over time': ['time', 'detector', 'wasted_cost_usd'],
    'Wasted calls by detector and severity': ['detector', 'critical', 'warning', 'other'],
  },
  'tools.json': {
    Tools: ['tool', 'calls', 'errors', 'error_rate', 'sessions', 'calls_per_session', 'p50_ms', 'p95_ms', 'p99_ms'],
    'Calls per tool (10 most called)': ['time', 'tool', 'calls'],
    'Error rate per tool (10 most called)': ['time', 'tool', 'error_rate'],
    'Latency p95 per tool (10 most called)': ['time', 'tool', 'p95_ms'],
    'Top tool errors': ['tool', 'error_type', 'example_message', 'errors', 'sessions', 'last_seen'],
  },
  'models.json': {
    'Model reliability': [
      'model', 'sessions', 'tool_calls', 'tool_error_rate', 'loop_rate', 'recovery_rate', 'llm_calls', 'llm_error_rate', 'tokens',
      'cost_per_session_usd', 'llm_p50_ms', 'llm_p95_ms', 'llm_p99_ms',
    ],
    'Tool-call error rate by model, daily': ['time', 'model', 'tool_error_rate'],
    'LLM latency p95 by model, daily': ['time', 'model', 'p95_ms'],
    'Cost per session by model, daily': ['time', 'model', 'cost_per_session_usd'],
    'Degradation findings': ['time', 'model', 'severity', 'worse', 'message', 'details'],
  },
};

const boards = dashboards();

describe('template variables', () => {
  it('list the seeded agents, models and services', async () => {
    // the same three variables on every dashboard
    const vars = boards[0]!.json.templating.list as Json[];
    for (const { json } of boards) expect(json.templating.list).toEqual(vars);
    for (const v of vars) {
      const res = await run(expandPanelQuery(v.query as string, { ...range, variables: all }));
      expect(res.columns).toHaveLength(1);
      options[v.name as string] = res.rows.map((r) => String(Object.values(r)[0]));
    }
    expect(options.agent).toEqual(['coder', 'planner', 'researcher']);
    expect(options.model).toEqual(['claude-sonnet-4-5', 'gpt-4o', 'gpt-4o-mini']);
    expect(options.service).toEqual(['browser-svc', 'coder-svc', 'research-svc']);
  });
});

describe.each(boards.map((b) => [b.file, b.json] as const))('%s', (file, json) => {
  const expected = EXPECTED[file]!;

  it('has a column expectation for every panel', () => {
    expect(panelsOf(json).map((p) => p.title).sort()).toEqual(Object.keys(expected).sort());
  });

  for (const p of panelsOf(json)) {
    it(`${String(p.title)}: returns its columns and rows with All selected`, async () => {
      const sql = expandPanelQuery((p.targets as Json[])[0]!.rawSql as string, { ...range, variables: allSelected() });
      expect(sql).not.toMatch(/\$/);
      const res = await run(sql);
      expect(res.columns).toEqual(expected[p.title as string]);
      expect(res.rows.length, `${String(p.title)} returned no rows`).toBeGreaterThan(0);
      if (p.type === 'timeseries') expect(res.columns[0]).toBe('time');
    });

    it(`${String(p.title)}: runs with one agent, two models and one service selected`, async () => {
      const variables: Record<string, VariableValue> = {
        agent: { current: ['coder'], options: options.agent },
        model: { current: ['gpt-4o', 'gpt-4o-mini'], options: options.model },
        service: { current: ['coder-svc'], options: options.service },
      };
      const raw = (p.targets as Json[])[0]!.rawSql as string;
      const sql = expandPanelQuery(raw, { ...range, variables });
      if (raw.includes('${agent:')) expect(sql).toContain("'coder'"); // not degradation's: a model's day over all agents
      const res = await run(sql);
      expect(res.columns).toEqual(expected[p.title as string]);
      for (const r of res.rows) {
        if ('agent' in r) expect(r.agent).toBe('coder');
        if ('service' in r) expect(r.service).toBe('coder-svc');
        if ('model' in r && file !== 'sessions.json') expect(['gpt-4o', 'gpt-4o-mini']).toContain(r.model);
      }
    });
  }

  for (const a of (json.annotations.list as Json[]).filter((x) => !x.builtIn)) {
    it(`annotation ${String(a.name)}: returns time and text`, async () => {
      const res = await run(expandPanelQuery(a.target.rawSql as string, { ...range, variables: allSelected() }));
      expect(res.columns.slice(0, 2)).toEqual(['time', 'text']);
      expect(res.rows.length).toBeGreaterThan(0);
    });
  }
});

describe('what the panels show on the seeded data', () => {
  const sql = (file: string, title: string, variables = allSelected()) => {
    const p = panelsOf(boards.find((b) => b.file === file)!.json).find((x) => x.title === title)!;
    return expandPanelQuery((p.targets as Json[])[0]!.rawSql as string, { ...range, variables });
  };

  it('Overview counts loop findings by kind, degradation apart', async () => {
    const kinds = (await run(sql('overview.json', 'Findings by kind'))).rows.map((r) => r.kind);
    expect(kinds).toEqual(expect.arrayContaining(['oscillation', 'retry_storm', 'stuck']));
    expect(kinds).not.toContain('degradation'); // a model's day, on the Models dashboard
    const findings = (await run(sql('loops-and-waste.json', 'Findings'))).rows.map((r) => r.detector);
    expect(findings).not.toContain('degradation');
    const loops = await run(sql('overview.json', 'Loop findings'));
    expect(Number(loops.rows[0]!.findings)).toBeGreaterThanOrEqual(3);
    // the waste of overlapping detectors (stuck, repeat, redundant on one run) is counted once
    const cost = await run(sql('overview.json', 'Wasted cost'));
    expect(Number(cost.rows[0]!.wasted_cost_usd)).toBeLessThan(7.2 + 1);
    expect(Number(cost.rows[0]!.wasted_cost_usd)).toBeGreaterThan(7.2);
    const top = (await run(sql('overview.json', 'Top looping tools'))).rows.map((r) => r.tool);
    expect(top).toEqual(expect.arrayContaining(['search_web', 'run_tests', 'open_page', 'go_back']));
  });

  it('Sessions: the scorecard row of a looping session carries its loops, waste and trace id', async () => {
    const rows = (await run(sql('sessions.json', 'Session scorecard'))).rows;
    const stuck = rows.find((r) => String(r.loop_kinds).split(', ').includes('stuck'))!;
    expect(stuck.agent).toBe('researcher');
    expect(stuck.model).toBe('claude-sonnet-4-5');
    expect(Number(stuck.tool_calls)).toBe(9);
    expect(Number(stuck.wasted_calls)).toBe(8);
    expect(Number(stuck.waste_ratio)).toBeCloseTo(8 / 9, 3);
    expect(Number(stuck.wasted_cost_usd)).toBeCloseTo(7.2, 6);
    expect(stuck.trace_id).toMatch(/^[0-9a-f]{32}$/);
    // the trace id is the one the loop span was written into
    const spans = (await run(sql('sessions.json', 'Loop spans (loopwatch.loop)'))).rows;
    expect(spans.find((s) => s.detector === 'stuck')!.trace_id).toBe(stuck.trace_id);
    const clean = rows.filter((r) => Number(r.loops) === 0);
    expect(clean.length).toBeGreaterThan(10);
    for (const r of clean) expect(Number(r.waste_ratio)).toBe(0);
    // a session that failed and then succeeded with the same tool recovered
    expect(rows.some((r) => Number(r.recovered) === 1 && Number(r.loops) === 0)).toBe(true);
  });

  it('Tools: latency percentiles are ordered and error rates are fractions', async () => {
    for (const r of (await run(sql('tools.json', 'Tools'))).rows) {
      expect(Number(r.p50_ms)).toBeLessThanOrEqual(Number(r.p95_ms));
      expect(Number(r.p95_ms)).toBeLessThanOrEqual(Number(r.p99_ms));
      expect(Number(r.error_rate)).toBeGreaterThanOrEqual(0);
      expect(Number(r.error_rate)).toBeLessThanOrEqual(1);
    }
  });

  it('Models: gpt-4o shows the worst tool error rate and its degradation finding', async () => {
    const rows = (await run(sql('models.json', 'Model reliability'))).rows;
    expect(rows.map((r) => r.model).sort()).toEqual(['claude-sonnet-4-5', 'gpt-4o', 'gpt-4o-mini']);
    const rate = (m: string) => Number(rows.find((r) => r.model === m)!.tool_error_rate);
    expect(rate('gpt-4o')).toBeGreaterThan(rate('gpt-4o-mini'));
    // run_tests failed then passed in every session of gpt-4o-mini that failed: recovered
    expect(Number(rows.find((r) => r.model === 'gpt-4o-mini')!.recovery_rate)).toBe(1);
    expect(Number(rows.find((r) => r.model === 'gpt-4o')!.cost_per_session_usd)).toBeGreaterThan(0);
    expect(Number(rows.find((r) => r.model === 'claude-sonnet-4-5')!.loop_rate)).toBeGreaterThan(0);
    const deg = (await run(sql('models.json', 'Degradation findings'))).rows;
    expect(deg.map((r) => r.model)).toEqual(['gpt-4o']);
    const trend = (await run(sql('models.json', 'Tool-call error rate by model, daily'))).rows;
    expect(new Set(trend.map((r) => String(r.time).slice(0, 10))).size).toBeGreaterThanOrEqual(6);
  });

  // last: it adds an LLM call to the seeded data
  it('Models: with one model chosen, the tool calls another model requested stay that model\'s', async () => {
    const toolCalls = async (variables: Record<string, VariableValue>) =>
      Object.fromEntries((await run(sql('models.json', 'Model reliability', variables))).rows.map((r) => [r.model, Number(r.tool_calls)]));
    // a gpt-4o call at the start of a gpt-4o-mini session: the session's tool calls are still gpt-4o-mini's
    const [s] = await tc.rows<{ session_id: string; agent: string; service: string }>(
      "SELECT session_id, any(agent) AS agent, any(service) AS service FROM agent_llm_calls FINAL WHERE model = 'gpt-4o-mini' GROUP BY session_id ORDER BY session_id LIMIT 1");
    await tc.collector.store.client.command({
      query: `INSERT INTO agent_llm_calls (session_id, span_id, ts, end_ts, model, agent, service, total_tokens)
              SELECT {s:String}, 'extra-gpt-4o', min(ts) - INTERVAL 1 SECOND, min(ts) - INTERVAL 1 SECOND, 'gpt-4o', {a:String}, {v:String}, 10
              FROM agent_tool_calls WHERE session_id = {s:String}`,
      query_params: { s: s!.session_id, a: s!.agent, v: s!.service },
    });
    const all = await toolCalls(allSelected());
    const only = await toolCalls({ ...allSelected(), model: { current: ['gpt-4o'], options: options.model } });
    expect(only['gpt-4o']).toBe(all['gpt-4o']);
    expect(Object.keys(only)).toEqual(['gpt-4o']);
  });

  it('Loops & waste: waste by tool adds up to waste by agent and by model, measure by measure', async () => {
    // a second detector on a stuck session's loop that wasted fewer calls but more tokens: one
    // choice of findings per session (by wasted calls) for every measure, the stuck loop's, so
    // its tokens are not the other detector's (the finding of that detector on that loop, if any,
    // replaced: a higher version). The stuck finding is picked in a subquery: a WHERE beside
    // REPLACE would read the replaced detector.
    await tc.collector.store.client.command({
      query: `INSERT INTO agent_findings SELECT * REPLACE ('redundant' AS detector, version + 1000 AS version, toUInt32(1) AS wasted_calls,
                toUInt64(5000000) AS wasted_tokens, toFloat64(0.01) AS wasted_cost_usd)
              FROM (SELECT * FROM agent_findings FINAL WHERE detector = 'stuck' LIMIT 1)`,
      clickhouse_settings: { insert_deduplication_token: `extra-finding-${Date.now()}` },
    });
    const totals = async (title: string) => {
      const rows = (await run(sql('loops-and-waste.json', title))).rows;
      const sum = (k: string) => rows.reduce((a, r) => a + Number(r[k]), 0);
      return { n: rows.length, calls: sum('wasted_calls'), tokens: sum('wasted_tokens'), cost: sum('wasted_cost_usd') };
    };
    const byAgent = await totals('Waste by agent');
    const byModel = await totals('Waste by model');
    const byTool = await totals('Waste by tool');
    expect(byAgent.tokens).toBeLessThan(5_000_000);
    for (const other of [byModel, byTool]) {
      // each row is rounded (calls to 0.1, tokens to 1, cost to 1e-6)
      expect(Math.abs(other.calls - byAgent.calls)).toBeLessThanOrEqual(0.05 * byTool.n);
      expect(Math.abs(other.tokens - byAgent.tokens)).toBeLessThanOrEqual(byTool.n);
      expect(Math.abs(other.cost - byAgent.cost)).toBeLessThanOrEqual(1e-6 * byTool.n);
    }
  });

  it('separate loops of a session add up; redundant calls are waste but not a loop', async () => {
    // one session, an oscillation and later a runaway that do not overlap, redundant calls inside
    // the oscillation; another agent's session with redundant calls only
    const finding = (id: string, session: string, agent: string, detector: string, severity: string, fromMin: number, toMin: number, calls: number, cost: number) =>
      tc.collector.store.client.command({
        query: `INSERT INTO agent_findings SELECT * REPLACE ('${id}' AS finding_id, toUInt32(1) AS version, '${detector}' AS detector, '${severity}' AS severity,
                  '${session}' AS session_id, '${agent}' AS agent, now64(9) - toIntervalMinute(${fromMin}) AS first_ts, now64(9) - toIntervalMinute(${toMin}) AS last_ts,
                  toUInt32(${calls}) AS wasted_calls, toUInt64(${calls * 1000}) AS wasted_tokens, toFloat64(${cost}) AS wasted_cost_usd, toUInt64(0) AS wasted_time_ns)
                FROM (SELECT * FROM agent_findings FINAL LIMIT 1)`,
        clickhouse_settings: { insert_deduplication_token: `${id}-${Date.now()}` },
      });
    await finding('mix-osc', 'mix-1', 'mixer', 'oscillation', 'warning', 60, 50, 6, 6);
    await finding('mix-red', 'mix-1', 'mixer', 'redundant', 'info', 58, 52, 6, 6);
    await finding('mix-run', 'mix-1', 'mixer', 'runaway', 'critical', 45, 30, 8, 8);
    await finding('cfg-red', 'cfg-1', 'config-reader', 'redundant', 'info', 20, 10, 3, 0.5);
    // two runs (a stuck read, then a storm) and redundant calls spanning both: adding them must
    // not lower the waste (one cluster of all three counted 5); touching runs are two loops
    await finding('br-stuck', 'br-1', 'bridged', 'stuck', 'warning', 30, 25, 4, 4);
    await finding('br-storm', 'br-1', 'bridged', 'retry_storm', 'warning', 25, 20, 5, 5);
    await finding('br-red', 'br-1', 'bridged', 'redundant', 'info', 31, 19, 2, 2);
    const rows = async (file: string, title: string) => (await run(sql(file, title))).rows;
    const mixer = (await rows('loops-and-waste.json', 'Waste by agent')).find((r) => r.agent === 'mixer')!;
    expect(mixer).toMatchObject({ findings: 3, sessions: 1 });
    expect(Number(mixer.wasted_calls)).toBe(14); // 6 + 8, not the largest detector's 8
    expect(Number(mixer.wasted_cost_usd)).toBeCloseTo(14, 6);
    const top = await rows('overview.json', 'Top looping agents');
    expect(top.find((r) => r.agent === 'mixer')).toMatchObject({ loops: 2 });
    const cfg = top.find((r) => r.agent === 'config-reader');
    expect(cfg === undefined || Number(cfg.loops) === 0).toBe(true);
    const bridged = (await rows('loops-and-waste.json', 'Waste by agent')).find((r) => r.agent === 'bridged')!;
    expect(Number(bridged.wasted_calls)).toBe(9);
    const cfgWaste = (await rows('loops-and-waste.json', 'Waste by agent')).find((r) => r.agent === 'config-reader')!;
    expect(Number(cfgWaste.wasted_calls)).toBe(3); // waste all the same
    // by tool: the same totals as by agent
    const byTool = (await rows('loops-and-waste.json', 'Waste by tool')).reduce((a, r) => a + Number(r.wasted_calls), 0);
    const byAgent = (await rows('loops-and-waste.json', 'Waste by agent')).reduce((a, r) => a + Number(r.wasted_calls), 0);
    expect(Math.abs(byTool - byAgent)).toBeLessThan(1);
  });

  it('a session of LLM calls only is counted and scored', async () => {
    for (let i = 0; i < 3; i++) {
      await tc.collector.store.client.command({
        query: `INSERT INTO agent_llm_calls (session_id, trace_id, span_id, ts, end_ts, agent, service, model, status, input_tokens, output_tokens, total_tokens)
                VALUES ('chat-only-1', 'c0ffee', 'chat${i}', now64(9) - toIntervalMinute(${10 - i}), now64(9) - toIntervalMinute(${9 - i}), 'chatter', 'chat-svc', 'gpt-4o', '${i === 1 ? 'error' : 'ok'}', 100, 10, 110)`,
      });
    }
    const vars = { ...allSelected(), agent: { current: ['chatter'], options: [...(options.agent ?? []), 'chatter'] } };
    const [sessions] = (await run(sql('overview.json', 'Sessions', vars))).rows;
    expect(Number(sessions!.sessions)).toBe(1);
    const overTime = (await run(sql('sessions.json', 'Sessions over time', vars))).rows;
    expect(overTime.reduce((a, r) => a + Number(r.sessions), 0)).toBe(1);
    const row = (await run(sql('sessions.json', 'Session scorecard'))).rows.find((r) => r.session_id === 'chat-only-1')!;
    expect(row).toMatchObject({ agent: 'chatter', service: 'chat-svc', trace_id: 'c0ffee', tool_calls: 0, llm_calls: 3, error_rate: 0, waste_ratio: 0, ended_cleanly: 1 });
    expect(Number(row.tokens)).toBe(330);
  });

  it('Session scorecard: of more sessions than it shows, the 500 whose first call in the range is newest, newest first', async () => {
    // 520 sessions newer than every seeded one: 50 ms apart, within the range's last minute
    await tc.collector.store.client.command({
      query: `INSERT INTO agent_llm_calls (session_id, trace_id, span_id, ts, end_ts, agent, service, model, status, input_tokens, output_tokens, total_tokens)
              SELECT concat('many-', toString(number)), 'feed', concat('m', toString(number)),
                     fromUnixTimestamp64Milli({newest:Int64}) - toIntervalMillisecond(50 * number) AS t, t + toIntervalMillisecond(10),
                     'many', 'many-svc', 'gpt-4o', 'ok', 10, 1, 11
              FROM numbers(520)`,
      query_params: { newest: range.to.getTime() - 5_000 },
    });
    const rows = (await run(sql('sessions.json', 'Session scorecard'))).rows;
    expect(rows.map((r) => r.session_id)).toEqual(Array.from({ length: 500 }, (_, i) => `many-${i}`));
  });

  it('Loop spans: each loop with its latest figures, also a version that wrote no span (a loop that stopped growing)', async () => {
    const before = (await run(sql('sessions.json', 'Loop spans (loopwatch.loop)'))).rows.find((r) => r.detector === 'stuck')!;
    await tc.collector.store.client.command({
      query: `INSERT INTO agent_findings SELECT * REPLACE (version + 1 AS version, repeats + 5 AS repeats) FROM agent_findings FINAL
              WHERE detector = 'stuck' AND session_id = {s:String}`,
      query_params: { s: String(before.session_id) },
      clickhouse_settings: { insert_deduplication_token: `newer-version-${Date.now()}` },
    });
    const after = (await run(sql('sessions.json', 'Loop spans (loopwatch.loop)'))).rows.find((r) => r.detector === 'stuck' && r.session_id === before.session_id)!;
    expect(Number(after.repeats)).toBe(Number(before.repeats) + 5);
    expect(after.trace_id).toBe(before.trace_id);
  });

  // last: it adds a tool call to the seeded data
  it('Models, Overview, Tools: a call the LoopGuard halted before it ran is no tool call nor a failure, as in the report; Sessions counts it apart, as the scorecard', async () => {
    const figures = async () => ({
      models: Object.fromEntries((await run(sql('models.json', 'Model reliability'))).rows.map((r) => [r.model, [Number(r.tool_calls), Number(r.tool_error_rate)]])),
      errors: (await run(sql('overview.json', 'Tool calls over time by status'))).rows.filter((r) => r.status === 'error').reduce((n, r) => n + Number(r.calls), 0),
      tools: Object.fromEntries((await run(sql('tools.json', 'Tools'))).rows.map((r) => [r.tool, [Number(r.errors), Number(r.p50_ms)]])),
      topErrors: (await run(sql('tools.json', 'Top tool errors'))).rows.map((r) => [r.tool, r.error_type, Number(r.errors)]),
    });
    const before = await figures();
    const [s] = await tc.rows<{ session_id: string }>(
      "SELECT session_id FROM agent_llm_calls FINAL WHERE model = 'gpt-4o-mini' GROUP BY session_id ORDER BY session_id LIMIT 1");
    await tc.collector.store.client.command({
      query: `INSERT INTO agent_tool_calls (session_id, span_id, ts, end_ts, tool, agent, service, status, error_type)
              SELECT session_id, 'halted-call', max(ts) + INTERVAL 1 SECOND, max(ts) + INTERVAL 1 SECOND, any(tool), any(agent), any(service), 'error', 'LoopDetectedError'
              FROM agent_tool_calls WHERE session_id = {s:String} GROUP BY session_id`,
      query_params: { s: s!.session_id },
    });
    expect(await tc.rows("SELECT toUInt32(count()) AS n FROM agent_tool_calls WHERE span_id = 'halted-call'")).toEqual([{ n: 1 }]);
    expect(await figures()).toEqual(before);
    // a call, as everywhere: one more in the Tools table, shown as halted over time
    const halted = (await run(sql('overview.json', 'Tool calls over time by status'))).rows.filter((r) => r.status === 'halted');
    expect(halted.reduce((n, r) => n + Number(r.calls), 0)).toBe(1);
    // the Sessions scorecard (the 500 newest sessions of the agent): the same errors, halted and retries as the report's
    const shown = s!.session_id;
    const [{ agent }] = await tc.rows<{ agent: string }>('SELECT any(agent) AS agent FROM agent_tool_calls WHERE session_id = {s:String}', { s: shown }) as [{ agent: string }];
    const ofAgent = { ...allSelected(), agent: { current: [agent], options: options.agent } };
    const panel = (await run(sql('sessions.json', 'Session scorecard', ofAgent))).rows.find((r) => r.session_id === shown)!;
    const [card] = await runReport(tc.collector.store.client, 'session-scorecard', { from: 0, to: new Date(Date.now() + 86_400_000), session_id: shown, limit: 1 });
    expect({ errors: Number(panel.tool_errors), halted: Number(panel.halted), retries: Number(panel.retries), calls: Number(panel.tool_calls) })
      .toEqual({ errors: card!.errors, halted: 1, retries: card!.retries, calls: card!.calls });
  });
});

describe('the per-tool series with many tools', () => {
  it('show the 10 most called tools of the range, not a series per tool; the table lists them all', async () => {
    const client = tc.collector.store.client;
    // 30 more tools, tool k called k + 200 times (more than any seeded tool): the 10 busiest are the last ten
    const { buildSession, insertSession } = await import('../detectors/helpers.js');
    const calls = Array.from({ length: 30 }, (_, k) => Array.from({ length: k + 200 }, (_, i) => ({ tool: `many_tool_${String(k).padStart(2, '0')}`, args: { i }, result: `r${i}`, tokensIn: 0 }))).flat();
    await insertSession(client, buildSession('grafana-many-tools', calls, { startMs: now.getTime() - 3_600_000, gapMs: 1 }));
    const p = (title: string) => {
      const panel = panelsOf(boards.find((b) => b.file === 'tools.json')!.json).find((x) => x.title === title)!;
      return expandPanelQuery((panel.targets as Json[])[0]!.rawSql as string, { ...range, variables: allSelected() });
    };
    const busiest = Array.from({ length: 10 }, (_, j) => `many_tool_${29 - j}`).sort();
    for (const title of ['Calls per tool (10 most called)', 'Error rate per tool (10 most called)', 'Latency p95 per tool (10 most called)']) {
      const shown = [...new Set((await run(p(title))).rows.map((r) => r.tool as string))].sort();
      expect(shown, title).toEqual(busiest);
    }
    const table = (await run(p('Tools'))).rows.map((r) => r.tool as string);
    expect(table.filter((t) => t.startsWith('many_tool_'))).toHaveLength(30);
    expect(table[0]).toBe('many_tool_29');
  });
});
