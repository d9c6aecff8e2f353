// The depth budget in SQL past the walk's first 64 steps: a chain deeper than a budget of 100 is
// found (the walk stopped at 64 steps, so no budget above 64 could fire), and a walk that never
// reaches a root (spans whose parents form a cycle) still ends.
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
    await insertSession(client, deep);
    // a call under two spans that are each other's parent (bad data another pipeline wrote)
    const cyc = buildSession('depth-cycle', [{ tool: 'solve', args: { level: 0 }, result: 'r' }]);
    const callRow = cyc.rows[cyc.toolRowIndex[0]!]!;
    const [x, y] = ['00000000000000c1', '00000000000000c2'];
    callRow.ParentSpanId = x;
    const plain = (id: string, parent: string) => ({ ...callRow, SpanId: id, ParentSpanId: parent, SpanName: 'step', SpanAttributes: { 'gen_ai.conversation.id': 'depth-cycle' } });
    await insertSession(client, cyc);
    await insertSpans(client, [plain(x, y), plain(y, x)]);

    const r = await runDetectors(client, { params: { budgetMaxToolDepth: 100 } });
    expect(r.errors).toEqual({});
    const found = await tc.rows<{ session_id: string; details: string; message: string }>(
      "SELECT session_id, details, message FROM agent_findings FINAL WHERE detector = 'runaway' AND session_id IN ('depth-150', 'depth-cycle')");
    expect(found.map((f) => f.session_id)).toEqual(['depth-150']);
    const d = JSON.parse(found[0]!.details) as Record<string, string>;
    expect(d.reasons).toBe('depth');
    expect(Number(d.max_tool_depth)).toBeGreaterThan(100);
  });
});
