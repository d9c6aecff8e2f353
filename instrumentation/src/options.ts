// Process-wide instrumentation options. Privacy by default: arguments and results leave the
// process only as hashes unless capture is switched on, and then bounded and redactable.
export interface CaptureOptions {
  /** Send raw tool arguments and results as span attributes (default false: hashes only). */
  captureContent: boolean;
  /** Longest captured text, in characters; longer text is cut and marked. */
  maxContentLength: number;
  /** Called on every captured text before it leaves the process; return what may be sent. */
  redact?: (text: string, info: { kind: 'arguments' | 'result'; tool: string }) => string;
}

const envCapture = process.env.LOOPWATCH_CAPTURE_CONTENT;

const current: CaptureOptions = {
  captureContent: envCapture === '1' || envCapture === 'true',
  maxContentLength: Number(process.env.LOOPWATCH_MAX_CONTENT_LENGTH) || 4096,
};

export function configureCapture(opts: Partial<CaptureOptions>): void {
  Object.assign(current, opts);
}

export function captureOptions(): Readonly<CaptureOptions> {
  return current;
}

/** The text that may be attached to a span, or undefined when capture is off. */
export function capturedText(text: string, kind: 'arguments' | 'result', tool: string): string | undefined {
  if (!current.captureContent) return undefined;
  const redacted = current.redact ? current.redact(text, { kind, tool }) : text;
  return redacted.length > current.maxContentLength ? `${redacted.slice(0, current.maxContentLength)}…[truncated]` : redacted;
}
