// The session file (`loopwatch export`, GET /api/v1/sessions/:id/export; format
// loopwatch.session.v1): JSON Lines, a header line, then one line per call in start order. This
// module writes its lines and reads a file back (`loopwatch replay`), so both sides of the
// format live in one place.
import { z } from 'zod';
import type { CallRow } from '../api/queries.js';

export const SESSION_FORMAT = 'loopwatch.session.v1';

/** First line of an export: what the file is. */
export function exportHeader(sessionId: string, calls: number): Record<string, unknown> {
  return { type: 'session', format: SESSION_FORMAT, session_id: sessionId, calls, exported_at: new Date().toISOString() };
}

/**
 * One call of an export: enough to replay it (tool, arguments when captured, result, status in
 * start order; argument hashes always, the result hash when the result was known) or to attach to
 * a bug report.
 */
export function exportLine(c: CallRow): Record<string, unknown> {
  const common = { ts: c.ts, end_ts: c.end_ts, duration_ms: c.duration_ms, trace_id: c.trace_id, span_id: c.span_id, parent_span_id: c.parent_span_id, agent: c.agent, service: c.service, status: c.status, error_type: c.error_type || undefined };
  if (c.kind === 'llm') {
    return {
      type: 'llm_call', ...common, model: c.name, provider: c.provider, input_tokens: c.input_tokens, output_tokens: c.output_tokens,
      cache_read_tokens: c.cache_read_tokens, cache_creation_tokens: c.cache_creation_tokens, total_tokens: c.total_tokens, cost_usd: c.cost_usd,
    };
  }
  const parse = (s: string): unknown => {
    if (!s) return undefined;
    try {
      return JSON.parse(s) as unknown;
    } catch {
      return s;
    }
  };
  return {
    type: 'tool_call', ...common, tool: c.name, call_id: c.call_id || undefined, args_hash: c.args_hash, result_hash: c.result_hash || undefined,
    arguments: parse(c.arguments), result: parse(c.result), error_message: c.error_message || undefined,
  };
}

/** ISO-8601 UTC time with up to 9 fractional digits, as nanoseconds since the epoch. */
export function isoToNs(text: string): bigint | undefined {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z$/.exec(text);
  if (!m) return undefined;
  const s = Date.parse(`${m[1]}Z`);
  if (Number.isNaN(s)) return undefined;
  return BigInt(s) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

const time = z.string().refine((s) => isoToNs(s) !== undefined, 'must be an ISO-8601 UTC time such as 2026-01-02T03:04:05.123456789Z');
const hash = z.string().regex(/^[0-9a-f]{16}$/, 'must be 16 lowercase hex digits');
const count = z.number().int().nonnegative();

const headerSchema = z.looseObject({
  type: z.literal('session'),
  format: z.literal(SESSION_FORMAT),
  session_id: z.string().min(1),
  calls: count.optional(),
});

const common = {
  ts: time,
  end_ts: time,
  span_id: z.string().min(1),
  parent_span_id: z.string().default(''),
  trace_id: z.string().default(''),
  status: z.string().default('ok'),
  error_type: z.string().optional(),
};

const toolSchema = z.looseObject({
  type: z.literal('tool_call'),
  ...common,
  tool: z.string().min(1),
  args_hash: hash,
  /** Absent when the result was not known (never "the same result"). */
  result_hash: hash.optional(),
  error_message: z.string().optional(),
});

const llmSchema = z.looseObject({
  type: z.literal('llm_call'),
  ...common,
  model: z.string().default(''),
  input_tokens: count.default(0),
  output_tokens: count.default(0),
  cache_read_tokens: count.default(0),
  /** Cache writes (files written before 2026-12-06 have none: priced as input, as then). */
  cache_creation_tokens: count.default(0),
  /** Files written before it was exported: input + output. */
  total_tokens: count.optional(),
  cost_usd: z.number().nonnegative().default(0),
});

export type SessionFileToolCall = z.infer<typeof toolSchema> & { tsNs: bigint; endNs: bigint };
export type SessionFileLlmCall = z.infer<typeof llmSchema> & { tsNs: bigint; endNs: bigint };

export interface SessionFile {
  sessionId: string;
  /** In start order (then span id), as the SQL detectors order calls. */
  toolCalls: SessionFileToolCall[];
  /** In start order (then span id) too. */
  llmCalls: SessionFileLlmCall[];
}

export class SessionFileError extends Error {
  override readonly name = 'SessionFileError';
}

const byStart = <T extends { tsNs: bigint; span_id: string }>(a: T, b: T) => (a.tsNs < b.tsNs ? -1 : a.tsNs > b.tsNs ? 1 : a.span_id < b.span_id ? -1 : a.span_id > b.span_id ? 1 : 0);

/**
 * Reads a session file. Throws SessionFileError naming the line and field of the first problem:
 * a replay of a file that was cut or edited by hand must not quietly judge fewer calls.
 */
export function parseSessionFile(text: string): SessionFile {
  const lines = text.split('\n');
  let sessionId: string | undefined;
  let declared: number | undefined;
  const toolCalls: SessionFileToolCall[] = [];
  const llmCalls: SessionFileLlmCall[] = [];
  // a call twice would be judged twice: a repeat the agent never made
  const seen = new Set<string>();
  const once = (spanId: string, n: number) => {
    if (seen.has(spanId)) fail(n, `span ${spanId} is in the file twice`);
    seen.add(spanId);
  };
  const fail = (n: number, message: string): never => {
    throw new SessionFileError(`line ${n}: ${message}`);
  };
  const check = <T>(schema: z.ZodType<T>, value: unknown, n: number): T => {
    const r = schema.safeParse(value);
    if (!r.success) {
      const issue = r.error.issues[0]!;
      fail(n, `${issue.path.length ? `${issue.path.join('.')} ` : ''}${issue.message}`);
    }
    return (r as { data: T }).data;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    const n = i + 1;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      fail(n, 'not JSON');
    }
    const type = (value as { type?: unknown } | null)?.type;
    if (sessionId === undefined) {
      if (type !== 'session') fail(n, `the file must start with a header line {"type":"session","format":"${SESSION_FORMAT}",…} (is this a loopwatch export?)`);
      const h = check(headerSchema, value, n);
      sessionId = h.session_id;
      declared = h.calls;
    } else if (type === 'tool_call') {
      const c = check(toolSchema, value, n);
      once(c.span_id, n);
      toolCalls.push({ ...c, tsNs: isoToNs(c.ts)!, endNs: isoToNs(c.end_ts)! });
    } else if (type === 'llm_call') {
      const c = check(llmSchema, value, n);
      once(c.span_id, n);
      llmCalls.push({ ...c, tsNs: isoToNs(c.ts)!, endNs: isoToNs(c.end_ts)! });
    } else {
      fail(n, `type must be "tool_call" or "llm_call", got ${JSON.stringify(type)}`);
    }
  }
  if (sessionId === undefined) throw new SessionFileError('empty file: no header line');
  // more than declared: calls the session received while it was exported (they come after the
  // header's count was taken)
  if (declared !== undefined && declared > toolCalls.length + llmCalls.length) {
    throw new SessionFileError(`the header declares ${declared} calls, the file has ${toolCalls.length + llmCalls.length} (cut short?)`);
  }
  toolCalls.sort(byStart);
  llmCalls.sort(byStart);
  return { sessionId, toolCalls, llmCalls };
}
