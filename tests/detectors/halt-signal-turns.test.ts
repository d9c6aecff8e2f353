// haltSignal() counts model turns with a stop, known by the session's latest traced LLM call: a
// real SDK pipeline with the LLM call tap (as startLoopwatch sets up), the real guard.
import { trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { traceTool, withSession } from '../../instrumentation/src/api.js';
import { enableLoopGuard, type LoopGuardHandle } from '../../instrumentation/src/guard/enable.js';
import { haltSignal } from '../../instrumentation/src/guard/halt-signal.js';
import { LoopDetectedError } from '../../instrumentation/src/guard/loop-guard.js';
import { LlmCallTap } from '../../instrumentation/src/llm-calls.js';
import { SessionSpanProcessor } from '../../instrumentation/src/sdk.js';

const provider = new NodeTracerProvider({ spanProcessors: [new SessionSpanProcessor(), new LlmCallTap(), new SimpleSpanProcessor(new InMemorySpanExporter())] });
beforeAll(() => void provider.register());
afterAll(() => provider.shutdown());
let handle: LoopGuardHandle | undefined;
afterEach(() => handle?.disable());

const search = traceTool('search_docs', async (q: string) => `no results for ${q}`);
/** A model call of the session, traced (a chat span). */
const llmCall = (session: string) =>
  trace.getTracer('app').startSpan('chat gpt-4o', { attributes: { 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.conversation.id': session } }).end();
const attempt = async (): Promise<string> => {
  try {
    return await search('exit vim');
  } catch (err) {
    return (err as LoopDetectedError).finding.kind;
  }
};

describe('haltSignal turns', () => {
  it('a session whose later model calls are not traced still ends: a turn holds at most 8 stops', async () => {
    handle = enableLoopGuard({ policy: 'halt', log: () => undefined });
    const session = `turns-untraced-${Date.now()}`;
    const r = await withSession(session, async () => {
      llmCall(session); // a planning call, traced; the calls after it are not
      const signal = haltSignal();
      let abortedAt = 0;
      for (let i = 1; i <= 16 && !abortedAt; i++) {
        await attempt();
        if (signal.aborted) abortedAt = i;
      }
      return abortedAt;
    });
    // 3 ran (stuck), stops 4-11 look like one turn, the 12th a second: it ends there (it never did)
    expect(r).toBe(12);
  });

  it('a turn of five parallel calls, all stopped, is one turn: not aborted before the model read a stop', async () => {
    handle = enableLoopGuard({ policy: 'halt', log: () => undefined });
    const session = `turns-wide-${Date.now()}`;
    const kinds = await withSession(session, async () => {
      for (let i = 0; i < 3; i++) await attempt();
      const signal = haltSignal();
      llmCall(session);
      const out = await Promise.all(Array.from({ length: 5 }, attempt));
      return { out, aborted: signal.aborted };
    });
    expect(kinds).toEqual({ out: ['stuck', 'stuck', 'stuck', 'stuck', 'stuck'], aborted: false });
  });

  it('a signal of every session keeps each session\'s turns apart: two sessions, a turn of two stops each, interleaved, are two turns', async () => {
    handle = enableLoopGuard({ policy: 'halt', log: () => undefined });
    const [a, b] = [`turns-a-${Date.now()}`, `turns-b-${Date.now()}`];
    for (const s of [a, b]) await withSession(s, async () => { for (let i = 0; i < 3; i++) await attempt(); });
    const signal = haltSignal({ stops: 3 }); // outside withSession: every session's stops (said once on stderr)
    llmCall(a);
    llmCall(b);
    const kinds: string[] = [];
    for (const s of [a, b, a, b]) kinds.push(await withSession(s, attempt));
    expect(kinds).toEqual(['stuck', 'stuck', 'stuck', 'stuck']);
    expect(signal.aborted).toBe(false);
    // a next turn in either session is the third
    llmCall(a);
    await withSession(a, attempt);
    expect(signal.aborted).toBe(true);
  });
});
