// Spans wait in the batch processor (up to 500 ms) before they are exported. However the
// process ends, the import sends them, waiting at most LOOPWATCH_EXIT_FLUSH_MS (2 s), and then
// lets the process end as it would have ended:
//  - running out of work: the exporter's sockets and retry timers do not keep the process alive
//    (sdk.ts, letProcessEnd), so 'beforeExit' comes while the last export is under way or waits
//    to be retried; it waits for it within the limit. Without the limit, an agent whose
//    collector is down stayed up to 9 s after its work was done, retrying.
//  - SIGINT / SIGTERM: flush, then the signal again with its default action (the process dies
//    of it). When the application listens to the signal itself, it decides: flush only. A second
//    signal during the flush ends the process at once.
//  - an uncaught exception or unhandled rejection: when nothing else listens, print it as Node
//    would, flush, exit 1. Otherwise flush only.
//  - process.exit() cannot wait for a flush: spans still pending then are reported on stderr
//    (call `await loopwatch()?.flush()` before process.exit()), as are spans whose export failed,
//    spans the batch processor dropped with its queue full, and spans the collector rejected.
// Without these (LOOPWATCH_EXIT_FLUSH_MS=0), a process that runs out of work shuts the SDK down
// as the OpenTelemetry SDK does, with no limit (index.ts).
import { inspect } from 'node:util';
import { stopToolCalls } from './api.js';
import { decimalInteger } from './decimal.js';
import { spanCount, warn } from './warn.js';

/** What the exit handlers flush, and how many ended spans the exporter has not finished with. */
export interface ExitFlushTarget {
  flush(): Promise<void>;
  pendingSpans(): number;
  failedSpans?(): number;
  droppedSpans?(): number;
  /** Spans the collector rejected in exports it took (OTLP partial success). */
  rejectedSpans?(): number;
  /** Lets flushes (and shutdowns) under way resolve: the process is ending and waits no longer. */
  stopWaiting?(): void;
  /** Whether a flush or shutdown is under way that stopWaiting() would let resolve. */
  awaited?(): boolean;
}

export const DEFAULT_EXIT_FLUSH_MS = 2000;

/**
 * LOOPWATCH_EXIT_FLUSH_MS: how long a signal or an uncaught error may wait for the flush
 * (default 2000); 0 installs no handlers. A bad value is reported and the default used.
 */
export function exitFlushMsFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  report: (message: string) => void = warn,
): number {
  const text = env.LOOPWATCH_EXIT_FLUSH_MS?.trim();
  if (text === undefined || text === '') return DEFAULT_EXIT_FLUSH_MS;
  const ms = decimalInteger(text);
  if (ms === undefined || ms < 0 || ms > 60_000) {
    report(`LOOPWATCH_EXIT_FLUSH_MS=${JSON.stringify(text)} ignored (an integer from 0 to 60000 milliseconds): using ${DEFAULT_EXIT_FLUSH_MS}`);
    return DEFAULT_EXIT_FLUSH_MS;
  }
  return ms;
}

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/** Installs the handlers; returns their removal. */
export function flushOnExit(target: ExitFlushTarget, timeoutMs: number = DEFAULT_EXIT_FLUSH_MS): () => void {
  if (timeoutMs <= 0) return () => {};
  let flushing = false;
  // the wait at the end (onBeforeExit): under way, and for how many pending spans it gave up
  let waiting = false;
  let gaveUpAt = -1;
  const bounded = (): Promise<void> =>
    Promise.race([target.flush().catch(() => undefined), new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref())]);

  const onSignal = (signal: NodeJS.Signals): void => {
    const appListens = process.listenerCount(signal) > 1;
    if ((flushing || waiting) && !appListens) return raise(signal); // asked twice (or during the wait at the end): stop now
    flushing = true;
    if (!appListens) stopToolCalls(signal);
    void bounded().then(() => {
      flushing = false;
      if (!appListens) raise(signal);
    });
  };
  const raise = (signal: NodeJS.Signals): void => {
    remove();
    process.kill(process.pid, signal);
  };

  const onUncaught = (err: unknown, origin: string): void => {
    if (process.listenerCount('uncaughtException') > 1) {
      void bounded(); // the application's handler decides what happens next
      return;
    }
    process.stderr.write(`${origin === 'unhandledRejection' ? 'Unhandled promise rejection: ' : 'Uncaught '}${inspect(err)}\n\nNode.js ${process.version}\n`);
    process.exitCode = 1;
    stopToolCalls(origin === 'unhandledRejection' ? 'an unhandled rejection' : 'an uncaught exception');
    void bounded().then(() => process.exit(1));
  };

  // Out of work with spans not yet exported: wait for them, at most timeoutMs (this timer is what
  // keeps the process up meanwhile), once for as many spans; then stop waiting, so that an
  // application's `await flush()` or `await shutdown()` goes on and the process ends. Out of
  // work again with one awaited and nothing more to wait for (its spans given up on already: a
  // drained server's flush() then shutdown() with the collector down), it goes on at once: nothing
  // else would settle it, and the process would end at the await, its last steps never run.
  const onBeforeExit = (): void => {
    if (waiting) return;
    const pending = target.pendingSpans();
    if (pending === 0 || pending === gaveUpAt) {
      if (target.awaited?.()) target.stopWaiting?.();
      return;
    }
    waiting = true;
    const limit = setTimeout(() => {
      gaveUpAt = target.pendingSpans();
      waiting = false;
      target.stopWaiting?.();
    }, timeoutMs);
    void target.flush().catch(() => undefined).then(() => {
      if (!waiting) return;
      clearTimeout(limit);
      waiting = false;
    });
  };

  const onExit = (): void => {
    const pending = target.pendingSpans();
    if (pending > 0 && gaveUpAt >= 0) {
      warn(`${spanCount(pending)} not exported: the collector did not take them within ${timeoutMs} ms of the end of the process (LOOPWATCH_EXIT_FLUSH_MS)`);
    } else if (pending > 0) {
      warn(`${spanCount(pending)} not exported: the process exited before they were sent (before a process.exit() of the application's, await loopwatch()?.flush())`);
    }
    const failed = target.failedSpans?.() ?? 0;
    if (failed > 0) warn(`${spanCount(failed)} could not be exported`);
    const dropped = target.droppedSpans?.() ?? 0;
    if (dropped > 0) warn(`${spanCount(dropped)} dropped: the export queue was full (OTEL_BSP_MAX_QUEUE_SIZE)`);
    const rejected = target.rejectedSpans?.() ?? 0;
    if (rejected > 0) warn(`${spanCount(rejected)} rejected by the collector (the first rejection's reason is said above)`);
  };

  for (const s of SIGNALS) process.on(s, onSignal);
  process.on('uncaughtException', onUncaught);
  process.on('beforeExit', onBeforeExit);
  process.on('exit', onExit);
  const remove = (): void => {
    for (const s of SIGNALS) process.off(s, onSignal);
    process.off('uncaughtException', onUncaught);
    process.off('beforeExit', onBeforeExit);
    process.off('exit', onExit);
  };
  return remove;
}
