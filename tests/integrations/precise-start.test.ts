// PreciseStartProcessor gives spans started without a time a start to the microsecond. The SDK
// measures a span's duration from the instant it made the span: the start must be that instant,
// or a pause before the processor runs (a garbage collection under load) is added to the span's
// end, and a model call ends after the tool call it asked for had started (a flaky review test).
// The real OpenTelemetry SDK.
import { BasicTracerProvider, type ReadableSpan, type Span, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, expect, it } from 'vitest';
import { preciseNow } from '../../instrumentation/src/api.js';
import { PreciseStartProcessor } from '../../instrumentation/src/sdk.js';

/** Holds the thread in onStart, as a pause between the span's making and the next processor would. */
class Pause implements SpanProcessor {
  onStart(_span: Span): void {
    const until = performance.now() + 20;
    while (performance.now() < until) {
      // busy
    }
  }
  onEnd(_span: ReadableSpan): void {}
  forceFlush = () => Promise.resolve();
  shutdown = () => Promise.resolve();
}

const provider = new BasicTracerProvider({ spanProcessors: [new Pause(), new PreciseStartProcessor()] });
afterAll(() => provider.shutdown());

const ms = (t: [number, number]) => t[0] * 1000 + t[1] / 1e6;

it('a span ends when it ended, whatever ran between its making and the processor', () => {
  const before = preciseNow();
  const span = provider.getTracer('other-library').startSpan('chat gpt-4o') as unknown as ReadableSpan & { end(): void };
  span.end();
  const after = preciseNow();
  expect(ms(span.startTime)).toBeGreaterThanOrEqual(before - 0.001);
  // before: the 20 ms pause was counted twice (in the start, and in the duration): the end lay ~20 ms in the future
  expect(ms(span.endTime)).toBeLessThanOrEqual(after + 0.001);
  expect(ms(span.endTime) - ms(span.startTime)).toBeGreaterThanOrEqual(19);
});
