// `import 'loopwatch/instrumentation'` (or `node --import loopwatch/instrumentation app.js`):
// starts OpenTelemetry tracing to the Loopwatch collector and exposes the API. Set
// LOOPWATCH_INSTRUMENTATION=off to load the API without starting the SDK (e.g. when the
// application configures OpenTelemetry itself).
import { startLoopwatch, type LoopwatchHandle } from './sdk.js';
import { enableLoopGuard, guardPolicyFromEnv, type LoopGuardHandle } from './guard/enable.js';
import { exitFlushMsFromEnv, flushOnExit } from './exit.js';

export * from './api.js';
export * from './integrations/index.js';
export { startLoopwatch, PreciseStartProcessor, SessionSpanProcessor, type StartOptions, type LoopwatchHandle } from './sdk.js';
export { LlmCallTap, onLlmCall, type LlmCallRecord } from './llm-calls.js';
export { flushOnExit, exitFlushMsFromEnv, type ExitFlushTarget } from './exit.js';

const g = globalThis as { __loopwatch?: LoopwatchHandle };
if (process.env.LOOPWATCH_INSTRUMENTATION !== 'off' && !g.__loopwatch) {
  const exitFlushMs = exitFlushMsFromEnv();
  // however the process ends, its last spans are sent within LOOPWATCH_EXIT_FLUSH_MS (exit.ts)
  g.__loopwatch = startLoopwatch({ letProcessEnd: exitFlushMs > 0 });
  flushOnExit(g.__loopwatch, exitFlushMs);
  // without those handlers, the end of the work shuts the SDK down as the OpenTelemetry SDK does,
  // with no limit (shutdown() never rejects: a failed last export is reported on stderr)
  if (exitFlushMs <= 0) process.once('beforeExit', () => void g.__loopwatch?.shutdown());
}

/** The running SDK started by this import, if any (flush before a short-lived process exits). */
export function loopwatch(): LoopwatchHandle | undefined {
  return g.__loopwatch;
}

// Loop guard: enableLoopGuard() in code, or LOOPWATCH_GUARD=warn|halt for every traced tool call.
export * from './guard/index.js';
const guardPolicy = guardPolicyFromEnv();
const gg = globalThis as { __loopwatchGuard?: LoopGuardHandle };
if (guardPolicy && guardPolicy !== 'off' && !gg.__loopwatchGuard) gg.__loopwatchGuard = enableLoopGuard({ policy: guardPolicy });
