// Five calls of a tool failing one after the other, all within one millisecond (a tight retry
// loop around a call that fails at once): SQL (nanoseconds) finds a retry storm, and so does the
// LoopGuard fed the same calls as agent_tool_calls rows, with ts/end_ts as DateTime64 text or
// bigint nanoseconds (forms ObservedCall takes): times keep their fraction of a millisecond.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runDetectors } from '../../collector/src/detect/run-detectors.js';
import { LoopGuard, type ObservedCall } from '../../instrumentation/src/guard/loop-guard.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { buildSession, dt64, insertSession } from './helpers.js';

let tc: TestCollector;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
});
afterAll(async () => {
  await tc?.close();
});

it('sequential failures within one millisecond: SQL, and the guard fed agent_tool_calls rows, agree', async () => {
  const session = 'storm-one-ms';
  const s = buildSession(session, [0, 1, 2, 3, 4].map(() => ({ tool: 'fetch_url', args: { url: 'https://example.com' }, error: { type: 'Error', message: 'connect ECONNREFUSED 10.0.0.1:443' } })));
  // the five tool spans: 100 us each, 190 us apart, inside one millisecond (no LLM call between: a retry loop in code)
  const base = (BigInt(Date.now() - 30_000) / 1000n) * 1_000_000_000n + 100_000n; // a second's start + 100 us
  s.rows = s.rows.filter((r) => !String(r.SpanName).startsWith('chat'));
  s.toolRowIndex.forEach((_, i) => {
    const row = s.rows.filter((r) => String(r.SpanName).startsWith('execute_tool'))[i]!;
    row.Timestamp = dt64(base + BigInt(i) * 190_000n);
    row.Duration = '100000';
  });
  await insertSession(tc.collector.store.client, s);
  const r = await runDetectors(tc.collector.store.client, { params: {} });
  expect(r.errors).toEqual({});
  const sql = await tc.rows<{ repeats: number }>(`SELECT repeats FROM agent_findings FINAL WHERE detector = 'retry_storm' AND session_id = {s:String}`, { s: session });
  const rows = await tc.rows<{ tool: string; args_hash: string; status: string; error_type: string; error_message: string; ts: string; end_ts: string; span_id: string }>(
    `SELECT tool, toString(args_hash) AS args_hash, status, error_type, error_message, ts, end_ts, span_id FROM agent_tool_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
  const feed = (conv: (t: string) => ObservedCall['ts']) => {
    const g = new LoopGuard();
    for (const row of rows) {
      g.observe({ sessionId: session, tool: row.tool, argsHash: row.args_hash, status: row.status, errorType: row.error_type, errorMessage: row.error_message, ts: conv(row.ts), endTs: conv(row.end_ts), spanId: row.span_id });
    }
    return g.findings(session).filter((f) => f.kind === 'retry_storm').map((f) => f.repeats);
  };
  const toNs = (t: string): bigint => BigInt(Date.parse(`${t.slice(0, 19).replace(' ', 'T')}Z`)) * 1_000_000n + BigInt(t.slice(20).padEnd(9, '0')) % 1_000_000n;
  const result = {
    sql: sql.map((x) => Number(x.repeats)),
    guardText: feed((t) => t),
    guardBigintNs: feed((t) => toNs(t)),
    guardEpochMs: feed((t) => Number(toNs(t)) / 1e6),
  };
  expect(result).toEqual({ sql: [5], guardText: [5], guardBigintNs: [5], guardEpochMs: [5] });
});
