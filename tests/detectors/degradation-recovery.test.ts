// A degraded model-day that got better is withdrawn: the degradation finding is judged again on
// every pass that runs the detector (a full pass: every day; hourly: yesterday and today), and a
// pass that no longer reports it deletes it, as the per-call detectors' findings are for the
// sessions a pass examined. Before, it stayed (and the degradation alert with it, for 24 h).
// Sessions over OTLP to a real collector, the real detector files.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDetectorFiles, runDetectors } from '../../collector/src/detect/run-detectors.js';
import { generateDailySessions } from '../../corpus/generate.js';
import { sendSessions } from '../../corpus/otlp.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

const DAY = 86_400_000;
const firstDay = Math.floor(Date.now() / DAY) * DAY - 8 * DAY;
let tc: TestCollector;

beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
}, 60_000);
afterAll(async () => {
  await tc?.close();
});

const degraded = () => tc.rows<{ session_id: string; message: string }>("SELECT session_id, message FROM agent_findings FINAL WHERE detector = 'degradation'");
const loopSpans = async () => Number((await tc.rows<{ n: string }>(
  "SELECT toString(count()) AS n FROM otel_traces WHERE SpanName = 'loopwatch.loop' AND SpanAttributes['loop.detector'] = 'degradation'"))[0]!.n);

describe('degradation', () => {
  it('a model-day that is no longer worse than its baseline is withdrawn, with its loop span', async () => {
    // a week at 3% tool errors, then a day at 30%
    await sendSessions(tc.url, generateDailySessions({ firstDayMs: firstDay, days: 8, sessionsPerDay: 30, models: ['gpt-4o'], errorRate: (_m, d) => (d === 7 ? 0.3 : 0.03) }));
    await tc.collector.flush();
    expect((await runDetectors(tc.collector.store.client, { full: true })).errors).toEqual({});
    const found = await degraded();
    expect(found.map((f) => f.session_id)).toEqual([`model:gpt-4o@${new Date(firstDay + 7 * DAY).toISOString().slice(0, 10)}`]);
    expect(found[0]!.message).toMatch(/tool error rate/);
    expect(await loopSpans()).toBe(1);

    // the rest of that day: many more sessions, all clean; the day's rate falls under the baseline's
    await sendSessions(tc.url, generateDailySessions({ firstDayMs: firstDay + 7 * DAY, days: 1, sessionsPerDay: 400, models: ['gpt-4o'], errorRate: () => 0, seed: 99 }));
    await tc.collector.flush();
    const r = await runDetectors(tc.collector.store.client, { full: true });
    expect(r.errors).toEqual({});
    expect(r.withdrawnFindings).toBeGreaterThanOrEqual(1);
    expect(await degraded()).toEqual([]);
    expect(await loopSpans()).toBe(0);

    // and worse again: found again (version 1 again, the same loop span id), with its loop span
    // (an insert token of the span ids alone had the new span dropped as the deleted one's duplicate)
    await sendSessions(tc.url, generateDailySessions({ firstDayMs: firstDay + 7 * DAY, days: 1, sessionsPerDay: 600, models: ['gpt-4o'], errorRate: () => 0.6, seed: 98 }));
    await tc.collector.flush();
    expect((await runDetectors(tc.collector.store.client, { full: true })).errors).toEqual({});
    expect((await degraded()).length).toBe(1);
    expect(await loopSpans()).toBe(1);
  }, 180_000);

  it('withdraws only the days a run judged: none within an hour, yesterday and today across one, every day on a full pass', async () => {
    const file = loadDetectorFiles().find((f) => f.name === 'degradation')!;
    expect(file.judged).not.toBeNull();
    const today = Math.floor(Date.now() / DAY) * DAY;
    const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
    const judged = async (sinceMs: number, untilMs: number, dayMs: number) => {
      const [r] = await tc.rows<{ j: number }>(`SELECT toUInt8(${file.judged}) AS j FROM (SELECT {s:String} AS session_id)`,
        { s: `model:vertex/claude@20240620@${day(dayMs)}`, since: (sinceMs / 1000).toFixed(3), until: (untilMs / 1000).toFixed(3) });
      return r!.j === 1;
    };
    const hour = today + 10 * 3600_000;
    expect(await judged(hour + 60_000, hour + 120_000, today - DAY)).toBe(false); // within an hour: the detector judged nothing
    expect(await judged(hour - 5_000, hour + 5_000, today - DAY)).toBe(true);
    expect(await judged(hour - 5_000, hour + 5_000, today)).toBe(true);
    expect(await judged(hour - 5_000, hour + 5_000, today - 2 * DAY)).toBe(false); // older days: kept as judged then
    expect(await judged(0, hour, today - 5 * DAY)).toBe(true); // a full pass judges every day
  });
});
