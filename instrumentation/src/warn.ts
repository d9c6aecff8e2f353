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
