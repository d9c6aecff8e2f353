// How the instrumentation speaks to the person running the agent: one line on stderr, marked as
// Loopwatch's, so it is told apart from the agent's own output.
export function warn(message: string): void {
  console.warn(`[loopwatch] ${message}`);
}
