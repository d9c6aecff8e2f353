// How the instrumentation speaks to the person running the agent: one line on stderr, marked as
// Loopwatch's, so it is told apart from the agent's own output.
import { errorText } from './thrown.js';
export function warn(message: string): void {
  console.warn(`[loopwatch] ${message}`);
}

const said = new Set<string>();

/**
 * Gives an application's observer what it observes: a throw, or a rejection of the promise an
 * async observer returns, is said once (`kind`, `what` the error's text) and goes no further (an
 * async usage meter's rejection was unhandled, and ended the process).
 */
export function tellObserver<T>(observer: (value: T) => unknown, value: T, kind: string, what: (error: string) => string): void {
  try {
    const out = observer(value);
    if (out !== null && typeof out === 'object' && typeof (out as PromiseLike<unknown>).then === 'function') {
      Promise.resolve(out).catch((err: unknown) => warnOnce(kind, what(errorText(err))));
    }
  } catch (err) {
    warnOnce(kind, what(errorText(err)));
  }
}
/** A count of spans as a message says it: `1 span`, `3 spans`. */
export const spanCount = (n: number): string => `${n} span${n === 1 ? '' : 's'}`;

/** warn(), once per kind of problem for the life of the process: a problem on every call would flood stderr. */
export function warnOnce(kind: string, message: string): void {
  if (said.has(kind)) return;
  said.add(kind);
  warn(message);
}
