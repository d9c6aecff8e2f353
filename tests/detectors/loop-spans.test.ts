// Loop spans of a loop that keeps growing: a span is written for a new finding, then at its
// doublings, severity changes, first known waste, and once per slot of the store's clock (the
// loop alert reads the last 5 minutes), not for every version (a soak measured an hour-long loop
// at ~720 spans per detector in its trace). Real engine, real detector passes with set clocks
// (ahead of the store's: a collector of its own, so that no other test's watermarks move).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LOOP_SPAN_EVERY_MS, runDetectors, writesLoopSpan } from '../../collector/src/detect/run-detectors.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { buildSession, insertSpans, times } from './helpers.js';

let tc: TestCollector;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
});
afterAll(async () => {
  await tc?.close();
});

describe('loop spans of a growing loop', () => {
  it('which version writes one', () => {
    const v = (repeats: number, severity = 'warning', tokens = 1000, cost = 0.01) => ({ repeats, severity, wasted_tokens: tokens, wasted_cost_usd: cost, detected_at: '2026-12-06 10:00:05.000' });
    const at = '2026-12-06 10:00:10.000';
    expect(writesLoopSpan(v(5), v(6), at)).toBe(false);
    expect(writesLoopSpan(v(7), v(8), at)).toBe(true); // the next power of two
    expect(writesLoopSpan(v(9), v(10, 'critical'), at)).toBe(true);
    expect(writesLoopSpan(v(9, 'warning', 0, 0), v(9, 'warning', 4400, 0.01), at)).toBe(true); // its waste first known
    expect(writesLoopSpan(v(9, 'warning', 1000, 0), v(9, 'warning', 1000, 0.01), at)).toBe(true);
    expect(writesLoopSpan(v(9), v(10), '2026-12-06 10:03:59.999')).toBe(false);
    expect(writesLoopSpan(v(9), v(10), '2026-12-06 10:04:00.000')).toBe(true); // another slot of LOOP_SPAN_EVERY_MS
  });

  it('a loop that grows pass after pass writes loop spans at its doublings and severity changes, and once per slot of time, not one per version', async () => {
    const client = tc.collector.store.client;
    const s = buildSession('sql-long-loop', times(20, { tool: 'poll_build', args: { id: 9 }, result: 'running' }));
    const params = { budgetMaxCalls: 0, watermarkOverlapS: 3600 };
    // pass clocks in one slot (the next one, a little ahead of the store's clock), then one in the slot after it
    const base = (Math.floor(Date.now() / LOOP_SPAN_EVERY_MS) + 1) * LOOP_SPAN_EVERY_MS + 1000;
    let inserted = 0;
    const upTo = async (calls: number, now: number) => {
      const end = calls === 20 ? s.rows.length : s.toolRowIndex[calls - 1]! + 1;
      await insertSpans(client, s.rows.slice(inserted, end));
      inserted = end;
      expect((await runDetectors(client, { params, now: new Date(now) })).errors).toEqual({});
    };
    await upTo(3, base);
    for (let calls = 4; calls <= 19; calls++) await upTo(calls, base + calls * 1000);
    const spans = async () => (await tc.rows<{ repeats: string; severity: string }>(
      `SELECT SpanAttributes['loop.repeats'] AS repeats, SpanAttributes['loop.severity'] AS severity FROM otel_traces
       WHERE SpanName = 'loopwatch.loop' AND SpanAttributes['loop.session_id'] = 'sql-long-loop' AND SpanAttributes['loop.detector'] = 'stuck'`))
      .map((r) => [Number(r.repeats), r.severity]).sort((a, b) => Number(a[0]) - Number(b[0]));
    const [f] = await tc.rows<{ version: string; repeats: string }>(`SELECT version, repeats FROM agent_findings FINAL WHERE session_id = 'sql-long-loop' AND detector = 'stuck'`);
    expect([Number(f!.version), Number(f!.repeats)]).toEqual([17, 19]);
    // new (3), the next power of two (4, 8, 16), critical from twice stuckMinRun (6)
    expect(await spans()).toEqual([[3, 'warning'], [4, 'warning'], [6, 'critical'], [8, 'critical'], [16, 'critical']]);
    // a pass in the next slot of time writes the version it stores
    await upTo(20, base + LOOP_SPAN_EVERY_MS);
    expect((await spans()).at(-1)).toEqual([20, 'critical']);
  });
});
