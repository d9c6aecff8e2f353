// Retry storms of parallel batches and calls nested in tool calls, in SQL, in the live guard
// (calls seen as they end) and in `loopwatch replay` (the guard over an exported file, in start
// order): one step's parallel calls failing together are no storm, the same step failing batch
// after batch is; a call another tool call made takes no share of the turn, in all three. Found by
// a review of the change that first left parallel calls out of retry storms (each batch reset the
// run) and charged nested calls differently in replay. Sessions as spans in the real store.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDetectors } from '../../collector/src/detect/run-detectors.js';
import { LoopGuard } from '../../instrumentation/src/guard/loop-guard.js';
import { parseSessionFile } from '../../collector/src/export/session-file.js';
import { replaySession } from '../../collector/src/export/replay.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { buildSession, insertSession, type CallSpec } from '../detectors/helpers.js';

let tc: TestCollector;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
});
afterAll(async () => {
  await tc?.close();
});

const down = (i: number, extra: Partial<CallSpec> = {}): CallSpec => ({
  tool: 'fetch_url', args: { url: `https://example.com/${i}` }, error: { type: 'Error', message: 'connect ECONNREFUSED 10.0.0.1:443' }, ...extra,
});

const sqlStorms = async (session: string) =>
  (await tc.rows<{ repeats: number }>(`SELECT repeats FROM agent_findings FINAL WHERE detector = 'retry_storm' AND session_id = '${session}'`)).map((r) => Number(r.repeats));

describe('retry storms and nested calls: SQL, live and replay agree', () => {
  it('A: the agent retries the same step of 3 parallel fetches 5 times, all failing (15 failures)', async () => {
    const calls: CallSpec[] = [];
    for (let round = 0; round < 5; round++) calls.push(down(0), down(1, { parallel: true }), down(2, { parallel: true }));
    const s = await insertSession(tc.collector.store.client, buildSession('storm-rounds', calls));
    const r = await runDetectors(tc.collector.store.client, { params: {} });
    expect(r.errors).toEqual({});
    const sql = await sqlStorms('storm-rounds');
    const live = new LoopGuard();
    for (const row of [...s.guardRows].sort((a, b) => Number(a.endTs) - Number(b.endTs))) live.observe(row);
    const liveStorms = live.findings().filter((f) => f.kind === 'retry_storm').map((f) => f.repeats);
    expect({ sql, live: liveStorms }).toEqual({ sql: [15], live: [15] });
  });

  it('A2: one batch is no storm when a call of it took no time, or the clock counts milliseconds (a call ends as it starts)', async () => {
    const batch = (session: string, dur: (i: number) => number) => buildSession(session, [0, 1, 2, 3, 4].map((i) => down(i, { ...(i > 0 ? { parallel: true } : {}), durMs: dur(i) })));
    const lastZero = await insertSession(tc.collector.store.client, batch('storm-batch-zero', (i) => (i === 4 ? 0 : 50)));
    const allZero = batch('storm-batch-ms', () => 0);
    // a millisecond clock: the five at the same millisecond
    const first = allZero.rows.find((r) => String(r.SpanName).startsWith('execute_tool'))!.Timestamp;
    for (const row of allZero.rows) if (String(row.SpanName).startsWith('execute_tool')) row.Timestamp = first;
    await insertSession(tc.collector.store.client, allZero);
    const r = await runDetectors(tc.collector.store.client, { params: {} });
    expect(r.errors).toEqual({});
    for (const s of [lastZero, allZero]) {
      const live = new LoopGuard();
      // the rows' times to the microsecond, as the spans have them (guardRows are whole milliseconds)
      const t0 = Number(s.guardRows[0]!.ts);
      const rows = s.guardRows.map((row, i) => {
        const ts = s === allZero ? t0 : t0 + i * 0.001;
        return { ...row, ts, endTs: s === allZero || i === 4 ? ts : ts + 50 };
      });
      for (const row of rows.sort((a, b) => a.endTs - b.endTs)) live.observe(row);
      const res = await fetch(`${tc.url}/api/v1/sessions/${s.sessionId}/export`);
      const replay = replaySession(parseSessionFile(await res.text())).findings.filter((f) => f.kind === 'retry_storm');
      expect({ sql: await sqlStorms(s.sessionId), replay, live: live.findings().filter((f) => f.kind === 'retry_storm') }, s.sessionId).toEqual({ sql: [], replay: [], live: [] });
    }
  });

  it('B: a retry storm of a sub-agent\'s fetches inside a long delegate tool call: SQL vs the guard fed in start order (replay)', async () => {
    // delegate (a tool call, 10 s) runs fetch_url 6 times, each failing, one after the other
    const calls: CallSpec[] = [{ tool: 'delegate', args: { task: 't' }, result: 'gave up', durMs: 50 }];
    for (let i = 0; i < 6; i++) calls.push(down(i, { parentCall: 0, tokensIn: 0, tokensOut: 0 }));
    const s = buildSession('storm-nested', calls);
    // the delegate span covers its children (buildSession lays calls one after another)
    const lastChild = s.guardRows[s.guardRows.length - 1]!;
    const parentRow = s.rows[s.toolRowIndex[0]!]!;
    const parentStartMs = Number(s.guardRows[0]!.ts);
    const parentEndMs = Number(lastChild.endTs) + 5;
    parentRow.Duration = String(BigInt(parentEndMs - parentStartMs) * 1_000_000n);
    s.guardRows[0]!.endTs = parentEndMs;
    await insertSession(tc.collector.store.client, s);
    const r = await runDetectors(tc.collector.store.client, { params: {} });
    expect(r.errors).toEqual({});
    const sql = await sqlStorms('storm-nested');
    // the guard as `loopwatch replay` runs it: the exported file, calls in start order
    const res = await fetch(`${tc.url}/api/v1/sessions/storm-nested/export`);
    const replay = replaySession(parseSessionFile(await res.text())).findings.filter((f) => f.kind === 'retry_storm').map((f) => f.repeats);
    // and live (calls seen as they end: the children before their parent)
    const live = new LoopGuard();
    for (const row of [...s.guardRows].sort((a, b) => Number(a.endTs) - Number(b.endTs))) live.observe(row);
    const liveStorms = live.findings().filter((f) => f.kind === 'retry_storm').map((f) => f.repeats);
    expect({ sql, replay, live: liveStorms }).toEqual({ sql: [6], replay: [6], live: [6] });
  });

  it('C: replay vs the collector on tool calls nested in a tool call (build runs compile and link): wasted tokens', async () => {
    const step = (k: number): CallSpec[] => [
      { tool: 'build', args: {}, result: 'built' },
      { tool: 'compile', args: {}, result: 'compiled', parentCall: 3 * k, tokensIn: 0, tokensOut: 0 },
      { tool: 'link', args: {}, result: 'linked', parentCall: 3 * k, tokensIn: 0, tokensOut: 0 },
    ];
    await insertSession(tc.collector.store.client, buildSession('nested-share', [0, 1, 2, 3].flatMap(step)));
    const r = await runDetectors(tc.collector.store.client, { params: { budgetMaxToolDepth: 0 } });
    expect(r.errors).toEqual({});
    const sql = Object.fromEntries((await tc.rows<{ tools: string[]; wasted_tokens: number }>(
      `SELECT tools, wasted_tokens FROM agent_findings FINAL WHERE session_id = 'nested-share' AND detector = 'redundant'`)).map((x) => [x.tools.join(), Number(x.wasted_tokens)]));
    const res = await fetch(`${tc.url}/api/v1/sessions/nested-share/export`);
    const replay = Object.fromEntries(replaySession(parseSessionFile(await res.text()), { budgetMaxToolDepth: 0 }).findings
      .filter((f) => f.kind === 'redundant').map((f) => [f.tools.join(), f.wastedTokens]));
    expect({ sql, replay }).toEqual({ sql: { build: 3300, compile: 0, link: 0 }, replay: { build: 3300, compile: 0, link: 0 } });
  });
});
