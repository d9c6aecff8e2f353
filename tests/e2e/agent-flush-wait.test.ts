// A server that flushes per request (a serverless handler, or "make sure the session's spans are
// out"): each flush() waited in a race with a promise that stopWaiting() resolves, which stays
// pending for the life of the process, and each race left a reaction on it: 300 to 450 bytes a
// flush, 60 MB after 200,000 (a soak review). Counted here as the promises the process holds
// (v8.queryObjects counts live objects after a full collection): not a heap size, no timing.
// The real SDK and exporter, a real collector on loopback.
import { queryObjects } from 'node:v8';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { traceTool, withSession } from '../../instrumentation/src/api.js';
import { startLoopwatch, type LoopwatchHandle } from '../../instrumentation/src/sdk.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

let tc: TestCollector;
let lw: LoopwatchHandle;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
  lw = startLoopwatch({ endpoint: tc.url, serviceName: 'agent-flush-wait' });
});
afterAll(async () => {
  await lw?.shutdown();
  await tc?.close();
});

const livePromises = (): number => queryObjects(Promise, { format: 'count' }) as number;

describe('flush() per request', () => {
  it('keeps nothing per flush: the promises the process holds do not grow with the flushes', async () => {
    const tool = traceTool('handle_request', (n: number) => ({ n }));
    const request = async (i: number) => {
      if (i % 10 === 0) withSession(`flush-wait-${i}`, () => tool(i));
      await lw.flush();
    };
    for (let i = 0; i < 200; i++) await request(i); // warm: the exporter's first export, the resource
    const before = livePromises();
    const FLUSHES = 3000;
    for (let i = 0; i < FLUSHES; i++) await request(i);
    const grown = livePromises() - before;
    // two kept per flush before (over 6,000); what is left is per span (300 here, which the
    // exporter and the in-process collector hold until they are done with them), not per flush
    expect(grown).toBeLessThan(FLUSHES / 2);
    expect(lw.awaited()).toBe(false);
    // the spans still got there
    await tc.collector.flush();
    const [row] = await tc.rows<{ n: string }>(`SELECT count() AS n FROM agent_tool_calls WHERE session_id LIKE 'flush-wait-%'`);
    expect(Number(row!.n)).toBe(320);
  });
});
