// The waste rule (which findings make up a session's waste, so that detectors on the same loop
// count once and separate loops add up) is written three times, because each place needs its SQL
// whole: the dashboards (grafana/build-dashboards.ts chosenFindings), the scorecard report
// (queries/reports/session-scorecard.sql) and the waste alert (grafana/provisioning/alerting).
// On random findings, all three agree with each other and with the rule written out here.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Rng } from '../../corpus/generate.js';
import { runReport } from '../../queries/src/reports.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { alertRules, dashboards, panelsOf, type Json } from './files.js';
import { expandAlertQuery, expandPanelQuery, type VariableValue } from './macros.js';
import { findingsFor, insertFindings, sendSessions, type FindingRow, type SessionSpec } from './seed.js';

const RUN = ['repeat', 'stuck', 'oscillation', 'retry_storm'];
const DETECTORS = [...RUN, 'redundant', 'error_loop', 'runaway'];
const SESSIONS = 40;
const STEPS = 300;
// findings lie in the first LOOPS steps, so that they overlap often
const LOOPS = 40;

let tc: TestCollector;
const now = new Date();
let findings: FindingRow[] = [];

beforeAll(async () => {
  // no scheduled passes: a pass withdraws the findings written here by hand, which no detector reports
  tc = await startTestCollector({ detect: { enabled: false } });
  const rng = new Rng(20261206);
  // one agent (and service: a request each) per session, so a per-agent figure is the session's
  const specs: SessionSpec[] = Array.from({ length: SESSIONS }, (_, i) => ({
    service: `svc-${i}`, agent: `agent-${String(i).padStart(2, '0')}`, model: 'gpt-4o', provider: 'openai',
    start: new Date(now.getTime() - (50 - i) * 60_000), llmMs: 50,
    steps: Array.from({ length: STEPS }, (_, k) => ({ tool: `tool_${k % 5}`, args: { k }, result: `r${k}`, toolMs: 5 })),
    findings: [],
  }));
  for (const spec of specs) {
    const taken = new Set<string>();
    for (let n = rng.int(1, 6); n > 0; n--) {
      const detector = rng.pick(DETECTORS);
      const from = rng.int(0, LOOPS);
      const to = from + rng.int(1, detector === 'runaway' || detector === 'redundant' ? 30 : 6);
      if (taken.has(`${detector}:${from}`)) continue; // the same finding id
      taken.add(`${detector}:${from}`);
      spec.findings!.push({ detector, severity: detector === 'redundant' ? 'warning' : 'critical', from, to, message: `${detector} ${from}-${to}` });
    }
  }
  const built = await sendSessions(tc, specs);
  // wasted figures of their own (not from the span ranges): ties between choices become unlikely
  findings = findingsFor(built, now).map((f) => ({ ...f, wasted_calls: rng.int(1, 150), wasted_cost_usd: rng.int(1, 9999) / 1000 }));
  await insertFindings(tc, findings);
}, 120_000);

afterAll(async () => {
  await tc?.close();
});

interface Waste {
  calls: number;
  cost: number;
  /** Another choice wasted as many calls: the cost may be either's. */
  tie: boolean;
}

/** The rule, as docs/grafana.md states it, over one session's findings. */
function expectedWaste(fs: FindingRow[]): Waste {
  const overlaps = (a: { first: string; last: string }, b: { first: string; last: string }) => a.first < b.last && a.last > b.first;
  // run detectors: clusters of findings that overlap in time (ordered by start, a finding that
  // starts at or after the latest end so far starts a new cluster), each counted by its largest detector
  const runs = fs.filter((f) => RUN.includes(f.detector)).sort((a, b) => a.first_ts.localeCompare(b.first_ts) || a.last_ts.localeCompare(b.last_ts) || a.finding_id.localeCompare(b.finding_id));
  const clusters: { first: string; last: string; members: FindingRow[] }[] = [];
  for (const f of runs) {
    const c = clusters[clusters.length - 1];
    if (c && f.first_ts < c.last) {
      c.members.push(f);
      if (f.last_ts > c.last) c.last = f.last_ts;
    } else clusters.push({ first: f.first_ts, last: f.last_ts, members: [f] });
  }
  const byDetector = (xs: FindingRow[]) => {
    const m = new Map<string, { calls: number; cost: number; first: string; last: string }>();
    for (const f of xs) {
      const d = m.get(f.detector) ?? { calls: 0, cost: 0, first: f.first_ts, last: f.last_ts };
      d.calls += f.wasted_calls;
      d.cost += f.wasted_cost_usd;
      if (f.first_ts < d.first) d.first = f.first_ts;
      if (f.last_ts > d.last) d.last = f.last_ts;
      m.set(f.detector, d);
    }
    return m;
  };
  const counted = clusters.map((c) => {
    const top = [...byDetector(c.members).values()].sort((a, b) => b.calls - a.calls);
    return { ...c, calls: top[0]!.calls, cost: top[0]!.cost, tie: top.length > 1 && top[1]!.calls === top[0]!.calls };
  });
  // the choices: the clusters alone, or a spread-out detector whole with the clusters outside its span
  const choices = [{ calls: 0, cost: 0, tie: false }];
  for (const c of counted) {
    choices[0]!.calls += c.calls;
    choices[0]!.cost += c.cost;
    choices[0]!.tie ||= c.tie;
  }
  for (const w of byDetector(fs.filter((f) => !RUN.includes(f.detector))).values()) {
    const outside = counted.filter((c) => !overlaps(c, w));
    choices.push({ calls: w.calls + outside.reduce((a, c) => a + c.calls, 0), cost: w.cost + outside.reduce((a, c) => a + c.cost, 0), tie: outside.some((c) => c.tie) });
  }
  const best = Math.max(...choices.map((c) => c.calls));
  const winners = choices.filter((c) => c.calls === best);
  return { calls: best, cost: winners[0]!.cost, tie: winners.length > 1 || winners[0]!.tie };
}

const range = { from: new Date(now.getTime() - 2 * 3600_000), to: new Date(now.getTime() + 60_000), intervalMs: 60_000 };

async function panelRows(file: string, title: string): Promise<Record<string, unknown>[]> {
  const p = panelsOf(dashboards().find((b) => b.file === file)!.json).find((x) => x.title === title)!;
  const all: Record<string, VariableValue> = {};
  for (const v of ['agent', 'model', 'service']) all[v] = { current: ['$__all'], options: [] };
  const rs = await tc.collector.store.client.query({ query: expandPanelQuery((p.targets as Json[])[0]!.rawSql as string, { ...range, variables: all }), format: 'JSONEachRow' });
  return rs.json();
}

describe('the waste rule, in the dashboards, the scorecard report and the waste alert', () => {
  it('agrees with the rule on random findings, and the three agree with each other', async () => {
    const bySession = new Map<string, FindingRow[]>();
    for (const f of findings) bySession.set(f.session_id, [...(bySession.get(f.session_id) ?? []), f]);
    const expected = new Map([...bySession].map(([id, fs]) => [fs[0]!.agent, { id, ...expectedWaste(fs) }]));
    expect(expected.size).toBe(SESSIONS);
    // the data holds what the rule is about: overlapping run findings, and spread-out ones beside them
    expect([...bySession.values()].filter((fs) => fs.filter((f) => RUN.includes(f.detector)).length > 1).length).toBeGreaterThan(5);
    expect([...bySession.values()].filter((fs) => fs.some((f) => !RUN.includes(f.detector)) && fs.some((f) => RUN.includes(f.detector))).length).toBeGreaterThan(5);

    // dashboards: waste by agent (Loops & waste) and the session scorecard panel (Sessions)
    const byAgent = new Map((await panelRows('loops-and-waste.json', 'Waste by agent')).map((r) => [String(r.agent), r]));
    const scorecardPanel = new Map((await panelRows('sessions.json', 'Session scorecard')).map((r) => [String(r.session_id), r]));
    // the report
    const report = new Map((await runReport(tc.collector.store.client, 'session-scorecard', { from: range.from, to: range.to })).map((r) => [r.session_id, r]));
    // the alert, every agent over a budget of -1 USD; every loop lies inside its hour whole
    const rule = alertRules().find((r) => r.uid === 'loopwatch-waste-over-budget')!;
    const budget = "getSettingOrDefault('custom_loopwatch_waste_budget_usd_per_hour', '5')";
    expect(rule.rawSql).toContain(budget);
    const alertSql = expandAlertQuery(rule.rawSql.replace(budget, "'-1'"), rule.from, rule.to, new Date(now.getTime() + 60_000));
    const alert = new Map((await (await tc.collector.store.client.query({ query: alertSql, format: 'JSONEachRow' })).json<{ agent: string; wasted_cost_usd: number }>()).map((r) => [r.agent, Number(r.wasted_cost_usd)]));

    let ties = 0;
    for (const [agent, e] of expected) {
      const where = `${agent} (${e.id})`;
      expect(Number(byAgent.get(agent)?.wasted_calls), `Waste by agent, ${where}`).toBe(e.calls);
      // the scorecard caps it at the session's calls (a waste ratio of at most 1)
      expect(Number(scorecardPanel.get(e.id)?.wasted_calls), `Session scorecard panel, ${where}`).toBe(Math.min(e.calls, STEPS));
      expect(Number(report.get(e.id)?.wasted_calls), `scorecard report, ${where}`).toBe(Math.min(e.calls, STEPS));
      if (e.tie) {
        ties++;
        continue; // which of two equal choices is taken is not the rule's: the three may differ in cost
      }
      expect(Number(byAgent.get(agent)?.wasted_cost_usd), `Waste by agent cost, ${where}`).toBeCloseTo(e.cost, 6);
      expect(Number(scorecardPanel.get(e.id)?.wasted_cost_usd), `Session scorecard panel cost, ${where}`).toBeCloseTo(e.cost, 6);
      expect(alert.get(agent), `waste alert, ${where}`).toBeCloseTo(e.cost, 3);
    }
    expect(ties).toBeLessThan(SESSIONS / 4);
  });
});
