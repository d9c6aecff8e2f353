// Terminal output helpers: colors only on a terminal (NO_COLOR respected, FORCE_COLOR forces),
// plain aligned tables, and progress bars on stderr for long work.
import { SingleBar } from 'cli-progress';

const colorOn = (): boolean => (process.env.FORCE_COLOR ? process.env.FORCE_COLOR !== '0' : !process.env.NO_COLOR && !!process.stdout.isTTY);
const paint = (code: string) => (s: string) => (colorOn() ? `\x1b[${code}m${s}\x1b[0m` : s);
export const c = { bold: paint('1'), dim: paint('2'), red: paint('31'), green: paint('32'), yellow: paint('33'), cyan: paint('36'), inverse: paint('7'), magenta: paint('35') };

const visible = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, '').length;

export function table(headers: string[], rows: Array<Array<string | number>>): string {
  const cells = rows.map((r) => r.map((v) => String(v)));
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((r) => visible(r[i] ?? ''))));
  const line = (r: string[]) => r.map((v, i) => v + ' '.repeat(Math.max(0, widths[i]! - visible(v)))).join('  ').trimEnd();
  return [c.bold(line(headers)), ...cells.map(line)].join('\n') + '\n';
}

// Control characters (ESC starts the terminal's escape sequences: clear the screen, set the title,
// write a link) and the bidirectional overrides that reorder what is shown; line breaks and tabs
// would break a table's rows.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

/**
 * A copy of data from the collector or a file, safe to print on a terminal: in every string,
 * line breaks and tabs become spaces and other control characters `\xHH` / `\u{…}` text. Session
 * ids, tool names, messages and arguments come from whoever sent spans: printed raw, they could
 * drive the terminal of whoever reads them. For text output only (JSON escapes them itself).
 */
export function forTerminal<T>(value: T): T {
  if (typeof value === 'string') {
    return value.replace(UNSAFE, (ch) => {
      const code = ch.charCodeAt(0);
      if (ch === '\n' || ch === '\r' || ch === '\t') return ' ';
      return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
    }) as T;
  }
  if (Array.isArray(value)) return value.map(forTerminal) as T;
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, forTerminal(v)])) as T;
  }
  return value;
}

/** `1 error`, `2 errors`: the count and the word, plural unless the count is 1. */
export function plural(n: number, word: string, words = `${word}s`): string {
  return `${n} ${n === 1 ? word : words}`;
}

export function usd(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '-';
  if (v === 0) return '$0';
  if (v < 0) return `-${usd(-v)}`;
  if (v >= 0.01) return `$${v.toFixed(2)}`;
  // a cheap model's call costs a few millionths: not $0.0000
  return v >= 0.0001 ? `$${v.toFixed(4)}` : v >= 0.000001 ? `$${v.toFixed(6)}` : '<$0.000001';
}

export function pct(v: number | null | undefined): string {
  return v === null || v === undefined ? '-' : `${(v * 100).toFixed(1)}%`;
}

export function ms(v: number): string {
  // each unit up to where rounding would print the next one's first value (1000ms, 60.0s, 60m)
  if (v < 0.9995) return `${(v * 1000).toFixed(0)}µs`;
  if (v < 999.5) return `${v.toFixed(v < 9.995 ? 1 : 0)}ms`;
  if (v < 59_950) return `${(v / 1000).toFixed(1)}s`;
  const s = Math.round(v / 1000); // rounded once, then split: 119.7 s is 2m0s, not 1m60s
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  const m = Math.round(s / 60);
  return `${Math.floor(m / 60)}h${m % 60}m`;
}

export function short(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

export function writeJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value) + '\n');
}

/** A progress bar on stderr when it is a terminal and output is not JSON; otherwise a no-op. */
export function progress(total: number, opts: { json?: boolean; label: string }): { update(n: number, payload?: Record<string, string>): void; stop(): void } {
  if (opts.json || !process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new SingleBar({ stream: process.stderr, format: `${opts.label} [{bar}] {value}/{total} {stage}`, hideCursor: true, clearOnComplete: true });
  bar.start(total, 0, { stage: '' });
  return { update: (n, payload) => bar.update(n, payload), stop: () => bar.stop() };
}
