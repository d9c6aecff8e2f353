// Builds agent sessions as real OpenTelemetry span rows (GenAI semconv, the layout the collector
// writes) and inserts them into otel_traces, so the real materialized views normalize them.
import { createHash } from 'node:crypto';
import type { ClickHouseClient } from '@clickhouse/client';
import { canonicalJson, hash64Hex } from '../../instrumentation/src/canonical.js';
import type { ObservedCall } from '../../instrumentation/src/guard/loop-guard.js';

export interface CallSpec {
  tool: string;
  args?: unknown;
  /** Successful result (ignored when error is set). */
  result?: unknown;
  error?: { type: string; message: string };
  /** Tool call duration (ms), default 50. */
  durMs?: number;
  /** Tokens of the LLM call that requested this tool call; 0 = no LLM span before it. Default 1000/100. */
  tokensIn?: number;
  tokensOut?: number;
  model?: string;
  /** Index of an earlier call in the same session to nest under (recursive tool chains). */
  parentCall?: number;
  /** Starts with the previous call (1 µs after it), as calls run at once do; no LLM call before it. */
  parallel?: boolean;
  /** The LLM call before it is streamed: it ends after this call does. */
  streamed?: boolean;
  /** Tokens (input) of an LLM call the tool makes itself: a child span of the call. */
  innerLlmTokens?: number;
  /** Time without calls before this one (its LLM call included), ms. */
  pauseMs?: number;
  /** Duration of the LLM call before it, ms (default 20). */
  llmMs?: number;
  /** After it, an LLM call of this many ms (the agent's answer, 500 + 200 tokens), before the next call's pause: the next call's turn. */
  answerMs?: number;
}

export interface BuiltSession {
  sessionId: string;
  traceId: string;
  rootSpanId: string;
  /** Span id of each tool call, in order. */
  spanIds: string[];
  rows: Record<string, unknown>[];
  /** Index in rows of each tool call's span (to insert a session in parts). */
  toolRowIndex: number[];
  /** The same calls as LoopGuard.observe() input (agent_tool_calls-shaped), tokens and gpt-4o cost attributed. */
  guardRows: ObservedCall[];
}

let counter = 0;
function hexId(seed: string, bytes: number): string {
  return createHash('sha256').update(`${seed}:${counter++}`).digest('hex').slice(0, bytes * 2);
}

/** Epoch nanoseconds as ClickHouse DateTime64(9) text (UTC). */
export function dt64(ns: bigint): string {
  const ms = ns / 1_000_000n;
  const d = new Date(Number(ms)).toISOString().replace('T', ' ').replace('Z', '');
  return `${d.slice(0, 19)}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}`;
}

function span(p: {
  start: bigint; durNs: bigint; traceId: string; spanId: string; parent: string; name: string; service: string;
  attrs: Record<string, string>; error?: string;
}): Record<string, unknown> {
  return {
    Timestamp: dt64(p.start), TraceId: p.traceId, SpanId: p.spanId, ParentSpanId: p.parent, TraceState: '',
    SpanName: p.name, SpanKind: 'Internal', ServiceName: p.service, ResourceAttributes: { 'service.name': p.service },
    ScopeName: 'test', ScopeVersion: '', SpanAttributes: p.attrs, Duration: String(p.durNs),
    StatusCode: p.error !== undefined ? 'Error' : 'Unset', StatusMessage: p.error ?? '',
    'Events.Timestamp': [], 'Events.Name': [], 'Events.Attributes': [],
    'Links.TraceId': [], 'Links.SpanId': [], 'Links.TraceState': [], 'Links.Attributes': [],
  };
}

/** One session: an invoke_agent root span, then per call an LLM chat span and the execute_tool span. */
export function buildSession(sessionId: string, calls: CallSpec[], opts: { startMs?: number; service?: string; agent?: string; gapMs?: number } = {}): BuiltSession {
  const service = opts.service ?? 'test-agent-svc';
  const agent = opts.agent ?? 'test-agent';
  const traceId = hexId(sessionId, 16);
  const rootSpanId = hexId(sessionId, 8);
  let t = BigInt(opts.startMs ?? Date.now() - 60_000) * 1_000_000n;
  const t0 = t;
  const gap = BigInt(opts.gapMs ?? 10) * 1_000_000n;
  const rows: Record<string, unknown>[] = [];
  const spanIds: string[] = [];
  const toolRowIndex: number[] = [];
  const guardRows: ObservedCall[] = [];
  const base = { 'gen_ai.conversation.id': sessionId, 'gen_ai.agent.name': agent };
  let lastStart = t;
  // the answer LLM call after the call before: [start, end] ms
  let answer: [number, number] | undefined;
  for (const c of calls) {
    const model = c.model ?? 'gpt-4o';
    const tin = c.parallel ? 0 : (c.tokensIn ?? 1000);
    const tout = c.parallel ? 0 : (c.tokensOut ?? 100);
    if (c.pauseMs) t += BigInt(c.pauseMs) * 1_000_000n;
    const resume = t;
    if (c.parallel) t = lastStart + 1000n;
    const llmSpan = (start: bigint, durNs: bigint, parent: string, tokensIn: number, tokensOut: number) =>
      span({
        start, durNs, traceId, spanId: hexId(sessionId, 8), parent, name: `chat ${model}`, service,
        attrs: { ...base, 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': model, 'gen_ai.provider.name': 'openai',
          'gen_ai.usage.input_tokens': String(tokensIn), 'gen_ai.usage.output_tokens': String(tokensOut) },
      });
    let turnStart: number | undefined;
    let turnEnd: number | undefined;
    if (tin + tout > 0) {
      const llmDur = BigInt(c.llmMs ?? 20) * 1_000_000n;
      // streamed: the model's turn ends after the tool call it asked for
      const turn = c.streamed ? llmDur + gap + BigInt(c.durMs ?? 50) * 1_000_000n + gap : llmDur;
      rows.push(llmSpan(t, turn, rootSpanId, tin, tout));
      turnStart = Number(t / 1_000_000n);
      turnEnd = Number((t + turn) / 1_000_000n);
      t += llmDur + gap;
    }
    const turnPauses: [number, number][] = [];
    let answerTokens = 0;
    if (answer) {
      if (turnStart !== undefined && turnStart > answer[1]) turnPauses.push([answer[1], turnStart]);
      turnStart = answer[0];
      turnEnd ??= answer[1];
      answerTokens = 700;
      answer = undefined;
    }
    const spanId = hexId(sessionId, 8);
    const dur = BigInt(c.durMs ?? 50) * 1_000_000n;
    const attrs: Record<string, string> = {
      ...base, 'gen_ai.operation.name': 'execute_tool', 'gen_ai.tool.name': c.tool,
      'loopwatch.tool.args_hash': hash64Hex(canonicalJson(c.args ?? {})),
    };
    if (!c.error) attrs['loopwatch.tool.result_hash'] = hash64Hex(canonicalJson(c.result ?? 'ok'));
    else attrs['error.type'] = c.error.type;
    const parent = c.parentCall !== undefined ? spanIds[c.parentCall]! : rootSpanId;
    toolRowIndex.push(rows.length);
    rows.push(span({ start: t, durNs: dur, traceId, spanId, parent, name: `execute_tool ${c.tool}`, service, attrs, error: c.error?.message }));
    if (c.innerLlmTokens) rows.push(llmSpan(t + 1_000_000n, dur - 2_000_000n, spanId, c.innerLlmTokens, 0));
    spanIds.push(spanId);
    guardRows.push({
      sessionId, tool: c.tool, argsHash: attrs['loopwatch.tool.args_hash']!, resultHash: attrs['loopwatch.tool.result_hash'],
      status: c.error ? 'error' : 'ok', errorType: c.error?.type, errorMessage: c.error?.message,
      ts: Number(t / 1_000_000n), endTs: Number((t + dur) / 1_000_000n), spanId, parentSpanId: parent,
      tokens: tin + tout + answerTokens, costUsd: (tin * 2.5 + tout * 10 + 500 * 2.5 * (answerTokens / 700) + 200 * 10 * (answerTokens / 700)) / 1e6,
      ...(turnStart !== undefined ? { turnStart, turnEnd, ...(turnPauses.length ? { turnPauses } : {}) } : {}),
    });
    lastStart = t;
    t = c.parallel && resume > t + dur + gap ? resume : t + dur + gap;
    if (c.answerMs) {
      const d = BigInt(c.answerMs) * 1_000_000n;
      rows.push(llmSpan(t, d, rootSpanId, 500, 200));
      answer = [Number(t / 1_000_000n), Number((t + d) / 1_000_000n)];
      t += d + gap;
    }
  }
  rows.push(span({ start: t0 - 1_000_000n, durNs: t - t0 + 2_000_000n, traceId, spanId: rootSpanId, parent: '', name: `invoke_agent ${agent}`, service,
    attrs: { ...base, 'gen_ai.operation.name': 'invoke_agent' } }));
  return { sessionId, traceId, rootSpanId, spanIds, rows, toolRowIndex, guardRows };
}

export async function insertSpans(client: ClickHouseClient, rows: Record<string, unknown>[]): Promise<void> {
  await client.insert({ table: 'otel_traces', values: rows, format: 'JSONEachRow' });
}

export async function insertSession(client: ClickHouseClient, s: BuiltSession): Promise<BuiltSession> {
  await insertSpans(client, s.rows);
  return s;
}

/** n copies of a call spec. */
export function times(n: number, c: CallSpec): CallSpec[] {
  return Array.from({ length: n }, () => ({ ...c }));
}

/** Span rows as an OTLP/JSON export request (what an exporter would POST to /v1/traces). */
export function otlpJson(rows: Record<string, unknown>[]): string {
  const nanosOf = (text: string): bigint => {
    const [date, time] = text.split(' ');
    const [hms, frac = '0'] = time!.split('.');
    return BigInt(Date.parse(`${date}T${hms}Z`)) * 1_000_000n + BigInt(frac.padEnd(9, '0'));
  };
  const byService = new Map<string, unknown[]>();
  for (const r of rows) {
    const start = nanosOf(r.Timestamp as string);
    const attrs = Object.entries(r.SpanAttributes as Record<string, string>).map(([key, v]) => ({ key, value: { stringValue: v } }));
    const span = {
      traceId: r.TraceId, spanId: r.SpanId, parentSpanId: r.ParentSpanId, name: r.SpanName, kind: 1,
      startTimeUnixNano: String(start), endTimeUnixNano: String(start + BigInt(r.Duration as string)), attributes: attrs,
      status: r.StatusCode === 'Error' ? { code: 2, message: r.StatusMessage } : { code: 0 },
    };
    const list = byService.get(r.ServiceName as string) ?? [];
    list.push(span);
    byService.set(r.ServiceName as string, list);
  }
  return JSON.stringify({
    resourceSpans: [...byService].map(([service, spans]) => ({
      resource: { attributes: [{ key: 'service.name', value: { stringValue: service } }] },
      scopeSpans: [{ scope: { name: 'test' }, spans }],
    })),
  });
}
