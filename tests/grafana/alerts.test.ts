// The provisioned alert rules fire on seeded loops: loop spans in the last 5 minutes per
// agent, waste cost over the hourly budget, degradation findings. Their SQL runs, with the
// plugin's macros expanded over each rule's time range, on the embedded ClickHouse of a real
// collector fed over OTLP.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDetectors } from '../../collector/src/detect/run-detectors.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { evaluateRule } from './alerts.js';
import { alertRules } from './files.js';
import { seedLoops } from './seed.js';

let tc: TestCollector;
const rules = Object.fromEntries(alertRules().map((r) => [r.uid, r]));

beforeAll(async () => {
  tc = await startTestCollector();
  await seedLoops(tc, new Date());
}, 120_000);

afterAll(async () => {
  await tc?.close();
});

const firing = (xs: { labels: Record<string, string>; firing: boolean }[]) => xs.filter((x) => x.firing).map((x) => x.labels);

describe('alert rules on looping agents', () => {
  it('loop detected: one instance per agent with a loopwatch.loop span in the last 5 minutes', async () => {
    const instances = await evaluateRule(tc, rules['loopwatch-loop-detected']!);
    expect(firing(instances).sort((a, b) => a.agent!.localeCompare(b.agent!))).toEqual([
      { agent: 'coder', service: 'coder-svc' },
      { agent: 'planner', service: 'browser-svc' },
      { agent: 'researcher', service: 'research-svc' },
    ]);
    // the value is the looping sessions, not the loop spans (overlapping detectors, versions)
    const sessions = await tc.rows<{ agent: string; n: string }>(
      "SELECT agent, toString(uniqExact(session_id)) AS n FROM agent_findings FINAL WHERE detector != 'degradation' GROUP BY agent");
    for (const i of instances) expect(i.value).toBe(Number(sessions.find((s) => s.agent === i.labels.agent)!.n));
  });

  it('loop detected: quiet once the loops are older than the rule’s 5 minute window', async () => {
    const later = new Date(Date.now() + 10 * 60_000);
    expect(firing(await evaluateRule(tc, rules['loopwatch-loop-detected']!, later))).toEqual([]);
  });

  it('waste over budget: fires for the agent whose loops cost more than 5 USD in the hour, not for cheap loops', async () => {
    const instances = await evaluateRule(tc, rules['loopwatch-waste-over-budget']!);
    expect(firing(instances)).toEqual([{ agent: 'researcher' }]);
    expect(instances[0]!.value).toBeCloseTo(7.2, 4);
  });

  it('waste over budget: a loop counts for the share of its time inside the hour', async () => {
    // the researcher's loop: evaluated when only its second half is in the hour, half its waste counts
    const [loop] = await tc.rows<{ first: string; last: string }>(
      `SELECT toString(toUnixTimestamp64Milli(min(first_ts))) AS first, toString(toUnixTimestamp64Milli(max(last_ts))) AS last
       FROM agent_findings FINAL WHERE agent = 'researcher' AND detector = 'stuck'`);
    const first = Number(loop!.first), last = Number(loop!.last);
    expect(last - first).toBeGreaterThan(1000);
    const at = new Date((first + last) / 2 + 3_600_000); // the hour begins halfway through the loop
    const instances = await evaluateRule(tc, rules['loopwatch-waste-over-budget']!, at);
    expect(firing(instances)).toEqual([]); // 7.2 USD in all, about 3.6 in this hour: under the 5 USD budget
  });

  it('waste over budget: separate loops of one session add up (3 + 3 USD is over the 5 USD budget)', async () => {
    const finding = (id: string, detector: string, fromMin: number, toMin: number) =>
      tc.collector.store.client.command({
        query: `INSERT INTO agent_findings SELECT * REPLACE ('${id}' AS finding_id, toUInt32(1) AS version, '${detector}' AS detector, 'warning' AS severity,
                  'two-loops' AS session_id, 'two-looper' AS agent, now64(9) - toIntervalMinute(${fromMin}) AS first_ts,
                  now64(9) - toIntervalMinute(${toMin}) AS last_ts, toFloat64(3) AS wasted_cost_usd)
                FROM (SELECT * FROM agent_findings FINAL WHERE detector != 'degradation' LIMIT 1)`,
        clickhouse_settings: { insert_deduplication_token: `${id}-${Date.now()}` },
      });
    await finding('two-osc', 'oscillation', 40, 30);
    await finding('two-storm', 'retry_storm', 20, 10);
    try {
      const instances = await evaluateRule(tc, rules['loopwatch-waste-over-budget']!);
      const mine = instances.find((i) => i.labels.agent === 'two-looper');
      expect(mine?.firing).toBe(true);
      expect(mine!.value).toBeCloseTo(6, 4);
    } finally {
      await tc.collector.store.client.command({ query: "DELETE FROM agent_findings WHERE session_id = 'two-loops'" });
    }
  });

  it('waste over budget: the budget is the profile setting, 5 USD when unset', async () => {
    const rs = await tc.collector.store.client.query({
      query: "SELECT toFloat64OrZero(toString(getSettingOrDefault('custom_loopwatch_waste_budget_usd_per_hour', '5'))) AS budget",
      format: 'JSONEachRow',
    });
    expect(await rs.json()).toEqual([{ budget: 5 }]);
  });

  it('model degradation: fires for the degraded model (a finding is the model\'s day, whatever agents ran it)', async () => {
    const instances = await evaluateRule(tc, rules['loopwatch-model-degradation']!);
    expect(firing(instances)).toEqual([{ model: 'gpt-4o' }]);
  });

  it('model degradation: the seeded finding is the one the detector reports (a pass judging the day keeps it)', async () => {
    // the collector's scheduled passes judge the day too: a finding they do not report is withdrawn
    expect((await runDetectors(tc.collector.store.client, { full: true })).errors).toEqual({});
    expect(firing(await evaluateRule(tc, rules['loopwatch-model-degradation']!))).toEqual([{ model: 'gpt-4o' }]);
  });
});
