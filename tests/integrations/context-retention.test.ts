// A context that outlives a nested tool call (a timer, a keep-alive socket, a lazily created
// client started inside it: each captures the active context) keeps only the innermost span: the
// context's value for the calls inside is the call's depth and session, not the call itself, whose
// own context would keep every enclosing call and span alive up the chain.
import { context } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { configureCapture, onToolCall, traceTool, withSession } from '../../instrumentation/src/api.js';
import { SessionSpanProcessor } from '../../instrumentation/src/sdk.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const exporter = new InMemorySpanExporter();
let provider: NodeTracerProvider;
beforeAll(() => {
  provider = new NodeTracerProvider({ spanProcessors: [new SessionSpanProcessor(() => undefined), new SimpleSpanProcessor(exporter)] });
  provider.register();
});
afterAll(async () => {
  await provider.shutdown();
});

it('a context kept from inside the innermost call of a 50-deep chain keeps no more than it did (the innermost span)', async () => {
  configureCapture({ captureContent: true });
  const off = onToolCall(() => undefined); // something observes calls (the loop guard)
  let kept: unknown;
  const refs: WeakRef<object>[] = [];
  const step = traceTool('step', async (n: number, payload: string): Promise<number> => {
    if (n === 0) {
      kept = context.active(); // what a timer or a socket created here holds on to
      return 0;
    }
    return 1 + (await step(n - 1, payload));
  });
  await withSession('retention', () => step(50, 'x'.repeat(10_000)));
  off();
  for (const s of exporter.getFinishedSpans()) refs.push(new WeakRef(s as object));
  exporter.reset();
  for (let i = 0; i < 5; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 10));
  }
  const alive = refs.filter((r) => r.deref() !== undefined).length;
  expect(alive).toBeLessThanOrEqual(2);
});
