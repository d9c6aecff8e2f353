// In-process LoopGuard: the rules of the SQL detectors (queries/detectors/*.sql, documented in
// docs/detectors.md) applied to the live stream of completed tool calls, with the same
// thresholds (queries/src/detector-defaults.ts). O(1) amortized per call: per session it keeps
// the current runs, a ring of the last calls and bounded LRU tables, and at most maxSessions
// sessions. observe() runs on every tool call, so it builds no keys it does not need (runs and
// the ring compare tool and arguments field by field, the tables hash the key's strings in
// place), normalizes an error message only for a failed call (memoized), allocates no closures,
// and builds finding text only when it emits.
//
// `LoopGuard` is pure (no OpenTelemetry): feed it rows shaped like agent_tool_calls with
// observe(). `enableLoopGuard()` connects it to the instrumentation's tool hooks: policy 'warn'
// logs and adds a `loopwatch.loop_detected` event to the tool span; 'halt' also throws a
// LoopDetectedError before a call that would continue a detected loop runs.
//
// Known differences from the SQL side (documented): calls are taken in arrival order (the SQL
// orders by start time, so parallel calls may differ); nesting depth follows only tool->tool
// parent links the guard has seen; per-session state is bounded (1024 call keys and span ids,
// 256 error keys, 4096 seen results, least recently used dropped first), which only matters in
// very long sessions.
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
const EMPTY_HEX = EMPTY_BYTES.toString('hex');
const EMPTY_DEC = EMPTY_BYTES.readBigUInt64LE().toString();
const EMPTY_HEX_FIRST = EMPTY_HEX.charCodeAt(0); // 'e'

const MAX_KEYS = 1024;
const MAX_ERROR_KEYS = 256;
const MAX_SEEN = 4096;

// FNV-1a over UTF-16 code units, finished so the last characters reach the low bits (the slot):
// where a key goes in an LruTable. A hit is checked against the stored strings, so a collision
// costs a probe, never a wrong answer. 30 bits: a small integer to V8, stored unboxed.
function strHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  return (h ^ (h >>> 13)) & 0x3fffffff;
}

/** Hash of a key of several strings, from their strHash()es. */
const hashWith = (h: number, next: number): number => (Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) ^ next) & 0x3fffffff;

/**
 * A session's memory of call keys (up to three strings, '' for unused), with a count per key and,
 * for tallies, the first call's span id and the tokens and cost after it. Bounded like an LRU:
 * past `limit` keys the least recently touched goes. Typed arrays (two columns and an
 * open-addressing index) instead of a Map keyed by concatenated strings: observe() builds no key
 * text, the garbage collector does not copy the columns, and they double as the session grows.
 */
class LruTable {
  private size = 0;
  /** Per entry e: ints[4e..4e+3] = hash, count, older and newer entry in the LRU list (-1 = none). */
  private ints = new Int32Array(4 * 16);
  /** keys[3e..3e+2]: the key's strings. */
  private readonly keys: string[] = [];
  /** Tallies: the first call's span id; waste[2e], waste[2e+1] = tokens and cost after it. */
  private readonly firsts: string[] = [];
  private waste = new Float64Array(2 * 16);
  private oldest = -1;
  private newest = -1;
  /** Linear probing: slot -> entry + 1 (0 = empty), at least twice as many slots as entries. */
  private index = new Int32Array(32);

  constructor(private readonly limit: number) {}

  /** The entry of the key, or -1. */
  find(h: number, a: string, b: string, c: string): number {
    const index = this.index;
    const mask = index.length - 1;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const e = index[i]! - 1;
      if (e < 0) return -1;
      if (this.ints[4 * e] === h && this.keys[3 * e] === a && this.keys[3 * e + 1] === b && this.keys[3 * e + 2] === c) return e;
    }
  }

  count(e: number): number {
    return this.ints[4 * e + 1]!;
  }

  first(e: number): string {
    return this.firsts[e]!;
  }

  tokens(e: number): number {
    return this.waste[2 * e]!;
  }

  cost(e: number): number {
    return this.waste[2 * e + 1]!;
  }

  setCount(e: number, n: number): void {
    this.ints[4 * e + 1] = n;
  }

  /** One more call of the key, with its waste; it becomes the most recently touched. */
  again(e: number, tokens: number, cost: number): void {
    this.ints[4 * e + 1]!++;
    this.waste[2 * e] = this.waste[2 * e]! + tokens;
    this.waste[2 * e + 1] = this.waste[2 * e + 1]! + cost;
    this.touch(e);
  }

  /** Makes the entry the most recently touched. */
  touch(e: number): void {
    if (e === this.newest) return;
    this.unlink(e);
    this.append(e);
  }

  /** Adds a key (not in the table) with count 1 and no waste; the least recently touched key goes if full. */
  add(h: number, a: string, b: string, c: string, first: string): number {
    let e: number;
    if (this.size < this.limit) {
      e = this.size++;
      if (4 * this.size > this.ints.length) this.grow();
    } else {
      e = this.oldest;
      this.unlink(e);
      this.unindex(e);
    }
    this.ints[4 * e] = h;
    this.ints[4 * e + 1] = 1;
    this.keys[3 * e] = a;
    this.keys[3 * e + 1] = b;
    this.keys[3 * e + 2] = c;
    this.firsts[e] = first;
    this.waste[2 * e] = 0;
    this.waste[2 * e + 1] = 0;
    this.append(e);
    this.place(e);
    return e;
  }

  private place(e: number): void {
    const index = this.index;
    const mask = index.length - 1;
    let i = this.ints[4 * e]! & mask;
    while (index[i] !== 0) i = (i + 1) & mask;
    index[i] = e + 1;
  }

  private unlink(e: number): void {
    const o = this.ints[4 * e + 2]!, n = this.ints[4 * e + 3]!;
    if (o >= 0) this.ints[4 * o + 3] = n;
    else this.oldest = n;
    if (n >= 0) this.ints[4 * n + 2] = o;
    else this.newest = o;
  }

  private append(e: number): void {
    this.ints[4 * e + 2] = this.newest;
    this.ints[4 * e + 3] = -1;
    if (this.newest >= 0) this.ints[4 * this.newest + 3] = e;
    else this.oldest = e;
    this.newest = e;
  }

  /** Removes an entry from the index: backward-shift deletion, so probes never meet tombstones. */
  private unindex(e: number): void {
    const index = this.index;
    const mask = index.length - 1;
    let hole = this.ints[4 * e]! & mask;
    while (index[hole] !== e + 1) hole = (hole + 1) & mask;
    for (let j = (hole + 1) & mask; index[j] !== 0; j = (j + 1) & mask) {
      // the entry at j moves into the hole unless its home slot lies after the hole
      if (((j - this.ints[4 * (index[j]! - 1)]!) & mask) >= ((j - hole) & mask)) {
        index[hole] = index[j]!;
        hole = j;
      }
    }
    index[hole] = 0;
  }

  private grow(): void {
    const ints = new Int32Array(2 * this.ints.length);
    ints.set(this.ints);
    this.ints = ints;
    const waste = new Float64Array(2 * this.waste.length);
    waste.set(this.waste);
    this.waste = waste;
    this.index = new Int32Array(2 * this.index.length);
    for (let e = 0; e < this.size - 1; e++) this.place(e); // the entry being added is placed by add()
  }
}

interface Ref {
  spanId: string;
  tool: string;
  tokens: number;
  cost: number;
}

/** A run of consecutive calls (repeat, stuck, retry storm): its length, ends and waste. */
interface Run {
  len: number;
  first: Ref;
  last: Ref;
  tokens: number;
  cost: number;
}

function extendRun(r: Run, ref: Ref, tokens: number, cost: number): void {
  r.len++;
  r.last = ref;
  r.tokens += tokens;
  r.cost += cost;
}

/** Starts the run over at `ref` (the objects are reused: observe() runs on every call). */
function restartRun(r: Run, ref: Ref): void {
  r.len = 1;
  r.first = ref;
  r.last = ref;
  r.tokens = 0;
  r.cost = 0;
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

/** A call's outcome, as one string: the result hash itself for a result, else a tagged error or unknown. */
type Outcome = string;
const OUTCOME_TAG = '\u0000'; // result hashes (hex or decimal digits) never start with it

interface RepeatRun extends Run {
  tool: string;
  args: string;
  /** The run's first outcome; the set of its distinct outcomes once there are two. */
  outcome0: Outcome;
  outcomes: Set<Outcome> | null;
  /** Its finding's id, made once per run (checked on every call of a run that makes progress). */
  id: string | null;
}

interface StuckRun extends Run {
  tool: string;
  args: string;
  outcome: Outcome;
}

const RING = 5; // the last calls kept: the longest oscillation period (4) plus one

// runaway reasons as bits, in the (sorted) order their names are listed
const REASON_NAMES = ['calls', 'cost', 'depth', 'no_progress', 'tokens', 'wall_time'] as const;
const R_CALLS = 1;
const R_COST = 2;
const R_DEPTH = 4;
const R_NO_PROGRESS = 8;
const R_TOKENS = 16;
const R_WALL_TIME = 32;

interface SessionState {
  id: string;
  /** The LRU list of sessions: older and newer neighbours. */
  older: SessionState | null;
  newer: SessionState | null;
  seq: number;
  /** Last RING calls, oldest first from ringStart: tool, arguments, outcome, ref. */
  ringTool: string[];
  ringArgs: string[];
  ringOutcome: Outcome[];
  ringRef: Ref[];
  ringLen: number;
  ringNext: number;
  repeat: RepeatRun | null;
  stuck: StuckRun | null;
  storm: Run | null;
  islands: Map<number, Island>;
  errors: Map<string, Tally>;
  /** (tool, arguments, result) -> calls, first call, waste. */
  redundant: LruTable;
  lastErrorByTool: Map<string, string>;
  /** (tool, result) of successful calls. */
  seen: LruTable;
  noProgress: { len: number; members: Ref[] | null; first: Ref } | null;
  firstRef: Ref | null;
  start: number;
  calls: number;
  tokens: number;
  cost: number;
  /** span id -> nesting depth (in the count column). */
  depths: LruTable;
  runaway: { reasons: number; wasted: number; tokens: number; cost: number; last: Ref; stillNoProgress: boolean; tools: Set<string>; counted: WeakSet<Ref> } | null;
  findings: Map<string, GuardFinding>;
}

/** Ring slot of the call k back (1 = the previous call), or -1. */
function back(s: SessionState, k: number): number {
  if (k > s.ringLen) return -1;
  return (s.ringNext - k + RING) % RING;
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
  if (map.size > limit) evictOldest(map);
}

function evictOldest<K, V>(map: Map<K, V>): void {
  for (const k of map.keys()) {
    map.delete(k);
    return;
  }
}

const severity = (n: number, min: number): 'warning' | 'critical' => (n >= 2 * min ? 'critical' : 'warning');

const NORM_CACHE = 256;

export class LoopGuard {
  readonly params: DetectorParams;
  private readonly sessions = new Map<string, SessionState>();
  private readonly maxSessions: number;
  /** Sessions from the least to the most recently active (a list: moving one is O(1), no map churn). */
  private oldest: SessionState | null = null;
  private newest: SessionState | null = null;
  /** Normalized error messages by raw message (normalizing costs a few regular expressions). */
  private normalized = new Map<string, string>();

  constructor(opts: LoopGuardOptions = {}) {
    this.params = resolveDetectorParams(opts.params);
    this.maxSessions = opts.maxSessions ?? 1000;
  }

  /** Current findings of a session (or of all sessions). */
  findings(sessionId?: string): GuardFinding[] {
    const states: SessionState[] = [];
    if (sessionId === undefined) for (let s = this.oldest; s; s = s.newer) states.push(s); // least recently active first
    else if (this.sessions.has(sessionId)) states.push(this.sessions.get(sessionId)!);
    return states.flatMap((s) => [...s.findings.values()].map((f) => ({ ...f, isNew: false })));
  }

  /** Forgets a session (it ended). */
  end(sessionId: string): void {
    const s = this.sessions.get(sessionId);
    if (!s) return;
    this.unlink(s);
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
    const tool = call.tool;
    const args = call.argsHash;
    const active = (kind: LoopKind, first: Ref | undefined) => (first ? s.findings.get(`${kind}|${first.spanId}`) : undefined);
    if (s.repeat && s.repeat.tool === tool && s.repeat.args === args) {
      const f = active('repeat', s.repeat.first);
      if (f) return f;
    }
    if (s.stuck && s.stuck.tool === tool && s.stuck.args === args) {
      const f = active('stuck', s.stuck.first);
      if (f) return f;
    }
    for (const [p, island] of s.islands) {
      const j = back(s, p);
      if (j >= 0 && s.ringTool[j] === tool && s.ringArgs[j] === args) {
        const f = active('oscillation', island.first);
        if (f) return f;
      }
    }
    if (s.storm && s.storm.first.tool === tool) {
      const f = active('retry_storm', s.storm.first);
      if (f) return f;
    }
    const lastError = s.lastErrorByTool.get(tool);
    if (lastError) {
      const t = s.errors.get(lastError);
      const f = t && active('error_loop', t.first);
      if (f) return f;
    }
    if (s.runaway && s.firstRef) {
      const budgetBlown = (s.runaway.reasons & ~R_NO_PROGRESS) !== 0;
      if (budgetBlown || s.runaway.stillNoProgress) return active('runaway', s.firstRef);
    }
    return undefined;
  }

  private normalize(message: string): string {
    if (message === '') return '';
    let n = this.normalized.get(message);
    if (n === undefined) {
      n = normalizeErrorMessage(message);
      if (this.normalized.size >= NORM_CACHE) this.normalized.clear();
      this.normalized.set(message, n);
    }
    return n;
  }

  private emit(
    out: GuardFinding[], s: SessionState, sessionId: string, kind: LoopKind, firstSpanId: string, lastSpanId: string, repeats: number, wastedCalls: number,
    wastedTokens: number, wastedCostUsd: number, tools: string[], sev: GuardFinding['severity'], message: string,
  ): void {
    const id = `${kind}|${firstSpanId}`;
    const isNew = !s.findings.has(id);
    const finding: GuardFinding = {
      kind, sessionId, firstSpanId, isNew, lastSpanId, repeats, wastedCalls, wastedTokens, wastedCostUsd, tools, severity: sev, message,
    };
    s.findings.set(id, {
      kind, sessionId, firstSpanId, isNew: false, lastSpanId, repeats, wastedCalls, wastedTokens, wastedCostUsd, tools, severity: sev, message,
    });
    out.push(finding);
  }

  /** Takes one completed call; returns the findings it raised (isNew) or grew. */
  observe(call: ObservedCall): GuardFinding[] {
    // a call the guard stopped never ran: not part of any loop (the SQL view leaves it out too)
    if (call.errorType === 'LoopDetectedError') return [];
    const p = this.params;
    const s = this.state(call.sessionId);
    const out: GuardFinding[] = [];
    const sessionId = call.sessionId;
    const tool = call.tool;
    const args = call.argsHash;
    s.seq++;
    const seq = s.seq;
    const tokens = call.tokens ?? 0;
    const cost = call.costUsd ?? 0;
    const ref: Ref = { spanId: call.spanId, tool, tokens, cost };
    const failed = call.status === 'error';
    const hasResult = !failed && !!call.resultHash;
    let errorKey = '';
    let outcome: Outcome;
    if (failed) {
      const type = call.errorType ?? '';
      const norm = this.normalize(call.errorMessage ?? '');
      outcome = OUTCOME_TAG + 'E' + type + OUTCOME_TAG + norm;
      errorKey = tool + OUTCOME_TAG + outcome;
    } else if (hasResult) {
      outcome = String(call.resultHash);
    } else {
      outcome = OUTCOME_TAG + 'U' + call.spanId;
    }
    let empty = false;
    if (hasResult) {
      if (call.resultEmpty != null) empty = call.resultEmpty;
      // as EMPTY_HEX/EMPTY_DEC.has(lower case): lower-casing only a text that could be the hex one
      else empty = outcome === EMPTY_HEX || outcome === EMPTY_DEC || (outcome.length === EMPTY_HEX.length && (outcome.charCodeAt(0) | 0x20) === EMPTY_HEX_FIRST && outcome.toLowerCase() === EMPTY_HEX);
    }
    const prevSlot = back(s, 1);

    // repeat: same call in a row, outcomes mostly not new (distinct outcomes: a set only once a second one shows up)
    let r = s.repeat;
    if (r && r.tool === tool && r.args === args) {
      extendRun(r, ref, tokens, cost);
      if (r.outcomes) {
        if (r.outcomes.size <= MAX_KEYS) r.outcomes.add(outcome);
      } else if (outcome !== r.outcome0) {
        r.outcomes = new Set([r.outcome0, outcome]);
      }
    } else if (r) {
      r.tool = tool;
      r.args = args;
      restartRun(r, ref);
      r.outcome0 = outcome;
      r.outcomes = null;
      r.id = null;
    } else {
      r = s.repeat = { tool, args, len: 1, first: ref, last: ref, tokens: 0, cost: 0, outcome0: outcome, outcomes: null, id: null };
    }
    const distinct = r.outcomes ? r.outcomes.size : 1;
    if (r.len >= p.repeatMinRun && distinct <= r.len * p.repeatMaxNewRatio) {
      this.emit(out, s, sessionId, 'repeat', r.first.spanId, r.last.spanId, r.len, r.len - 1, r.tokens, r.cost, [tool], severity(r.len, p.repeatMinRun),
        `Tool ${tool} was called ${r.len} times in a row with the same arguments (${distinct} distinct outcomes).`);
    } else if (r.len > 1 && s.findings.size > 0) {
      s.findings.delete((r.id ??= `repeat|${r.first.spanId}`)); // the run turned out to make progress
    }

    // stuck: same call and same successful result in a row
    const st = s.stuck;
    if (st && st.tool === tool && st.args === args && st.outcome === outcome) {
      extendRun(st, ref, tokens, cost);
    } else if (st) {
      st.tool = tool;
      st.args = args;
      st.outcome = outcome;
      restartRun(st, ref);
    } else {
      s.stuck = { tool, args, outcome, len: 1, first: ref, last: ref, tokens: 0, cost: 0 };
    }
    const stuck = s.stuck!;
    if (stuck.len >= p.stuckMinRun && hasResult) {
      this.emit(out, s, sessionId, 'stuck', stuck.first.spanId, stuck.last.spanId, stuck.len, stuck.len - 1, stuck.tokens, stuck.cost, [tool], severity(stuck.len, p.stuckMinRun),
        `Tool ${tool} returned the same result to the same arguments ${stuck.len} times in a row: the agent is stuck.`);
    }

    // oscillation: key and outcome equal to those one period back, over a cycle of distinct calls
    const maxP = Math.min(4, p.oscillationMaxPeriod);
    for (let period = 2; period <= maxP; period++) {
      const b = back(s, period);
      const matched = b >= 0 && seq > period && s.ringTool[b] === tool && s.ringArgs[b] === args && s.ringOutcome[b] === outcome;
      if (!matched) {
        if (s.islands.size > 0) s.islands.delete(period);
        continue;
      }
      let island = s.islands.get(period);
      if (!island) {
        island = { matches: 0, first: s.ringRef[b]!, last: ref, tools: new Set(), tokens: 0, cost: 0 };
        for (let k = period; k >= 1; k--) island.tools.add(s.ringRef[back(s, k)]!.tool);
        s.islands.set(period, island);
      }
      island.matches++;
      island.last = ref;
      island.tools.add(tool);
      island.tokens += tokens;
      island.cost += cost;
      // distinct calls in the cycle: the last period calls including this one
      if (island.matches >= period && island.matches + period >= period * p.oscillationMinCycles && this.cycleDistinct(s, period, tool, args)) {
        const total = island.matches + period;
        const tools = [...island.tools].sort();
        this.emit(out, s, sessionId, 'oscillation', island.first.spanId, ref.spanId, total, island.matches, island.tokens, island.cost, tools,
          total >= 2 * period * p.oscillationMinCycles ? 'critical' : 'warning',
          `The agent cycles through ${period} calls (${tools.join(', ')}) ${Math.floor(total / period)} times with the same arguments and results.`);
      }
    }

    // retry_storm: the same tool failing in a row
    const prevFailed = prevSlot >= 0 && s.ringOutcome[prevSlot]!.startsWith(OUTCOME_TAG + 'E') && s.ringRef[prevSlot]!.tool === tool;
    if (failed && s.storm && s.storm.first.tool === tool && prevFailed) {
      extendRun(s.storm, ref, tokens, cost);
    } else {
      s.storm = failed ? { len: 1, first: ref, last: ref, tokens: 0, cost: 0 } : null;
    }
    if (s.storm && s.storm.len >= p.retryStormMinRun) {
      const rs = s.storm;
      this.emit(out, s, sessionId, 'retry_storm', rs.first.spanId, rs.last.spanId, rs.len, rs.len - 1, rs.tokens, rs.cost, [tool], severity(rs.len, p.retryStormMinRun),
        `Tool ${tool} failed ${rs.len} times in a row (last error: ${call.errorType ?? 'error'}).`);
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
      touch(s.lastErrorByTool, tool, errorKey, MAX_ERROR_KEYS);
      if (tally.count >= p.errorLoopMinCount && tally.lastSeq - tally.firstSeq + 1 > tally.count) {
        this.emit(out, s, sessionId, 'error_loop', tally.first.spanId, ref.spanId, tally.count, tally.count - 1, tally.tokens, tally.cost, [tool], 'critical',
          `Tool ${tool} hit the same error ${tally.count} times in this session (${call.errorType ?? 'error'}): the task may be impossible as attempted.`);
      }
    } else if (s.lastErrorByTool.size > 0) {
      s.lastErrorByTool.delete(tool);
    }

    // redundant: the same call with the same non-empty result earlier in the session
    const toolHash = hasResult ? strHash(tool) : 0;
    const outcomeHash = hasResult ? strHash(outcome) : 0;
    if (hasResult && !empty) {
      const rt = s.redundant;
      const h = hashWith(hashWith(toolHash, strHash(args)), outcomeHash);
      let e = rt.find(h, tool, args, outcome);
      if (e >= 0) rt.again(e, tokens, cost);
      else e = rt.add(h, tool, args, outcome, call.spanId);
      const n = rt.count(e);
      if (n >= p.redundantMinCalls) {
        this.emit(out, s, sessionId, 'redundant', rt.first(e), ref.spanId, n, n - 1, rt.tokens(e), rt.cost(e), [tool], 'info',
          `Tool ${tool} was called ${n} times with the same arguments and got the same result: ${n - 1} redundant calls.`);
      }
    }

    // runaway: no new result for a long run, or a budget blown
    s.firstRef ??= ref;
    const startMs = toMs(call.ts);
    if (s.calls === 0) s.start = startMs;
    s.calls++;
    s.tokens += tokens;
    s.cost += cost;
    let isNew = !failed && !hasResult; // an unknown result counts as new
    if (hasResult) {
      const h = hashWith(toolHash, outcomeHash);
      const e = s.seen.find(h, tool, outcome, '');
      isNew = e < 0;
      if (isNew) s.seen.add(h, tool, outcome, '', '');
      else s.seen.touch(e);
    }
    let reasons = 0;
    let newlyNoProgress: Ref[] | null = null;
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
      }
      if (np.len >= p.runawayNoProgressRun) reasons |= R_NO_PROGRESS;
    }
    const dt = s.depths;
    let depth = 1;
    if (call.parentSpanId) {
      const e = dt.find(strHash(call.parentSpanId), call.parentSpanId, '', '');
      if (e >= 0) depth = dt.count(e) + 1;
    }
    const spanHash = strHash(call.spanId);
    let de = dt.find(spanHash, call.spanId, '', '');
    if (de >= 0) dt.touch(de);
    else de = dt.add(spanHash, call.spanId, '', '', '');
    dt.setCount(de, depth);
    const endTs = toMs(call.endTs);
    const endMs = Number.isFinite(endTs) ? endTs : startMs;
    if (p.budgetMaxCalls > 0 && s.calls > p.budgetMaxCalls) reasons |= R_CALLS;
    if (p.budgetMaxTokens > 0 && s.tokens > p.budgetMaxTokens) reasons |= R_TOKENS;
    if (p.budgetMaxCostUsd > 0 && s.cost > p.budgetMaxCostUsd) reasons |= R_COST;
    if (p.budgetMaxWallTimeS > 0 && (endMs - s.start) / 1000 > p.budgetMaxWallTimeS) reasons |= R_WALL_TIME;
    if (p.budgetMaxToolDepth > 0 && depth > p.budgetMaxToolDepth) reasons |= R_DEPTH;
    if (s.runaway) s.runaway.stillNoProgress = (reasons & R_NO_PROGRESS) !== 0;
    if (reasons !== 0) {
      const rw = s.runaway ?? { reasons: 0, wasted: 0, tokens: 0, cost: 0, last: ref, stillNoProgress: false, tools: new Set<string>(), counted: new WeakSet<Ref>() };
      s.runaway = rw;
      rw.stillNoProgress = (reasons & R_NO_PROGRESS) !== 0;
      rw.reasons |= reasons;
      // each call counted once: the no-progress run's members when it reaches the threshold, else this call
      if (newlyNoProgress && newlyNoProgress.length > 0) {
        for (const c of newlyNoProgress) this.countRunaway(rw, c);
      } else {
        this.countRunaway(rw, ref);
      }
      rw.last = ref;
      let why = '';
      for (let b = 0; b < REASON_NAMES.length; b++) if (rw.reasons & (1 << b)) why += (why ? ', ' : '') + REASON_NAMES[b];
      this.emit(out, s, sessionId, 'runaway', s.firstRef.spanId, ref.spanId, rw.wasted, rw.wasted, rw.tokens, rw.cost, [...rw.tools].sort(), 'critical',
        `Runaway session: ${why} (${rw.wasted} calls wasted).`);
    }

    // the ring of the last calls
    const slot = s.ringNext;
    s.ringTool[slot] = tool;
    s.ringArgs[slot] = args;
    s.ringOutcome[slot] = outcome;
    s.ringRef[slot] = ref;
    s.ringNext = (slot + 1) % RING;
    if (s.ringLen < RING) s.ringLen++;
    return out;
  }

  /** The last `period` calls, this one included, are all different calls (tool and arguments). */
  private cycleDistinct(s: SessionState, period: number, tool: string, args: string): boolean {
    for (let i = 1; i < period; i++) {
      const a = back(s, i);
      if (s.ringTool[a] === tool && s.ringArgs[a] === args) return false;
      for (let j = i + 1; j < period; j++) {
        const b = back(s, j);
        if (s.ringTool[a] === s.ringTool[b] && s.ringArgs[a] === s.ringArgs[b]) return false;
      }
    }
    return true;
  }

  private countRunaway(rw: NonNullable<SessionState['runaway']>, c: Ref): void {
    if (rw.counted.has(c)) return;
    rw.counted.add(c);
    if (rw.tools.size < MAX_KEYS) rw.tools.add(c.tool);
    rw.wasted++;
    rw.tokens += c.tokens;
    rw.cost += c.cost;
  }

  private state(sessionId: string): SessionState {
    let s = this.sessions.get(sessionId);
    if (s) {
      if (s !== this.newest) {
        this.unlink(s);
        this.append(s);
      }
      return s;
    }
    s = {
      id: sessionId, older: null, newer: null,
      seq: 0, ringTool: new Array<string>(RING), ringArgs: new Array<string>(RING), ringOutcome: new Array<string>(RING),
      ringRef: new Array<Ref>(RING), ringLen: 0, ringNext: 0,
      repeat: null, stuck: null, storm: null, islands: new Map(), errors: new Map(), redundant: new LruTable(MAX_KEYS),
      lastErrorByTool: new Map(), seen: new LruTable(MAX_SEEN), noProgress: null, firstRef: null, start: 0, calls: 0, tokens: 0, cost: 0,
      depths: new LruTable(MAX_KEYS), runaway: null, findings: new Map(),
    };
    this.sessions.set(sessionId, s);
    this.append(s);
    while (this.sessions.size > this.maxSessions && this.oldest) {
      const drop = this.oldest;
      this.unlink(drop);
      this.sessions.delete(drop.id);
    }
    return s;
  }

  private unlink(s: SessionState): void {
    if (s.older) s.older.newer = s.newer;
    else this.oldest = s.newer;
    if (s.newer) s.newer.older = s.older;
    else this.newest = s.older;
    s.older = s.newer = null;
  }

  private append(s: SessionState): void {
    s.older = this.newest;
    s.newer = null;
    if (this.newest) this.newest.newer = s;
    else this.oldest = s;
    this.newest = s;
  }
}
