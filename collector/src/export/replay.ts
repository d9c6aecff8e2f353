// Replays a session file through the loop rules: the in-process LoopGuard (the SQL detectors'
// rules, checked to agree with them on the labeled corpus) over the file's tool calls in start
// order, with tokens and cost attributed as the detector pass attributes them. Offline: no
// collector, no store. What it answers: which loops would these settings find in this session?
import { LoopGuard, type GuardFinding } from '../../../instrumentation/src/guard/loop-guard.js';
import { costUsd } from '../../../instrumentation/src/cost.js';
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

/** An LLM call's cost: reported when > 0, else its tokens at the model's list price (the shipped table, LOOPWATCH_MODEL_PRICES over it). */
function llmCost(l: SessionFileLlmCall): number {
  if (l.cost_usd > 0) return l.cost_usd;
  return costUsd(l.model, { inputTokens: l.input_tokens, outputTokens: l.output_tokens, cacheReadTokens: l.cache_read_tokens }) ?? 0;
}

function llmTokens(l: SessionFileLlmCall): number {
  return l.total_tokens ?? l.input_tokens + l.output_tokens;
}

export function replaySession(file: SessionFile, params: Partial<DetectorParams> = {}): ReplayResult {
  const guard = new LoopGuard({ params });
  const calls = file.toolCalls.filter((c) => c.error_type !== 'LoopDetectedError');
  // as the detector pass (queries/features/detector-calls.sql): the LLM call that requested each
  // tool call is the latest one that started at or before the call started, its tokens and cost
  // split evenly among the calls it requested; an LLM call made inside a tool call (a child of
  // its span) is charged to that tool call instead
  const toolSpans = new Set(calls.map((c) => c.span_id));
  const spentInside = new Map<string, { tokens: number; cost: number }>();
  for (const l of file.llmCalls) {
    if (!toolSpans.has(l.parent_span_id)) continue;
    const spent = spentInside.get(l.parent_span_id) ?? { tokens: 0, cost: 0 };
    spent.tokens += llmTokens(l);
    spent.cost += llmCost(l);
    spentInside.set(l.parent_span_id, spent);
  }
  const byStart = file.llmCalls.filter((l) => !toolSpans.has(l.parent_span_id)).sort((a, b) => (a.tsNs < b.tsNs ? -1 : a.tsNs > b.tsNs ? 1 : 0));
  const requester: (SessionFileLlmCall | undefined)[] = [];
  const share = new Map<SessionFileLlmCall, number>();
  let j = -1;
  for (const c of calls) {
    while (j + 1 < byStart.length && byStart[j + 1]!.tsNs <= c.tsNs) j++;
    const l = j >= 0 ? byStart[j] : undefined;
    requester.push(l);
    if (l) share.set(l, (share.get(l) ?? 0) + 1);
  }
  for (let i = 0; i < calls.length; i++) {
    const c = calls[i]!;
    const l = requester[i];
    const n = l ? share.get(l)! : 0;
    const inside = spentInside.get(c.span_id);
    guard.observe({
      sessionId: file.sessionId,
      tool: c.tool,
      argsHash: c.args_hash,
      resultHash: c.result_hash,
      status: c.status,
      errorType: c.error_type,
      errorMessage: c.error_message,
      ts: Number(c.tsNs) / 1e6,
      endTs: Number(c.endNs) / 1e6,
      spanId: c.span_id,
      parentSpanId: c.parent_span_id || undefined,
      tokens: (l ? llmTokens(l) / n : 0) + (inside?.tokens ?? 0),
      costUsd: (l ? llmCost(l) / n : 0) + (inside?.cost ?? 0),
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
