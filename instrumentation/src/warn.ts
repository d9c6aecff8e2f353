// How the instrumentation speaks to the person running the agent: one line on stderr, marked as
// Loopwatch's, so it is told apart from the agent's own output.
export function warn(message: string): void {
  console.warn(`[loopwatch] ${message}`);
}

const said = new Set<string>();
/** warn(), once per kind of problem for the life of the process: a problem on every call would flood stderr. */
export function warnOnce(kind: string, message: string): void {
  if (said.has(kind)) return;
  said.add(kind);
  warn(message);
}

/**
 * What a thrown value is, without its message (a message can quote the very text a redact hook
 * was given, or a tool's arguments): its name, else its kind.
 */
export function thrownKind(err: unknown): string {
  try {
    if (err instanceof Error) return err.name || 'Error';
    return err === null ? 'null' : typeof err;
  } catch {
    return 'a value';
  }
}
