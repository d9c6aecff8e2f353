// Connects a LoopGuard to the instrumentation's tool hooks (traceTool / wrapTools calls).
// warn: a loop found in the completed calls is logged and recorded as a
// `loopwatch.loop_detected` event on the tool span that completed it. halt: the same, and a
// call that would continue a detected loop throws LoopDetectedError before it runs (the agent
// can catch it, e.g. to re-plan); the stopped call's span records the error.
import { isSpanContextValid, type Span } from '@opentelemetry/api';
import { detectorSettingPairs, parseDetectorSettings, type DetectorParams } from '../../../queries/src/detector-defaults.js';
import { beforeToolCall, onToolCall } from '../api.js';
import { onLlmCall, onUntracedToolCall, traceSession, type LlmCallRecord } from '../llm-calls.js';
import { warn } from '../warn.js';
import { noteHalt } from './halt-signal.js';
import { LoopDetectedError, LoopGuard, pausesBetween, touch, type GuardFinding } from './loop-guard.js';

export type GuardPolicy = 'warn' | 'halt' | 'off';

export interface EnableLoopGuardOptions {
  /** Default: LOOPWATCH_GUARD, else 'warn'. */
  policy?: GuardPolicy;
  /** Over LOOPWATCH_DETECTORS (the collector's variable: one setting for both), over DETECTOR_DEFAULTS. */
  params?: Partial<DetectorParams>;
  /** Where warnings go (default: stderr, marked [loopwatch]). */
  log?: (message: string, finding: GuardFinding) => void;
  /** Called for every new finding, whatever the policy. */
  onLoop?: (finding: GuardFinding) => void;
  maxSessions?: number;
  /**
   * Tools whose calls `halt` never stops for a loop (their loops are still reported): a poll that
   * keeps seeing the same answer is `stuck` after three calls, and stopped from then on it would
   * never see the answer change. A blown budget (`runaway`) still stops them. Default:
   * LOOPWATCH_GUARD_WARN_ONLY, tool names separated by commas.
   */
  warnOnly?: readonly string[];
}

export interface LoopGuardHandle {
  guard: LoopGuard;
  policy: GuardPolicy;
  disable(): void;
}

/** LOOPWATCH_GUARD: warn, halt or off; another value is said once on stderr and ignored (no guard). */
export function guardPolicyFromEnv(env: NodeJS.ProcessEnv = process.env, report: (message: string) => void = warn): GuardPolicy | undefined {
  const v = env.LOOPWATCH_GUARD?.trim().toLowerCase();
  if (v === 'warn' || v === 'halt' || v === 'off') return v;
  if (v) report(`LOOPWATCH_GUARD=${JSON.stringify(env.LOOPWATCH_GUARD)} ignored: use warn, halt or off`);
  return undefined;
}

/** LOOPWATCH_GUARD_WARN_ONLY: tool names, separated by commas (spaces around them ignored). */
export function warnOnlyFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.LOOPWATCH_GUARD_WARN_ONLY ?? '').split(',').map((t) => t.trim()).filter((t) => t !== '');
}

/**
 * LOOPWATCH_DETECTORS (`repeatMinRun=4,budgetMaxCostUsd=2`, as the collector takes it). A bad
 * setting is reported through `warn` and left out, the others kept: the agent keeps running
 * rather than fail over its monitoring's configuration, and one typo does not drop the spend
 * limits beside it (the whole variable was ignored). Settings that do not fit together (checked
 * across them) leave the variable out.
 */
export function detectorSettingsFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  report: (message: string) => void = warn,
): Partial<DetectorParams> {
  const text = env.LOOPWATCH_DETECTORS;
  if (text === undefined || text.trim() === '') return {};
  try {
    return parseDetectorSettings(text);
  } catch {
    // setting by setting (a ';' typed for ',' too)
    const kept: string[] = [];
    for (const pair of detectorSettingPairs(text.replaceAll(';', ','))) {
      try {
        parseDetectorSettings(pair);
        kept.push(pair);
      } catch (err) {
        report(`LOOPWATCH_DETECTORS: ${JSON.stringify(pair)} ignored (${(err as Error).message}); the other settings apply`);
      }
    }
    try {
      return parseDetectorSettings(kept.join(','));
    } catch (err) {
      report(`LOOPWATCH_DETECTORS ignored, the guard uses the default thresholds: ${(err as Error).message}`);
      return {};
    }
  }
}

function spanIds(span: Span): { spanId: string; traceId: string; parentSpanId: string | undefined } {
  const ctx = span.spanContext();
  // SDK 2.x exposes parentSpanContext, 1.x parentSpanId (both on the SDK's span object)
  const s = span as unknown as { parentSpanContext?: { spanId?: string }; parentSpanId?: string };
  return { spanId: ctx.spanId, traceId: ctx.traceId, parentSpanId: s.parentSpanContext?.spanId ?? s.parentSpanId };
}

/**
 * The session a call is judged in: its own, else the one conversation its trace names (as the
 * collector fills it in; known through LlmCallTap), else its trace. A call with neither (no withSession,
 * and no SDK to start a real span: the trace id is all zeros) belongs to no session the guard can
 * tell apart from others: it is not judged (said once), rather than lumped with every other such call.
 */
function sessionOf(sessionId: string | undefined, span: Span): string | undefined {
  if (sessionId !== undefined) return sessionId;
  const ctx = span.spanContext();
  if (isSpanContextValid(ctx)) return traceSession(ctx.traceId);
  if (!saidNoSession) {
    saidNoSession = true;
    warn('the loop guard skips tool calls outside withSession when no OpenTelemetry SDK runs (no trace to tell agents apart): run each agent in withSession({ sessionId })');
  }
  return undefined;
}
let saidNoSession = false;

/**
 * A call about to run deeper than the depth budget (halt): a finding of its own, not kept by the
 * guard (the call does not run; the calls around it end with its error and are left out, as any
 * call a halt stopped). The SQL pass, which leaves stopped calls out too, finds no call over the budget.
 */
function depthFinding(sessionId: string, tool: string, spanId: string, depth: number, maxDepth: number): GuardFinding {
  return {
    kind: 'runaway', sessionId, firstSpanId: spanId, lastSpanId: spanId, repeats: depth, wastedCalls: 0, wastedTokens: 0, wastedCostUsd: 0,
    tools: [tool], severity: 'critical', isNew: true,
    message: `Tool ${tool} would run at tool depth ${depth}, over the budget of ${maxDepth}: tools calling tools without end (budgetMaxToolDepth).`,
  };
}

const whereOf = (f: GuardFinding): string => (f.agent ? `session ${f.sessionId} (agent ${f.agent})` : `session ${f.sessionId}`);

/** The finding with the agent of the call it came with (the guard keeps no agents: one per session is not a given). */
const ofAgent = (f: GuardFinding, agent: string | undefined): GuardFinding => (agent ? { ...f, agent } : f);

function eventAttributes(f: GuardFinding, action: 'warn' | 'halt'): Record<string, string | number> {
  return {
    'loop.detector': f.kind,
    'loop.session_id': f.sessionId,
    ...(f.agent ? { 'loop.agent': f.agent } : {}),
    'loop.first_span_id': f.firstSpanId,
    'loop.last_span_id': f.lastSpanId,
    'loop.repeats': f.repeats,
    'loop.severity': f.severity,
    'loop.tools': f.tools.join(','),
    'loop.action': action,
    'loop.message': f.message,
  };
}

/**
 * One log line per (session, agent, kind, tools, action) a minute: a poller that sees the same
 * answer three times between other calls raises a new stuck finding each time (300 lines in 1,200
 * calls). The next line after a quiet minute says how many were left out; span events and onLoop
 * get every one. The agent is in the key: two sub-agents of one session looping alike each get
 * their line.
 */
export class LogLimit {
  private readonly last = new Map<string, { at: number; skipped: number }>();
  constructor(
    private readonly maxKeys: number,
    private readonly everyMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** null: leave the line out; else what to add to it (the lines left out before it). */
  admit(f: GuardFinding, action: 'warn' | 'halt' = 'warn'): string | null {
    const key = `${f.sessionId}\u0000${f.agent ?? ''}\u0000${f.kind}\u0000${f.tools.join(',')}\u0000${action}`;
    const t = this.now();
    const seen = this.last.get(key);
    if (seen && t - seen.at < this.everyMs) {
      seen.skipped++;
      return null;
    }
    const skipped = seen?.skipped ?? 0;
    touch(this.last, key, { at: t, skipped: 0 }, this.maxKeys);
    return skipped > 0 ? ` (and ${skipped} more like it in the minute before, not logged)` : '';
  }
}

let current: LoopGuardHandle | null = null;

/** LLM calls kept apart per session until a tool call takes them; past this, the oldest are summed. */
const MAX_UNCHARGED_LLM_CALLS = 32;

/** An LLM call not charged to a tool call yet; several merged into one keep the pauses between them. */
type TurnLlmCall = LlmCallRecord & { pauses?: [number, number][] };

/** Sessions named (withSession, a conversation id) whose LLM calls wait for a tool call, per session the guard keeps. */
const NAMED_PER_SESSION = 4;
/** Sessions whose waiting turn was dropped, remembered (ids only) until their next tool call says so, per session the guard keeps. */
const DROPPED_PER_SESSION = 16;

/**
 * What enableLoopGuard keeps per session between an LLM call and the tool call it is charged to:
 * sessions named (withSession, a trace's conversation) apart from sessions that are only a trace,
 * each bounded on its own, least recently touched dropped first. LLM calls outside any session
 * (a server's moderation or title call per request: each a trace of its own, never followed by a
 * tool call) took the slots of one bound of maxSessions shared with the named sessions, and
 * crowded out a session's turn before its tool call was charged with it: its token budget never
 * blown, silently (a soak review: 1,000 such calls between). They now crowd out only each other;
 * named sessions get NAMED_PER_SESSION times as many slots as the guard keeps sessions (chat-only
 * sessions, never drained, also take them), and a dropped entry is given to `dropped`.
 */
export class SessionMemory<V> {
  private readonly named = new Map<string, V>();
  private readonly traced = new Map<string, V>();
  private readonly droppedNamed?: (sessionId: string, value: V) => void;
  private readonly droppedTraced?: (sessionId: string, value: V) => void;
  constructor(
    readonly maxNamed: number,
    readonly maxTraced: number,
    dropped?: (sessionId: string, value: V, named: boolean) => void,
  ) {
    if (dropped) {
      this.droppedNamed = (sessionId, value) => dropped(sessionId, value, true);
      this.droppedTraced = (sessionId, value) => dropped(sessionId, value, false);
    }
  }

  get(sessionId: string): V | undefined {
    return this.named.get(sessionId) ?? this.traced.get(sessionId);
  }

  /** Keeps the value as the most recently touched; `traced`: the session is only its trace (its id is the trace id). */
  set(sessionId: string, value: V, traced: boolean): void {
    if (traced) touch(this.traced, sessionId, value, this.maxTraced, this.droppedTraced);
    else touch(this.named, sessionId, value, this.maxNamed, this.droppedNamed);
  }

  delete(sessionId: string): void {
    if (!this.named.delete(sessionId)) this.traced.delete(sessionId);
  }

  get size(): number {
    return this.named.size + this.traced.size;
  }
}

/**
 * The running guard (enableLoopGuard's, or the one LOOPWATCH_GUARD started at the import), to
 * read its findings or end a session: `loopGuard()?.guard.end(sessionId)`.
 */
export function loopGuard(): LoopGuardHandle | undefined {
  return current ?? (globalThis as { __loopwatchGuard?: LoopGuardHandle }).__loopwatchGuard ?? undefined;
}

/** Starts the guard (replacing one started before); returns it with a disable function. */
export function enableLoopGuard(opts: EnableLoopGuardOptions = {}): LoopGuardHandle {
  current?.disable();
  const policy = opts.policy ?? guardPolicyFromEnv() ?? 'warn';
  const log = opts.log ?? warn;
  const guard = new LoopGuard({ params: { ...detectorSettingsFromEnv(), ...opts.params }, maxSessions: opts.maxSessions });
  const maxSessions = opts.maxSessions ?? 1000;
  const warnOnly = new Set(opts.warnOnly ?? warnOnlyFromEnv());
  const logLimit = new LogLimit(maxSessions);
  /** A new finding: an event on the span of the call it came with, a log line (limited), onLoop. */
  const announce = (span: Span, f: GuardFinding, action: 'warn' | 'halt'): void => {
    span.addEvent('loopwatch.loop_detected', eventAttributes(f, action));
    const line = logLimit.admit(f);
    if (line !== null) log(`${f.kind === 'redundant' ? 'redundant calls' : `${f.kind} loop`} in ${whereOf(f)}: ${f.message}${line}`, f);
    opts.onLoop?.(f);
  };
  /**
   * A call stopped for a loop raised before (by this agent's calls or, in a shared session,
   * another's): its own line, naming the agent stopped, limited as the findings' lines are.
   */
  const sayHalted = (span: Span, tool: string, f: GuardFinding): void => {
    span.addEvent('loopwatch.loop_detected', eventAttributes(f, 'halt'));
    const line = logLimit.admit(f, 'halt');
    const loop = f.kind === 'runaway' ? 'the runaway session' : `${/^[aeiou]/.test(f.kind) ? 'an' : 'a'} ${f.kind} loop of the session`;
    if (line !== null) log(`halted a ${tool} call in ${whereOf(f)}: it would continue ${loop}: ${f.message}${line}`, f);
  };
  // each session's latest LLM call: the model turn a stopped call belongs to (the parallel tool
  // calls of one turn were two stops, and haltSignal() ended a run before the model had read one)
  const lastLlm = new SessionMemory<LlmCallRecord>(NAMED_PER_SESSION * maxSessions, maxSessions);
  /** The error a stopped call throws; the run's haltSignal()s count it first. */
  const halted = (sessionId: string, f: GuardFinding): LoopDetectedError => {
    const err = new LoopDetectedError(f);
    noteHalt(sessionId, err, lastLlm.get(sessionId));
    return err;
  };
  const unsubscribe: (() => void)[] = [];
  // the calls a halt stopped before they ran. A call whose error is a LoopDetectedError but is not
  // one of them ran, and failed because a call inside it was stopped (each level of a recursion
  // stopped for its depth): it is left out, as the SQL pass leaves it out, and not counted as a
  // stopped call (30 such levels were a no-progress run after the depth stop)
  const stopped = new WeakSet<Span>();
  if (policy !== 'off') {
    // Tokens and cost, for the budgets and the waste: as in the detector pass, a tool call is
    // charged with its turn, the session's LLM calls that started before it did since the tool
    // call before (planning and reflection too, not only the call that asked for it), and with
    // the LLM calls it made itself. The pass splits a turn evenly among the tool calls its last
    // LLM call requested; live, their number is not known yet, so the first one seen after the
    // LLM calls ended takes it all (a streamed LLM call ends after the tool calls it requested:
    // the next one then). A session's total, which the budgets compare, is the same.
    // A call another tool call of its session made (a build running compile and link) was not
    // requested by the model: it takes no share, and leaves the turn to the call that was.
    // a session's turn dropped before a tool call took it: its tokens and cost never reach the
    // budgets. Said once, when the session's next tool call comes (a finished session's last turn,
    // its answer, waits for a tool call that never comes: dropped, nothing was missed, and saying
    // so on a busy, healthy server hid a real miss later). Named sessions only (a trace-only one is
    // most often an LLM call outside any session, which no tool call follows)
    let saidDropped = false;
    // session id -> tokens of the turns dropped. Ids only, so more of them than the turns: the
    // finished sessions dropped after one must not push it out before its tool call comes (a
    // regression review: 85 chat sessions after the turn, maxSessions 10, and nothing was said)
    const droppedTurns = new Map<string, number>();
    const unchargedLlm = new SessionMemory<TurnLlmCall[]>(NAMED_PER_SESSION * maxSessions, maxSessions, (sessionId, turn, named) => {
      if (!named || saidDropped || !turn.some((llm) => llm.tokens > 0 || llm.costUsd > 0)) return;
      const tokens = turn.reduce((sum, llm) => sum + llm.tokens, 0) + (droppedTurns.get(sessionId) ?? 0);
      touch(droppedTurns, sessionId, tokens, DROPPED_PER_SESSION * maxSessions);
    });
    const sayDropped = (sessionId: string): void => {
      const tokens = droppedTurns.get(sessionId);
      if (tokens === undefined) return;
      droppedTurns.delete(sessionId);
      if (saidDropped) return;
      saidDropped = true;
      droppedTurns.clear();
      warn(`the loop guard dropped the LLM calls of session ${sessionId} before its next tool call (${tokens} tokens): more than ${NAMED_PER_SESSION * maxSessions} sessions had LLM calls waiting for a tool call at once, and the token and cost budgets missed them; raise maxSessions (enableLoopGuard({ maxSessions }))`);
    };
    const idleGapMs = guard.params.budgetIdleGapS * 1000;
    // by the span id of the tool call they were made in, until it ends
    const spentInside = new Map<string, { tokens: number; costUsd: number }>();
    let saidCrowded = false;
    let saidUntraced = false;
    unsubscribe.push(
      // the guard sees only the calls Loopwatch traces: an agent whose tools only the framework
      // traced was not guarded, and nothing said so (a review: 30 identical AI SDK tool calls under
      // halt, none stopped, not a word, while the collector found the loop)
      onUntracedToolCall(({ tool, tracer }) => {
        if (saidUntraced) return;
        saidUntraced = true;
        warn(`the loop guard (${policy}) does not see tool calls that only the ${tracer} traced (${tool}): wrap the tools with wrapTools() or traceTool() for it to judge${policy === 'halt' ? ' and stop' : ''} them`);
      }),
    );
    unsubscribe.push(
      onLlmCall((llm) => {
        if (llm.insideTool === undefined) {
          const traced = llm.sessionId === llm.traceId;
          lastLlm.set(llm.sessionId, llm, traced);
          const turn = unchargedLlm.get(llm.sessionId) ?? [];
          turn.push(llm);
          // a session that only talks (no tool call for a long while): its oldest calls summed, the total kept
          if (turn.length > MAX_UNCHARGED_LLM_CALLS) {
            const [a, b] = turn.splice(0, 2) as [TurnLlmCall, TurnLlmCall];
            // the pauses between them that could count (longer than the idle gap) kept with them
            const pauses = [...(a.pauses ?? []), ...(b.pauses ?? [])];
            if (b.startedAt - a.endedAt > idleGapMs) pauses.push([a.endedAt, b.startedAt]);
            turn.unshift({
              ...b, tokens: a.tokens + b.tokens, costUsd: a.costUsd + b.costUsd, startedAt: Math.min(a.startedAt, b.startedAt),
              endedAt: Math.max(a.endedAt, b.endedAt), ...(pauses.length ? { pauses } : {}),
            });
          }
          return unchargedLlm.set(llm.sessionId, turn, traced);
        }
        const spent = spentInside.get(llm.insideTool);
        if (spent) {
          spent.tokens += llm.tokens;
          spent.costUsd += llm.costUsd;
        } else {
          touch(spentInside, llm.insideTool, { tokens: llm.tokens, costUsd: llm.costUsd }, maxSessions);
        }
      }),
    );
    unsubscribe.push(
      onToolCall((call) => {
        if (call.errorType === 'LoopDetectedError' && !stopped.has(call.span)) return;
        const ids = spanIds(call.span);
        const sessionId = sessionOf(call.sessionId, call.span);
        if (sessionId === undefined) return;
        let turnTokens = 0;
        let turnCost = 0;
        let turnStart = Infinity;
        let turnEnd = -Infinity;
        let turnPauses: [number, number][] | undefined;
        if (droppedTurns.size > 0) sayDropped(sessionId);
        const turn = unchargedLlm.get(sessionId);
        if (turn) {
          const requested = !call.nested;
          let kept = 0;
          let ran: TurnLlmCall[] | undefined;
          for (const llm of turn) {
            if (llm.startedAt <= call.startedAt) {
              turnStart = Math.min(turnStart, llm.startedAt);
              turnEnd = Math.max(turnEnd, llm.endedAt);
              if (turn.length > 1 || llm.pauses) (ran ??= []).push(llm);
              if (!requested) {
                turn[kept++] = llm; // the requested call's, when it ends
                continue;
              }
              turnTokens += llm.tokens;
              turnCost += llm.costUsd;
            } else {
              turn[kept++] = llm; // started after this call: the next call's turn
            }
          }
          turn.length = kept;
          if (kept === 0) unchargedLlm.delete(sessionId);
          if (ran) {
            const pauses = pausesBetween(ran);
            for (const llm of ran) if (llm.pauses) pauses.push(...llm.pauses); // those kept when calls were merged
            if (pauses.length) turnPauses = pauses;
          }
        }
        const inside = spentInside.get(ids.spanId);
        if (inside) spentInside.delete(ids.spanId);
        const raised = guard.observe({
          sessionId,
          tokens: turnTokens + (inside?.tokens ?? 0),
          costUsd: turnCost + (inside?.costUsd ?? 0),
          ...(turnEnd >= turnStart ? { turnStart, turnEnd, turnPauses } : {}),
          tool: call.tool,
          argsHash: call.argsHash,
          resultHash: call.resultHash,
          status: call.status,
          errorType: call.errorType,
          errorMessage: call.errorMessage,
          ts: call.startedAt,
          endTs: call.endedAt,
          spanId: ids.spanId,
          parentSpanId: ids.parentSpanId,
          depth: call.depth,
        });
        if (!saidCrowded && guard.activeSessionsForgotten > 0) {
          saidCrowded = true;
          warn(`the loop guard keeps ${maxSessions} sessions and more are active at once: sessions are forgotten between their calls, and their loops go unseen; raise maxSessions (enableLoopGuard({ maxSessions }))`);
        }
        for (const f of raised) if (f.isNew) announce(call.span, ofAgent(f, call.agent), 'warn');
      }),
    );
  }
  if (policy === 'halt') {
    unsubscribe.push(
      beforeToolCall((call) => {
        const sessionId = sessionOf(call.sessionId, call.span);
        if (sessionId === undefined) return;
        // over the depth budget: stopped before it runs. The guard sees a call when it ends, and
        // in a recursion the deepest call ends first: a recursion that does not end was never stopped.
        const maxDepth = guard.params.budgetMaxToolDepth;
        if (maxDepth > 0 && call.depth > maxDepth) {
          const f = ofAgent(depthFinding(sessionId, call.tool, spanIds(call.span).spanId, call.depth, maxDepth), call.agent);
          announce(call.span, f, 'halt');
          stopped.add(call.span);
          throw halted(sessionId, f);
        }
        const checked = guard.check({ sessionId, tool: call.tool, argsHash: call.argsHash });
        if (!checked || checked.kind === 'redundant') return;
        if (checked.kind !== 'runaway' && warnOnly.has(call.tool)) return;
        const f = ofAgent(checked, call.agent);
        sayHalted(call.span, call.tool, f);
        stopped.add(call.span);
        throw halted(sessionId, f);
      }),
    );
  }
  const handle: LoopGuardHandle = {
    guard,
    policy,
    disable() {
      for (const u of unsubscribe.splice(0)) u();
      if (current === handle) current = null;
    },
  };
  current = handle;
  return handle;
}
