// The depth budget in SQL past the walk's first 64 steps: a chain deeper than a budget of 100 is
// found (the walk stopped at 64 steps, so no budget above 64 could fire), and a walk that never
// reaches a root (spans whose parents form a cycle) still ends; a chain with spans between its
// levels is walked past the engine's default of 1,000 recursion steps (which failed the whole
// detector, and a cap under it hid the chain).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDetectors } from '../../collector/src/detect/run-detectors.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { buildSession, insertSession, insertSpans } from './helpers.js';

let tc: TestCollector;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
});
afterAll(async () => {
  await tc?.close();
});

describe('runaway depth, deep chains', () => {
  it('a recursion 150 calls deep is over a depth budget of 100; a cycle of parents ends the walk', async () => {
    const client = tc.collector.store.client;
    const deep = buildSession('depth-150', Array.from({ length: 150 }, (_, i) => ({ tool: 'solve', args: { level: i }, result: `r${i}`, ...(i > 0 ? { parentCall: i - 1 } : {}) })));
    // its first call under two spans that are each other's parent (bad data another pipeline
    // wrote): the walk up from the first calls, within the budget, never reaches a root
    const top = deep.rows[deep.toolRowIndex[0]!]!;
    const [x, y] = ['00000000000000c1', '00000000000000c2'];
    top.ParentSpanId = x;
    const plain = (id: string, parent: string) => ({ ...top, SpanId: id, ParentSpanId: parent, SpanName: 'step', SpanAttributes: { 'gen_ai.conversation.id': 'depth-150' } });
    await insertSession(client, deep);
    await insertSpans(client, [plain(x, y), plain(y, x)]);
    // a session of one call under such a cycle
    const cyc = buildSession('depth-cycle', [{ tool: 'solve', args: { level: 0 }, result: 'r' }]);
    cyc.rows[cyc.toolRowIndex[0]!]!.ParentSpanId = x;
    await insertSession(client, cyc);

    const r = await runDetectors(client, { params: { budgetMaxToolDepth: 100 } });
    expect(r.errors).toEqual({});
    const found = await tc.rows<{ session_id: string; details: string; message: string }>(
      "SELECT session_id, details, message FROM agent_findings FINAL WHERE detector = 'runaway' AND session_id IN ('depth-150', 'depth-cycle')");
    expect(found.map((f) => f.session_id)).toEqual(['depth-150']);
    const d = JSON.parse(found[0]!.details) as Record<string, string>;
    expect(d.reasons).toBe('depth');
    expect(Number(d.max_tool_depth)).toBeGreaterThan(100);
  }, 240_000);

  it('a chain with 10 spans between its levels, over a budget of 100 (1,100 spans up: past the engine\'s default of 1,000 recursion steps): found, and the other sessions of the pass judged', async () => {
    const client = tc.collector.store.client;
    const chain = buildSession('depth-inter', Array.from({ length: 101 }, (_, i) => ({ tool: 'solve', args: { level: i }, result: `r${i}`, ...(i > 0 ? { parentCall: i - 1 } : {}) })));
    // between each call and the one it runs, 10 plain spans (an agent framework's steps)
    const plain: Record<string, unknown>[] = [];
    chain.toolRowIndex.forEach((rowAt, i) => {
      if (i === 0) return;
      const row = chain.rows[rowAt]!;
      let parent = chain.spanIds[i - 1]!;
      for (let k = 0; k < 10; k++) {
        const id = (0xd000000 + i * 16 + k).toString(16).padStart(16, '0');
        plain.push({ ...row, SpanId: id, ParentSpanId: parent, SpanName: 'step', SpanAttributes: { 'gen_ai.conversation.id': 'depth-inter' } });
        parent = id;
      }
      row.ParentSpanId = parent;
    });
    await insertSession(client, chain);
    await insertSpans(client, plain);
    const flat = buildSession('depth-flat-calls', Array.from({ length: 30 }, (_, i) => ({ tool: 'step', args: { i }, result: `r${i}` })));
    await insertSession(client, flat);

    const r = await runDetectors(client, { params: { budgetMaxToolDepth: 100, budgetMaxCalls: 20 } });
    expect(r.errors).toEqual({});
    const found = await tc.rows<{ session_id: string; details: string }>(
      "SELECT session_id, details FROM agent_findings FINAL WHERE detector = 'runaway' AND session_id IN ('depth-inter', 'depth-flat-calls') ORDER BY session_id");
    expect(found.map((f) => [f.session_id, (JSON.parse(f.details) as { reasons: string }).reasons])).toEqual([['depth-flat-calls', 'calls'], ['depth-inter', 'calls,depth']]);
    expect(Number((JSON.parse(found[1]!.details) as { max_tool_depth: string }).max_tool_depth)).toBe(101);
  }, 240_000); // a walk of 1,100 steps, one query step each: tens of seconds on a loaded machine
});
