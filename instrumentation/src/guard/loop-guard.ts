// In-process LoopGuard: the rules of the SQL detectors (queries/detectors/*.sql, documented in
// docs/detectors.md) applied to the live stream of completed tool calls, with the same
// thresholds (queries/src/detector-defaults.ts). O(1) amortized per call: per session it keeps
// the current runs and bounded maps (LRU), and at most maxSessions sessions.
//
// `LoopGuard` is pure (no OpenTelemetry): feed it rows shaped like agent_tool_calls with
// observe(). `enableLoopGuard()` connects it to the instrumentation's tool hooks: policy 'warn'
// logs and adds a `loopwatch.loop_detected` event to the tool span; 'halt' also throws a
// LoopDetectedError before a call that would continue a detected loop runs.
//
// Known differences from the SQL side (documented): calls are taken in arrival order (the SQL
// orders by start time, so parallel calls may differ); nesting depth follows only tool->tool
// parent links the guard has seen; maps are bounded (1024 call keys, 256 error keys, 4096 seen
// results per session), which only matters in very long sessions.
import { createHash } from 'node:crypto';
import {
  normalizeErrorMessage,
  resolveDetectorParams,
  type DetectorParams,
} from '../../../queries/src/detector-defaults.js';

export type LoopKind = 'repeat' | 'stuck' | 'oscillation' | 'retry_storm' | 'error_loop' | 'runaway' | 'redundant';

/** A completed tool call, shaped like a row of agent_tool_calls. */
export interface ObservedCall {
  sessionId: string;
  tool: string;
  argsHash: string;
  /** Hash of the result; empty/undefined = unknown (never "the same result"). */
  resultHash?: string | undefined;
  status: 'ok' | 'error' | string;
  errorType?: string | undefined;
  errorMessage?: string | undefined;
  /** Start time: epoch ms (number), bigint ns, Date, or DateTime64 text. */
  ts: number | bigint | string | Date;
  /** End time (same forms) or duration; default: the start. */
  endTs?: number | bigint | string | Date;
  spanId: string;
  parentSpanId?: string | undefined;
  /** Tokens / cost attributed to this call (the LLM call that requested it). */
  tokens?: number | undefined;
  costUsd?: number | undefined;
  /** The call succeeded and returned nothing; default: resultHash is the hash of ''. */
  resultEmpty?: boolean | undefined;
}

export interface GuardFinding {
  kind: LoopKind;
  sessionId: string;
  firstSpanId: string;
  lastSpanId: string;
  repeats: number;
  wastedCalls: number;
  wastedTokens: number;
  wastedCostUsd: number;
  tools: string[];
  severity: 'info' | 'warning' | 'critical';
  message: string;
  /** True when this observe() call raised it; false when it grew. */
  isNew: boolean;
}

export class LoopDetectedError extends Error {
  override readonly name = 'LoopDetectedError';
  constructor(readonly finding: GuardFinding) {
    super(`Loopwatch halted a looping tool call: ${finding.message}`);
  }
}

export interface LoopGuardOptions {
  params?: Partial<DetectorParams>;
  /** Sessions tracked at once (least recently active dropped first). */
  maxSessions?: number;
}

// Hashes of an empty result, as instrumentation sends it (hex of the bytes) and as
// agent_tool_calls stores it (decimal of the little-endian UInt64).
const EMPTY_BYTES = createHash('sha256').update('').digest().subarray(0, 8);
const EMPTY_HASHES = new Set([EMPTY_BYTES.toString('hex'), EMPTY_BYTES.readBigUInt64LE().toString()]);

const MAX_KEYS = 1024;
const MAX_ERROR_KEYS = 256;
const MAX_SEEN = 4096;

interface Ref {
  spanId: string;
  tool: string;
  tokens: number;
  cost: number;
}

interface Run {
  key: string;
  len: number;
  first: Ref;
  last: Ref;
  tokens: number;
  cost: number;
}

interface Tally {
  count: number;
  firstSeq: number;
  lastSeq: number;
  first: Ref;
  last: Ref;
  tokens: number;
  cost: number;
}

interface Island {
  matches: number;
  first: Ref;
  last: Ref;
  tools: Set<string>;
  tokens: number;
  cost: number;
}

interface SessionState {
  seq: number;
  /** Last maxPeriod + 1 calls: key, outcome, ref. */
  ring: { key: string; outcome: string; ref: Ref }[];
  repeat: (Run & { outcomes: Set<string> }) | null;
  stuck: (Run & { outcome: string }) | null;
  storm: Run | null;
  islands: Map<number, Island>;
  errors: Map<string, Tally>;
  redundant: Map<string, Tally>;
  lastErrorByTool: Map<string, string>;
  seen: Map<string, true>;
  noProgress: { len: number; members: Ref[] | null; first: Ref } | null;
  firstRef: Ref | null;
  start: number;
  calls: number;
  tokens: number;
  cost: number;
  depths: Map<string, number>;
  runaway: { reasons: Set<string>; wasted: number; tokens: number; cost: number; last: Ref; stillNoProgress: boolean; tools: Set<string>; counted: WeakSet<Ref> } | null;
  findings: Map<string, GuardFinding>;
}

function toMs(t: number | bigint | string | Date | undefined): number {
  if (t === undefined) return NaN;
  if (typeof t === 'number') return t;
  if (typeof t === 'bigint') return Number(t / 1_000_000n);
  if (t instanceof Date) return t.getTime();
  const m = /^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(\.\d+)?Z?$/.exec(t);
  if (m) return Date.parse(`${m[1]}T${m[2]}${(m[3] ?? '').slice(0, 4)}Z`);
  return Date.parse(t);
}

/** Bounded map: refreshes on touch, drops the least recently touched entry past the limit. */
function touch<K, V>(map: Map<K, V>, key: K, value: V, limit: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > limit) map.delete(map.keys().next().value as K);
}

export class LoopGuard {
  readonly params: DetectorParams;
  private readonly sessions = new Map<string, SessionState>();
  private readonly maxSessions: number;

  constructor(opts: LoopGuardOptions = {}) {
    this.params = resolveDetectorParams(opts.params);
    this.maxSessions = opts.maxSessions ?? 1000;
  }

  /** Current findings of a session (or of all sessions). */
  findings(sessionId?: string): GuardFinding[] {
    const states = sessionId === undefined ? [...this.sessions.values()] : [this.sessions.get(sessionId)].filter((s) => !!s);
    return states.flatMap((s) => [...s.findings.values()].map((f) => ({ ...f, isNew: false })));
  }

  /** Forgets a session (it ended). */
  end(sessionId: string): void {
    this.sessions.delete(sessionId);
  }

  /**
   * The detected loop that a call about to run would continue, if any: the next call of a
   * repeat/stuck run, the next call of an oscillating cycle, another call of a tool in a retry
   * storm or error loop, any call of a runaway session. Redundant calls never halt.
   */
  check(call: { sessionId: string; tool: string; argsHash: string }): GuardFinding | undefined {
    const s = this.sessions.get(call.sessionId);
    if (!s || s.findings.size === 0) return undefined;
    const key = `${call.tool}|${call.argsHash}`;
    const active = (kind: LoopKind, first: Ref | undefined) => (first ? s.findings.get(`${kind}|${first.spanId}`) : undefined);
    if (s.repeat && s.repeat.key === key) {
      const f = active('repeat', s.repeat.first);
      if (f) return f;
    }
    if (s.stuck && s.stuck.key === key) {
      const f = active('stuck', s.stuck.first);
      if (f) return f;
    }
    for (const [p, island] of s.islands) {
      const expected = s.ring[s.ring.length - p];
      if (expected && expected.key === key) {
        const f = active('oscillation', island.first);
        if (f) return f;
      }
    }
    if (s.storm && s.storm.first.tool === call.tool) {
      const f = active('retry_storm', s.storm.first);
      if (f) return f;
    }
    const lastError = s.lastErrorByTool.get(call.tool);
    if (lastError) {
      const t = s.errors.get(lastError);
      const f = t && active('error_loop', t.first);
      if (f) return f;
    }
    if (s.runaway && s.firstRef) {
      const budgetBlown = [...s.runaway.reasons].some((r) => r !== 'no_progress');
      if (budgetBlown || s.runaway.stillNoProgress) return active('runaway', s.firstRef);
    }
    return undefined;
  }

  /** Takes one completed call; returns the findings it raised (isNew) or grew. */
  observe(call: ObservedCall): GuardFinding[] {
    // a call the guard stopped never ran: not part of any loop (the SQL view leaves it out too)
    if (call.errorType === 'LoopDetectedError') return [];
    const p = this.params;
    const s = this.state(call.sessionId);
    const out: GuardFinding[] = [];
    s.seq++;
    const seq = s.seq;
    const tokens = call.tokens ?? 0;
    const cost = call.costUsd ?? 0;
    const ref: Ref = { spanId: call.spanId, tool: call.tool, tokens, cost };
    const key = `${call.tool}|${call.argsHash}`;
    const failed = call.status === 'error';
    const errorKey = `${call.tool}|${call.errorType ?? ''}|${normalizeErrorMessage(call.errorMessage ?? '')}`;
    const hasResult = !failed && !!call.resultHash;
    const outcome = failed
      ? `E${call.errorType ?? ''}|${normalizeErrorMessage(call.errorMessage ?? '')}`
      : hasResult ? `R${call.resultHash}` : `U${call.spanId}`;
    const empty = hasResult && (call.resultEmpty ?? EMPTY_HASHES.has(String(call.resultHash).toLowerCase()));
    const prev = s.ring[s.ring.length - 1];
    const emit = (kind: LoopKind, first: Ref, f: Omit<GuardFinding, 'kind' | 'sessionId' | 'firstSpanId' | 'isNew'>) => {
      const id = `${kind}|${first.spanId}`;
      const isNew = !s.findings.has(id);
      const finding: GuardFinding = { kind, sessionId: call.sessionId, firstSpanId: first.spanId, isNew, ...f };
      s.findings.set(id, { ...finding, isNew: false });
      out.push(finding);
    };
    const sev = (n: number, min: number): 'warning' | 'critical' => (n >= 2 * min ? 'critical' : 'warning');

    // repeat: same call in a row, outcomes mostly not new
    if (s.repeat && s.repeat.key === key) {
      const r = s.repeat;
      r.len++;
      r.last = ref;
      r.tokens += tokens;
      r.cost += cost;
      if (r.outcomes.size <= MAX_KEYS) r.outcomes.add(outcome);
    } else {
      s.repeat = { key, len: 1, first: ref, last: ref, tokens: 0, cost: 0, outcomes: new Set([outcome]) };
    }
    {
      const r = s.repeat;
      const id = `repeat|${r.first.spanId}`;
      if (r.len >= p.repeatMinRun && r.outcomes.size <= r.len * p.repeatMaxNewRatio) {
        emit('repeat', r.first, {
          lastSpanId: r.last.spanId, repeats: r.len, wastedCalls: r.len - 1, wastedTokens: r.tokens, wastedCostUsd: r.cost,
          tools: [call.tool], severity: sev(r.len, p.repeatMinRun),
          message: `Tool ${call.tool} was called ${r.len} times in a row with the same arguments (${r.outcomes.size} distinct outcomes).`,
        });
      } else if (r.len > 1) {
        s.findings.delete(id); // the run turned out to make progress
      }
    }

    // stuck: same call and same successful result in a row
    if (s.stuck && s.stuck.key === key && s.stuck.outcome === outcome) {
      const r = s.stuck;
      r.len++;
      r.last = ref;
      r.tokens += tokens;
      r.cost += cost;
    } else {
      s.stuck = { key, outcome, len: 1, first: ref, last: ref, tokens: 0, cost: 0 };
    }
    if (s.stuck.len >= p.stuckMinRun && outcome.startsWith('R')) {
      const r = s.stuck;
      emit('stuck', r.first, {
        lastSpanId: r.last.spanId, repeats: r.len, wastedCalls: r.len - 1, wastedTokens: r.tokens, wastedCostUsd: r.cost,
        tools: [call.tool], severity: sev(r.len, p.stuckMinRun),
        message: `Tool ${call.tool} returned the same result to the same arguments ${r.len} times in a row: the agent is stuck.`,
      });
    }

    // oscillation: key and outcome equal to those one period back, over a cycle of distinct calls
    const maxP = Math.min(4, p.oscillationMaxPeriod);
    for (let period = 2; period <= maxP; period++) {
      const back = s.ring[s.ring.length - period];
      const matched = !!back && seq > period && back.key === key && back.outcome === outcome;
      if (!matched) {
        s.islands.delete(period);
        continue;
      }
      let island = s.islands.get(period);
      if (!island) {
        island = { matches: 0, first: back.ref, last: ref, tools: new Set(), tokens: 0, cost: 0 };
        for (let i = s.ring.length - period; i < s.ring.length; i++) island.tools.add(s.ring[i]!.ref.tool);
        s.islands.set(period, island);
      }
      island.matches++;
      island.last = ref;
      island.tools.add(call.tool);
      island.tokens += tokens;
      island.cost += cost;
      // distinct keys of the cycle: the last period keys including this one
      const cycle = new Set([...s.ring.slice(s.ring.length - period + 1).map((c) => c.key), key]);
      if (cycle.size === period && island.matches >= period && island.matches + period >= period * p.oscillationMinCycles) {
        const total = island.matches + period;
        const tools = [...island.tools].sort();
        emit('oscillation', island.first, {
          lastSpanId: ref.spanId, repeats: total, wastedCalls: island.matches, wastedTokens: island.tokens, wastedCostUsd: island.cost,
          tools, severity: total >= 2 * period * p.oscillationMinCycles ? 'critical' : 'warning',
          message: `The agent cycles through ${period} calls (${tools.join(', ')}) ${Math.floor(total / period)} times with the same arguments and results.`,
        });
      }
    }

    // retry_storm: the same tool failing in a row
    if (failed && s.storm && s.storm.first.tool === call.tool && prev?.outcome.startsWith('E') && prev.ref.tool === call.tool) {
      const r = s.storm;
      r.len++;
      r.last = ref;
      r.tokens += tokens;
      r.cost += cost;
    } else {
      s.storm = failed ? { key: call.tool, len: 1, first: ref, last: ref, tokens: 0, cost: 0 } : null;
    }
    if (s.storm && s.storm.len >= p.retryStormMinRun) {
      const r = s.storm;
      emit('retry_storm', r.first, {
        lastSpanId: r.last.spanId, repeats: r.len, wastedCalls: r.len - 1, wastedTokens: r.tokens, wastedCostUsd: r.cost,
        tools: [call.tool], severity: sev(r.len, p.retryStormMinRun),
        message: `Tool ${call.tool} failed ${r.len} times in a row (last error: ${call.errorType ?? 'error'}).`,
      });
    }

    // error_loop: the same error again across the session, other calls in between
    if (failed) {
      const t = s.errors.get(errorKey);
      if (t) {
        t.count++;
        t.lastSeq = seq;
        t.last = ref;
        t.tokens += tokens;
        t.cost += cost;
      }
      const tally = t ?? { count: 1, firstSeq: seq, lastSeq: seq, first: ref, last: ref, tokens: 0, cost: 0 };
      touch(s.errors, errorKey, tally, MAX_ERROR_KEYS);
      touch(s.lastErrorByTool, call.tool, errorKey, MAX_ERROR_KEYS);
      if (tally.count >= p.errorLoopMinCount && tally.lastSeq - tally.firstSeq + 1 > tally.count) {
        emit('error_loop', tally.first, {
          lastSpanId: ref.spanId, repeats: tally.count, wastedCalls: tally.count - 1, wastedTokens: tally.tokens, wastedCostUsd: tally.cost,
          tools: [call.tool], severity: 'critical',
          message: `Tool ${call.tool} hit the same error ${tally.count} times in this session (${call.errorType ?? 'error'}): the task may be impossible as attempted.`,
        });
      }
    } else {
      s.lastErrorByTool.delete(call.tool);
    }

    // redundant: the same call with the same non-empty result earlier in the session
    if (outcome.startsWith('R') && !empty) {
      const rk = `${key}|${outcome}`;
      const t = s.redundant.get(rk);
      if (t) {
        t.count++;
        t.last = ref;
        t.tokens += tokens;
        t.cost += cost;
      }
      const tally = t ?? { count: 1, firstSeq: seq, lastSeq: seq, first: ref, last: ref, tokens: 0, cost: 0 };
      touch(s.redundant, rk, tally, MAX_KEYS);
      if (tally.count >= p.redundantMinCalls) {
        emit('redundant', tally.first, {
          lastSpanId: ref.spanId, repeats: tally.count, wastedCalls: tally.count - 1, wastedTokens: tally.tokens, wastedCostUsd: tally.cost,
          tools: [call.tool], severity: 'info',
          message: `Tool ${call.tool} was called ${tally.count} times with the same arguments and got the same result: ${tally.count - 1} redundant calls.`,
        });
      }
    }

    // runaway: no new result for a long run, or a budget blown
    s.firstRef ??= ref;
    const startMs = toMs(call.ts);
    if (s.calls === 0) s.start = startMs;
    s.calls++;
    s.tokens += tokens;
    s.cost += cost;
    const seenKey = `${call.tool}|${outcome}`;
    const isNew = outcome.startsWith('U') || (outcome.startsWith('R') && !s.seen.has(seenKey));
    if (outcome.startsWith('R')) touch(s.seen, seenKey, true, MAX_SEEN);
    const reasons: string[] = [];
    let newlyNoProgress: Ref[] = [];
    if (isNew) {
      s.noProgress = null;
    } else {
      const np = s.noProgress ?? { len: 0, members: [] as Ref[] | null, first: ref };
      np.len++;
      if (np.members) np.members.push(ref);
      s.noProgress = np;
      if (np.len === p.runawayNoProgressRun && np.members) {
        newlyNoProgress = np.members;
        np.members = null; // counted; later calls of the run count one by one
      } else if (np.len > p.runawayNoProgressRun) {
        newlyNoProgress = [ref];
      }
      if (np.len >= p.runawayNoProgressRun) reasons.push('no_progress');
    }
    let depth = 1;
    if (call.parentSpanId) depth = (s.depths.get(call.parentSpanId) ?? 0) + 1;
    touch(s.depths, call.spanId, depth, MAX_KEYS);
    const endMs = Number.isFinite(toMs(call.endTs)) ? toMs(call.endTs) : startMs;
    if (p.budgetMaxCalls > 0 && s.calls > p.budgetMaxCalls) reasons.push('calls');
    if (p.budgetMaxTokens > 0 && s.tokens > p.budgetMaxTokens) reasons.push('tokens');
    if (p.budgetMaxCostUsd > 0 && s.cost > p.budgetMaxCostUsd) reasons.push('cost');
    if (p.budgetMaxWallTimeS > 0 && (endMs - s.start) / 1000 > p.budgetMaxWallTimeS) reasons.push('wall_time');
    if (p.budgetMaxToolDepth > 0 && depth > p.budgetMaxToolDepth) reasons.push('depth');
    if (s.runaway) s.runaway.stillNoProgress = reasons.includes('no_progress');
    if (reasons.length > 0) {
      const rw = s.runaway ?? { reasons: new Set<string>(), wasted: 0, tokens: 0, cost: 0, last: ref, stillNoProgress: false, tools: new Set<string>(), counted: new WeakSet<Ref>() };
      s.runaway = rw;
      rw.stillNoProgress = reasons.includes('no_progress');
      for (const r of reasons) rw.reasons.add(r);
      // each call counted once: the no-progress run's members when it reaches the threshold, else this call
      const counted = newlyNoProgress.length > 0 ? newlyNoProgress : [ref];
      for (const c of counted) {
        if (rw.counted.has(c)) continue;
        rw.counted.add(c);
        if (rw.tools.size < MAX_KEYS) rw.tools.add(c.tool);
        rw.wasted++;
        rw.tokens += c.tokens;
        rw.cost += c.cost;
      }
      rw.last = ref;
      const why = [...rw.reasons].sort().join(', ');
      emit('runaway', s.firstRef, {
        lastSpanId: ref.spanId, repeats: rw.wasted, wastedCalls: rw.wasted, wastedTokens: rw.tokens, wastedCostUsd: rw.cost,
        tools: [...rw.tools].sort(), severity: 'critical', message: `Runaway session: ${why} (${rw.wasted} calls wasted).`,
      });
    }

    s.ring.push({ key, outcome, ref });
    if (s.ring.length > 5) s.ring.shift();
    return out;
  }

  private state(sessionId: string): SessionState {
    let s = this.sessions.get(sessionId);
    if (!s) {
      s = {
        seq: 0, ring: [], repeat: null, stuck: null, storm: null, islands: new Map(), errors: new Map(), redundant: new Map(),
        lastErrorByTool: new Map(), seen: new Map(), noProgress: null, firstRef: null, start: 0, calls: 0, tokens: 0, cost: 0,
        depths: new Map(), runaway: null, findings: new Map(),
      };
    }
    touch(this.sessions, sessionId, s, this.maxSessions);
    return s;
  }
}
