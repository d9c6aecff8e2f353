// Replays a session file through the loop rules: the in-process LoopGuard (the SQL detectors'
// rules, checked to agree with them on the labeled corpus) over the file's tool calls in start
// order, with tokens and cost attributed as the detector pass attributes them. Offline: no
// collector, no store. What it answers: which loops would these settings find in this session?
import { LoopGuard, nsToMs, pausesBetween, type GuardFinding } from '../../../instrumentation/src/guard/loop-guard.js';
import { callCost } from '../../../instrumentation/src/cost.js';
import type { DetectorParams } from '../../../queries/src/detector-defaults.js';
import type { SessionFile, SessionFileLlmCall } from './session-file.js';

export interface ReplayResult {
  sessionId: string;
  /** Tool calls judged (calls a LoopGuard stopped before they ran are left out, as in SQL). */
  toolCalls: number;
  llmCalls: number;
  settings: DetectorParams;
  /** Each loop as it stands after the session's last call, in the order they were raised. */
  findings: Omit<GuardFinding, 'isNew'>[];
}

/** An LLM call's cost: reported when > 0 (unless LOOPWATCH_MODEL_PRICES prices the model), else its tokens at the model's list price (the shipped table, LOOPWATCH_MODEL_PRICES over it). */
function llmCost(l: SessionFileLlmCall): number {
  return callCost(l.cost_usd, l.model, { inputTokens: l.input_tokens, outputTokens: l.output_tokens, cacheReadTokens: l.cache_read_tokens, cacheCreationTokens: l.cache_creation_tokens });
}

function llmTokens(l: SessionFileLlmCall): number {
  return l.total_tokens ?? l.input_tokens + l.output_tokens;
}

interface Turn {
  tokens: number;
  cost: number;
  llms: SessionFileLlmCall[];
  /** The top-level calls that share it. */
  share: number;
}

/** When a turn's LLM calls ran (epoch ms), and the pauses between them, as the live guard has them. */
function turnTimes(turn: Turn): { turnStart: number; turnEnd: number; turnPauses?: [number, number][] } {
  const runs = turn.llms.map((l) => ({ startedAt: nsToMs(l.tsNs), endedAt: nsToMs(l.endNs) }));
  const pauses = pausesBetween(runs); // sorts runs by start
  return { turnStart: runs[0]!.startedAt, turnEnd: runs.reduce((end, r) => Math.max(end, r.endedAt), -Infinity), ...(pauses.length ? { turnPauses: pauses } : {}) };
}

export function replaySession(file: SessionFile, params: Partial<DetectorParams> = {}): ReplayResult {
  const guard = new LoopGuard({ params });
  const calls = file.toolCalls.filter((c) => c.error_type !== 'LoopDetectedError');
  // as the detector pass (queries/features/detector-calls.sql): a turn is the LLM calls from one
  // tool call the model requested to the next (planning, reflection, the call that asks for
  // tools); a requested call takes the latest turn that began at or before it, split evenly
  // among the calls that share it. A call another tool call made (its parent span) takes none;
  // an LLM call made inside a tool call (a child of its span) is charged to that tool call.
  const toolSpans = new Set(calls.map((c) => c.span_id));
  const spentInside = new Map<string, { tokens: number; cost: number }>();
  for (const l of file.llmCalls) {
    if (!toolSpans.has(l.parent_span_id)) continue;
    const spent = spentInside.get(l.parent_span_id) ?? { tokens: 0, cost: 0 };
    spent.tokens += llmTokens(l);
    spent.cost += llmCost(l);
    spentInside.set(l.parent_span_id, spent);
  }
  // both in start order, as parseSessionFile sorts them
  const requested = calls.filter((c) => !toolSpans.has(c.parent_span_id));
  const turned = file.llmCalls.filter((l) => !toolSpans.has(l.parent_span_id));
  // each LLM call to the first requested call that started at or after it (none after the last: the final answer)
  const owned = new Map<(typeof calls)[number], Turn>();
  let k = 0;
  for (const l of turned) {
    while (k < requested.length && requested[k]!.tsNs < l.tsNs) k++;
    if (k === requested.length) break;
    const owner = requested[k]!;
    const t = owned.get(owner) ?? { tokens: 0, cost: 0, llms: [], share: 0 };
    t.tokens += llmTokens(l);
    t.cost += llmCost(l);
    t.llms.push(l);
    owned.set(owner, t);
  }
  // each requested call to the latest turn begun at or before it
  const turnOf = new Map<(typeof calls)[number], Turn>();
  let current: Turn | undefined;
  for (const c of requested) {
    current = owned.get(c) ?? current;
    if (!current) continue;
    current.share++;
    turnOf.set(c, current);
  }
  for (const c of calls) {
    const t = turnOf.get(c);
    const inside = spentInside.get(c.span_id);
    guard.observe({
      sessionId: file.sessionId,
      tool: c.tool,
      argsHash: c.args_hash,
      resultHash: c.result_hash,
      status: c.status,
      errorType: c.error_type,
      errorMessage: c.error_message,
      ts: nsToMs(c.tsNs),
      endTs: nsToMs(c.endNs),
      spanId: c.span_id,
      parentSpanId: c.parent_span_id || undefined,
      tokens: (t ? t.tokens / t.share : 0) + (inside?.tokens ?? 0),
      costUsd: (t ? t.cost / t.share : 0) + (inside?.cost ?? 0),
      ...(t ? turnTimes(t) : {}),
    });
  }
  return {
    sessionId: file.sessionId,
    toolCalls: calls.length,
    llmCalls: file.llmCalls.length,
    settings: guard.params,
    findings: guard.findings(file.sessionId).map(({ isNew: _isNew, ...f }) => f),
  };
}
