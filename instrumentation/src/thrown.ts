// Reading a value a tool, a hook or a library threw, without running code that could throw again
// (a getter, a toJSON): the one way the instrumentation names an error and quotes its message.

/** A thrown value's message. */
export function errorText(err: unknown): string {
  try {
    if (typeof err === 'string') return err;
    const m = (err as { message?: unknown } | null)?.message;
    if (typeof m === 'string') return m;
    if (err === null || err === undefined || typeof err !== 'object') return String(err);
    const json = JSON.stringify(err);
    return json === undefined ? Object.prototype.toString.call(err) : json.length > 1000 ? `${json.slice(0, 1000)}…` : json;
  } catch {
    return Object.prototype.toString.call(err);
  }
}

/**
 * A thrown value's type: its name (an Error's, or a class's), else what kind of value it is. Never
 * its message, so it may be said where the message could quote what a redact hook was given.
 */
export function errorTypeOf(err: unknown): string {
  try {
    if (err instanceof Error) return err.name && err.name !== 'Error' ? String(err.name) : (err.constructor?.name ?? 'Error');
    if (err === null) return 'null';
    if (typeof err !== 'object') return typeof err;
    const name = (err as { name?: unknown }).name;
    if (typeof name === 'string' && name) return name;
    const ctor = Object.getPrototypeOf(err)?.constructor?.name;
    return typeof ctor === 'string' && ctor && ctor !== 'Object' ? ctor : 'object';
  } catch {
    return 'Error';
  }
}
