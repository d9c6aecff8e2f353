// A session's model turn waits in enableLoopGuard until its next tool call is charged with it
// (the token and cost budgets). LLM calls outside any session (a server's moderation or title
// call per request, each a trace of its own, never followed by a tool call) and chat-only
// sessions took the slots of the same bound of maxSessions entries, and crowded out a session's
// turn before its tool call: with budgetMaxTokens=4000, a 5,000-token turn followed by 1,000 such
// calls was never charged, the session never halted, nothing said (a soak review). The real SDK
// and exporter, a real collector.
import { context, ROOT_CONTEXT } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { traceTool, withSession } from '../../instrumentation/src/api.js';
import { enableLoopGuard } from '../../instrumentation/src/guard/enable.js';
import { loopDetectedIn } from '../../instrumentation/src/guard/loop-guard.js';
import { startChatSpan } from '../../instrumentation/src/integrations/llm-span.js';
import { startLoopwatch, type LoopwatchHandle } from '../../instrumentation/src/sdk.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

let tc: TestCollector;
let lw: LoopwatchHandle;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
  lw = startLoopwatch({ endpoint: tc.url, serviceName: 'guard-uncharged' });
});
afterAll(async () => {
  await lw?.shutdown();
  await tc?.close();
});

const llm = (tokens: number) => startChatSpan({ provider: 'openai', model: 'gpt-4o-mini' }).end({ responseModel: 'gpt-4o-mini', usage: { inputTokens: tokens, outputTokens: 0 } });
const step = traceTool('step', async (n: number) => n);

/** Session `id`'s 5,000-token turn, `between()` before its tool call; what its second tool call meets. */
async function secondCall(id: string, between: () => void): Promise<string> {
  return withSession(id, async () => {
    llm(5000);
    between();
    await step(1); // the call the turn asked for: charged with it
    try {
      await step(2);
      return 'ran';
    } catch (e) {
      return loopDetectedIn(e) ? `halted (${loopDetectedIn(e)!.finding.kind})` : String(e);
    }
  });
}

describe('a session turn waiting for its tool call', () => {
  it('is not crowded out by LLM calls outside any session', async () => {
    const h = enableLoopGuard({ policy: 'halt', log: () => undefined, params: { budgetMaxTokens: 4000 }, maxSessions: 100 });
    try {
      // 1,000 sessionless calls (ten times maxSessions), each its own trace
      const out = await secondCall('uncharged-a', () => context.with(ROOT_CONTEXT, () => { for (let i = 0; i < 1000; i++) llm(10); }));
      expect(out).toBe('halted (runaway)');
    } finally {
      h.disable();
    }
  });

  it('chat-only sessions crowd it out only past four times maxSessions, and that is said when its tool call comes; finished sessions\' answers dropped are not', async () => {
    const warned: string[] = [];
    const write = console.warn;
    console.warn = (...args: unknown[]) => void warned.push(args.join(' '));
    try {
      const guard = () => enableLoopGuard({ policy: 'halt', log: () => undefined, params: { budgetMaxTokens: 4000 }, maxSessions: 10 });
      const chat = (n: number, tag: string) => () => { for (let i = 0; i < n; i++) withSession(`chat-${tag}-${i}`, () => llm(10)); };
      let h = guard();
      try {
        // 30 other sessions that only talk to the model, between the turn and its tool call
        expect(await secondCall('uncharged-b', chat(30, 'b'))).toBe('halted (runaway)');
        expect(warned.filter((w) => w.includes('dropped the LLM calls'))).toEqual([]);
      } finally {
        h.disable();
      }
      h = guard();
      try {
        // past 40 the turn is dropped: not charged, and said once when its tool call comes
        // 100: the chat sessions dropped after it do not push the record of its drop out before its tool call
        expect(await secondCall('uncharged-c', chat(100, 'c'))).toBe('ran');
        expect(warned.filter((w) => w.includes('dropped the LLM calls'))).toEqual([
          '[loopwatch] the loop guard dropped the LLM calls of session uncharged-c before its next tool call (5000 tokens): more than 40 sessions had LLM calls waiting for a tool call at once, and the token and cost budgets missed them; raise maxSessions (enableLoopGuard({ maxSessions }))',
        ]);
      } finally {
        h.disable();
      }
      warned.length = 0;
      h = guard();
      try {
        // a healthy server: sessions that end with the model's answer (an LLM call, its tool call, the
        // answer), four times maxSessions and more; the answers' turns are dropped, nothing was missed
        for (let i = 0; i < 60; i++) await withSession(`done-${i}`, async () => { llm(10); await step(i); llm(10); });
        expect(await secondCall('uncharged-d', () => undefined)).toBe('halted (runaway)');
        expect(warned.filter((w) => w.includes('dropped the LLM calls'))).toEqual([]);
      } finally {
        h.disable();
      }
    } finally {
      console.warn = write;
    }
  });
});
