// A call's features do not depend on which other sessions a pass holds: a sub-agent session
// whose tool spans are children of another session's tool call (a delegate) takes its own turns'
// tokens whether or not that session is in the pass ("made by another tool call" is decided within
// the session). And a chat of 32,000 LLM calls in one turn computes its pauses in one window: the
// pairwise walk that came first needed 23 GiB and failed every call detector of the store.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDetectors } from '../../collector/src/detect/run-detectors.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { buildSession, dt64, insertSpans } from '../detectors/helpers.js';

let tc: TestCollector;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
});
afterAll(async () => {
  await tc?.close();
});

describe('features independent of the pass, and of a turn\'s size', () => {
  it('the sub-agent session takes its turns\' tokens, with or without the other session in the pass', async () => {
    const client = tc.collector.store.client;
    const a = buildSession('parent-session', [{ tool: 'delegate', args: {}, result: 'done', durMs: 5000 }], { startMs: Date.now() - 120_000 });
    const b = buildSession('sub-session', [0, 1, 2].map((i) => ({ tool: 'search', args: { i }, result: `r${i}` })), { startMs: Date.now() - 119_000 });
    // its tool calls and its LLM calls (its own session's, spans under the delegate)
    for (const r of b.rows) if (!String(r.SpanName).startsWith('invoke_agent')) r.ParentSpanId = a.spanIds[0]!;
    await insertSpans(client, [...a.rows, ...b.rows]);
    const params = { watermarkOverlapS: 0 };
    expect((await runDetectors(client, { params })).errors).toEqual({});
    const tokens = async () => (await tc.rows<{ t: number }>(`SELECT tokens AS t FROM loopwatch_call_features WHERE session_id = 'sub-session' ORDER BY seq`)).map((x) => Number(x.t));
    const withA = await tokens();
    await new Promise((r) => setTimeout(r, 1100));
    // B receives one more call; A nothing
    const more = buildSession('sub-session', [{ tool: 'search', args: { i: 9 }, result: 'r9', tokensIn: 0, tokensOut: 0 }], { startMs: Date.now() - 60_000 });
    await insertSpans(client, more.rows.filter((r) => String(r.SpanName).startsWith('execute_tool')));
    expect((await runDetectors(client, { params })).errors).toEqual({});
    const withoutA = await tokens();
    expect(withA).toEqual([1100, 1100, 1100]);
    // and the sub-agent's LLM calls under the delegate are its own, not the delegate's spend
    const [delegate] = await tc.rows<{ t: number }>(`SELECT tokens AS t FROM loopwatch_call_features WHERE session_id = 'parent-session'`);
    expect(Number(delegate!.t)).toBe(1100);
    // the third call's turn is now shared with the fourth (no LLM call before it)
    expect(withoutA).toEqual([1100, 1100, 550, 550]);
  });

  it('a chat of 32,000 LLM calls then one tool call: every detector runs, and another session\'s loop is found', { timeout: 300_000 }, async () => {
    const client = tc.collector.store.client;
    const n = 32_000;
    const start = Date.now() - 3 * 3600_000;
    const s = buildSession('long-chat', [{ tool: 'lookup', args: {}, result: 'r' }], { startMs: start + n * 20 + 1000 });
    const llm = s.rows.find((r) => String(r.SpanName).startsWith('chat'))!;
    const rows: Record<string, unknown>[] = [...s.rows];
    for (let i = 0; i < n; i++) {
      rows.push({ ...llm, SpanId: (0x1000000n + BigInt(i)).toString(16).padStart(16, '0'), Timestamp: dt64(BigInt(start + i * 20) * 1_000_000n), Duration: String(10_000_000) });
    }
    await insertSpans(client, rows);
    const other = buildSession('beside-long-chat', Array.from({ length: 6 }, () => ({ tool: 'read_file', args: { p: 'a' }, result: 'same' })));
    await insertSpans(client, other.rows);
    const r = await runDetectors(client, { params: { watermarkOverlapS: 0 } });
    expect(r.errors).toEqual({});
    const [p] = await tc.rows<{ n: string }>(`SELECT toString(max(length(turn_pauses))) AS n FROM loopwatch_call_features WHERE session_id = 'long-chat'`);
    expect(Number(p!.n)).toBe(n); // 10 ms calls 20 ms apart, and the requesting call: a pause before each but the first
    const [f] = await tc.rows<{ n: string }>(`SELECT toString(count()) AS n FROM agent_findings FINAL WHERE session_id = 'beside-long-chat'`);
    expect(Number(f!.n)).toBeGreaterThan(0);
  });
});
