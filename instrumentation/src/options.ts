// Process-wide instrumentation options. Privacy by default: arguments and results leave the
// process only as hashes unless capture is switched on, and then bounded and redactable. Error
// messages always leave it (they name the error: loop detection tells errors apart by them), but
// through the same redact hook and length limit.
import { normalizeErrorMessage } from '../../queries/src/detector-defaults.js';
import { hash64Hex } from './canonical.js';
import { decimalInteger } from './decimal.js';
import { wholeHead } from './text.js';
import { errorTypeOf } from './thrown.js';
import { warnOnce } from './warn.js';

/** What a text sent out is: a tool's (or requested tool call's) arguments, its result, or an error's message or stack. */
export type ContentKind = 'arguments' | 'result' | 'error';

export interface CaptureOptions {
  /** Send raw tool arguments and results as span attributes (default false: hashes only). */
  captureContent: boolean;
  /** Longest text sent (captured content, an error's message or stack), in UTF-16 code units; longer text is cut and marked. */
  maxContentLength: number;
  /**
   * Called on every text before it leaves the process (captured content, and error messages and
   * stacks whether capture is on or not); return what may be sent. If it throws, the text is not sent.
   */
  redact?: (text: string, info: { kind: ContentKind; tool: string }) => string;
}

export const DEFAULT_MAX_CONTENT_LENGTH = 4096;
const envCapture = process.env.LOOPWATCH_CAPTURE_CONTENT;

const positiveWhole = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n > 0;

/** LOOPWATCH_MAX_CONTENT_LENGTH: a positive whole number in decimal digits; anything else is reported and the default used. */
export function maxContentLengthFromEnv(env: NodeJS.ProcessEnv = process.env, report: (message: string) => void = (m) => warnOnce('max-content-length', m)): number {
  const raw = env.LOOPWATCH_MAX_CONTENT_LENGTH;
  if (raw === undefined || raw.trim() === '') return DEFAULT_MAX_CONTENT_LENGTH;
  const n = decimalInteger(raw);
  if (n !== undefined && n > 0) return n;
  report(`LOOPWATCH_MAX_CONTENT_LENGTH=${JSON.stringify(raw)} ignored (a positive whole number of characters, in decimal digits): using ${DEFAULT_MAX_CONTENT_LENGTH}`);
  return DEFAULT_MAX_CONTENT_LENGTH;
}

const current: CaptureOptions = {
  captureContent: envCapture === '1' || envCapture === 'true',
  maxContentLength: maxContentLengthFromEnv(),
};

export function configureCapture(opts: Partial<CaptureOptions>): void {
  if (opts.maxContentLength !== undefined && !positiveWhole(opts.maxContentLength)) {
    throw new RangeError(`configureCapture: maxContentLength must be a positive whole number of characters, got ${String(opts.maxContentLength)}`);
  }
  if (opts.redact !== undefined && typeof opts.redact !== 'function') {
    throw new TypeError(`configureCapture: redact must be a function (text, { kind, tool }) => text, got ${typeof opts.redact}`);
  }
  Object.assign(current, opts);
}

export function captureOptions(): Readonly<CaptureOptions> {
  return current;
}

/**
 * Text cut at the length limit, and marked; a surrogate pair at the cut is kept whole or dropped
 * whole. An error's text also keeps its identity in the mark (errorTag): errors that differ only
 * past the cut are still other errors to error_loop.
 */
function cut(text: string, max: number, kind: ContentKind): string {
  if (text.length <= max) return text;
  return `${wholeHead(text, max)}…[truncated${kind === 'error' ? ` ~${errorTag(text)}` : ''}]`;
}

/**
 * What error_loop tells an error by (its message as normalizeErrorMessage leaves it) as ten
 * letters g-v: a hash, written so that the same normalization (here, in the guard, and in SQL)
 * keeps it whole, having no digits and no run of hex letters.
 */
function errorTag(text: string): string {
  let tag = '';
  for (const digit of hash64Hex(normalizeErrorMessage(text)).slice(0, 10)) tag += String.fromCharCode(103 + parseInt(digit, 16));
  return tag;
}

/** Redacted, then cut; undefined when the hook throws or returns something other than text (said once, without its message). */
function prepared(text: string, kind: ContentKind, tool: string): string | undefined {
  let out: unknown = text;
  if (current.redact) {
    try {
      out = current.redact(text, { kind, tool });
    } catch (err) {
      // not its message: it can quote the text the hook was given
      warnOnce('redact', `the redact hook threw (${errorTypeOf(err)}): the text it failed on is not sent`);
      return undefined;
    }
    if (typeof out !== 'string') {
      warnOnce('redact-type', `the redact hook returned ${out === null ? 'null' : typeof out}, not text: the text it was given is not sent`);
      return undefined;
    }
  }
  return cut(out as string, current.maxContentLength, kind);
}

/** The text that may be attached to a span, or undefined when capture is off (or the redact hook failed on it). Never throws. */
export function capturedText(text: string, kind: 'arguments' | 'result', tool: string): string | undefined {
  if (!current.captureContent) return undefined;
  return prepared(text, kind, tool);
}

/** Sent in place of an error's text that the redact hook failed on, with the error's identity (errorTag). */
export const WITHHELD_ERROR_TEXT = '[error text withheld: the redact hook failed on it]';

/**
 * An error's message (or stack) as it may leave the process, capture on or off: redacted and cut
 * like captured content. Never throws. Text the hook failed on is withheld but keeps its identity
 * (a hash of it): two different errors are not one error repeating.
 */
export function sentErrorText(text: string, tool: string): string {
  if (text === '') return text;
  return prepared(text, 'error', tool) ?? `${WITHHELD_ERROR_TEXT} ~${errorTag(text)}`;
}
