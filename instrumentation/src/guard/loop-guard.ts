// In-process LoopGuard: the rules of the SQL detectors (queries/detectors/*.sql, documented in
// docs/detectors.md) applied to the live stream of completed tool calls, with the same
// thresholds (queries/src/detector-defaults.ts). O(1) amortized per call: per session it keeps
// the current runs, a ring of the last calls and bounded LRU memories of keys, and at most
// maxSessions sessions.
//
// observe() runs on every tool call, and with many sessions active at once its cost is mostly
// memory traffic and garbage collection, so:
//  - the keys of all sessions (call keys, seen results, error keys, span ids) live in four
//    KeyTables, typed arrays shared by all sessions: a lookup reads few places in memory, a new
//    session allocates nothing there, the garbage collector does not trace them;
//  - ids and hashes (16 hex digits) are kept there as numbers, tool names by number: no key text is
//    built and the caller's strings are not retained;
//  - no object per call (runs, the ring and the tallies hold span ids and sums), an error message
//    normalized once per distinct message (memoized), a finding that grows updated in place, and
//    finding text built only when it emits.
//
// `LoopGuard` is pure (no OpenTelemetry): feed it rows shaped like agent_tool_calls with
// observe(). `enableLoopGuard()` connects it to the instrumentation's tool hooks: policy 'warn'
// logs and adds a `loopwatch.loop_detected` event to the tool span; 'halt' also throws a
// LoopDetectedError before a call that would continue a detected loop runs.
//
// Known differences from the SQL side (documented): calls are taken in arrival order (the SQL
// orders by start time, so parallel calls may differ); nesting depth is the call's `depth` when
// given (the live instrumentation gives it), else it follows only tool->tool parent links the
// guard has seen; per-session state is bounded (1024 call keys and span ids,
// 256 error keys, 4096 seen results, least recently used dropped first; fewer than
// runawayNoProgressRun calls of a no-progress run waiting to be counted; findings: those of loops
// under way, and the latest MAX_ENDED_FINDINGS to twice as many of those that ended), which only
// matters in very long sessions. Per guard: 256 memoized error messages, 4096 tool numbers; the shared
// tables keep the size of the most keys held at once (freed records are reused, not returned).
import { createHash } from 'node:crypto';
import {
  DetectorSettingsError,
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
  /**
   * Tool calls nested in one another up to this one, itself included (1: not inside another tool
   * call), when the caller knows it: the live instrumentation does, at the call's start. Without
   * it the guard follows parentSpanId to the calls it has seen, which works only for rows in
   * start order (a nested call ends, and is observed, before the call it is nested in).
   */
  depth?: number | undefined;
  /** Tokens / cost attributed to this call (its turn: the LLM calls since the call before). */
  tokens?: number | undefined;
  costUsd?: number | undefined;
  /**
   * When its turn's LLM calls ran (first start, last end; epoch ms or Date): the runaway wall
   * time counts them as running, and only the pauses around them longer than budgetIdleGapS as
   * not (a 12-minute LLM call is not a person's pause).
   */
  turnStart?: number | Date | undefined;
  turnEnd?: number | Date | undefined;
  /**
   * The pauses between the turn's LLM calls, [from, to] in epoch ms: one for each LLM call that
   * started after the ones before it had ended. In a chat the answer, the person's reply and the
   * next planning call are one turn; those longer than budgetIdleGapS are not wall time either.
   */
  turnPauses?: readonly (readonly [number, number])[] | undefined;
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
  /**
   * The agent of the call that raised it or was halted (withSession's or traceAgent's), when
   * enableLoopGuard knows one: in a session that sub-agents share, which of them looped.
   */
  agent?: string;
}

export class LoopDetectedError extends Error {
  override readonly name = 'LoopDetectedError';
  constructor(readonly finding: GuardFinding) {
    super(`Loopwatch halted a looping tool call: ${finding.message}`);
  }
}

/**
 * The LoopDetectedError a thrown value is or wraps: agent frameworks rethrow a tool's error in one
 * of their own (the OpenAI SDK's runTools: a plain Error whose cause it is), where `instanceof`
 * does not see it. Follows `cause` a few levels.
 */
export function loopDetectedIn(err: unknown): LoopDetectedError | undefined {
  let e: unknown = err;
  for (let i = 0; i < 5 && e !== null && typeof e === 'object'; i++) {
    if (e instanceof LoopDetectedError) return e;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
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
/** Runaway sessions remembered after they are forgotten, to stay stopped. */
const MAX_STOPPED = 10_000;
const MAX_SEEN = 4096;
const MAX_TOOL_IDS = 4096;
/**
 * Findings of loops that ended a session keeps, at least (the latest): past twice as many, the
 * oldest of them are dropped down to this many, all at once (a polling agent raises a stuck and a
 * redundant finding every few calls: kept all, one session held 400,000 after 800,000 calls).
 */
export const MAX_ENDED_FINDINGS = 256;

// FNV-1a over UTF-16 code units, finished so the last characters reach the low bits (the slot):
// where a key goes in a KeyTable. A hit is checked against the stored key, so a collision
// costs a probe, never a wrong answer. 30 bits: a small integer to V8, stored unboxed.
function strHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  return (h ^ (h >>> 13)) & 0x3fffffff;
}

/** Hash of a key of several parts, from the parts' hashes. */
const hashWith = (h: number, next: number): number => (Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) ^ next) & 0x3fffffff;

/** 0..15 for a lowercase hex digit, else 16. */
function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  return 16;
}

/** Hash of two 32-bit halves (murmur3's finalizer: every input bit reaches the low bits, the slot). */
function halvesHash(hi: number, lo: number): number {
  let h = Math.imul(hi, 0x9e3779b1) ^ lo;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) & 0x3fffffff;
}

/**
 * Where a session's key goes in a KeyTable: the same key in many sessions must not land in
 * neighbouring slots (linear probing would then walk long runs), so the two are mixed thoroughly.
 */
const slotHash = (keyHash: number, sn: number): number => halvesHash(keyHash, sn);

/** The 16 hex digits of two 32-bit halves. */
function halvesText(hi: number, lo: number): string {
  return (hi >>> 0).toString(16).padStart(8, '0') + (lo >>> 0).toString(16).padStart(8, '0');
}

/**
 * A string as part of a table key. Span ids and hashes are usually 16 lowercase hex digits: those
 * are kept as two 32-bit numbers, so a table holds no reference to the caller's string (which the
 * garbage collector would copy and keep) and a lookup compares integers in the record instead of
 * reading a string elsewhere in memory. Any other text is kept as itself; a text never
 * equals a number pair, as a string that is 16 hex digits is always kept as numbers. The guard
 * reuses a few of these, set once per string per call.
 */
class KeyPart {
  hi = 0;
  lo = 0;
  /** The string when it is not 16 lowercase hex digits, else undefined. */
  text: string | undefined = undefined;
  hash = 0;

  set(s: string): this {
    if (s.length === 16) {
      let hi = 0, lo = 0, bad = 0;
      for (let i = 0; i < 8; i++) {
        const d = hexDigit(s.charCodeAt(i)), e = hexDigit(s.charCodeAt(i + 8));
        bad |= d | e;
        hi = (hi << 4) | d;
        lo = (lo << 4) | e;
      }
      if ((bad & 16) === 0) {
        this.hi = hi;
        this.lo = lo;
        this.text = undefined;
        this.hash = halvesHash(hi, lo);
        return this;
      }
    }
    return this.setText(s, strHash(s));
  }

  /** A tool by its number (see LoopGuard.toolId): in a column of tools, never compared with hex digits. */
  setId(id: number): this {
    this.hi = -1;
    this.lo = id;
    this.text = undefined;
    this.hash = halvesHash(-1, id);
    return this;
  }

  /** A string known not to be hex digits, with its strHash(). */
  setText(s: string, hash: number): this {
    this.hi = this.lo = 0;
    this.text = s;
    this.hash = hash;
    return this;
  }
}

// Records live in chunks of CHUNK (never moved: a table grows by a chunk, and its index, which
// doubles, is all that is copied). Buffers outside the JS heap count as "external memory", and
// allocating a few tens of MB of it starts a full garbage collection.
const CHUNK_BITS = 10;
const CHUNK = 1 << CHUNK_BITS;
const CHUNK_MASK = CHUNK - 1;
const FIRST_SLOTS = 1024; // the index's first size, in slots; it doubles past MAX_LOAD
const MAX_LOAD = 0.7; // linear probing stays short (a probe that misses reads a few slots, one cache line)

// a record's ints, then its parts' halves, then (at an even offset) its numbers, two ints each
const REC_SESSION = 0; // the session's number (a free record keeps its last one: only the index reaches records)
const REC_COUNT = 1;
const REC_OLDER = 2; // see KeyTable.lists
const REC_NEWER = 3;
const REC_STAMP = 3; // when the session last touched the key: only until its list is ordered, NEWER only after (see KeyTable.lists)
const REC_PARTS = 4;
// a session's list in a table: from LIST_FIELDS * its number
const LIST_FIELDS = 4;
const L_OLDEST = 0;
const L_NEWEST = 1;
const L_SIZE = 2;
const L_ORDERED = 3; // 1 once the list is in LRU order
const MAX_STAMP = 0x3fffffff; // stamps are ints: past this the list is put in order for good
const BLOCK_RECORDS = 31; // records per block of a session's list (see KeyTable.blocks)
const BLOCK = 1 + 2 * BLOCK_RECORDS + 1; // ints per block: the previous block, the records and their hashes, one unused (256 bytes)
const BLOCK_CHUNK_BITS = 6; // blocks per chunk: 64 (16 KiB)
const BLOCK_CHUNK_MASK = (1 << BLOCK_CHUNK_BITS) - 1;

/**
 * One kind of per-session memory for all sessions: keys of 1 to 3 KeyParts, per session, with per
 * key a count, optionally the first call's span id, and `numWidth` numbers the caller uses (waste,
 * a sequence number). Each session is bounded like an LRU: past `limit` keys its least recently
 * touched key goes; its keys go when the session does.
 *
 * Why one table for all sessions, in typed arrays (records, an open-addressing index) rather than
 * a Map per session keyed by concatenated strings: observe() builds no key text; the garbage
 * collector neither copies the records nor follows references out of them; a new session
 * allocates nothing here; and a lookup touches few places in memory. That last one is most of the
 * cost: with many sessions active the records are rarely in the CPU's caches, so each place read
 * is a wait.
 */
class KeyTable {
  /** Records handed out so far (free ones included), and live ones. */
  private used = 0;
  private live = 0;
  /**
   * Free records, a stack (the last freed is reused first). Not a chain through the records: the
   * next free one would be read from a record just taken, which is rarely in the CPU's caches.
   */
  private freeStack = new Int32Array(0);
  private freeTop = 0;
  /**
   * Record e is in chunks[e >> CHUNK_BITS] from stride * (e & CHUNK_MASK): R_*, the parts (the
   * key's, then the first span id if kept) two halves each, then from numsAt the numbers, read
   * through numChunks (a Float64Array on the same buffer): one place in memory per record.
   */
  private readonly chunks: Int32Array[] = [];
  private readonly numChunks: Float64Array[] = [];
  private readonly stride: number;
  private readonly numsAt: number;
  /**
   * The index, linear probing, at least twice as many slots as records, per slot the key's hash
   * and record + 1 (0 = empty): a probe that misses reads no record, and growing reads only the index.
   */
  private slots = new Int32Array(0);
  private mask = -1;
  /** Per record, per part: the text of a part that is not hex digits (allocated with the first one). */
  private texts: (string | undefined)[] | null = null;
  private readonly parts: number;
  /**
   * Per record: the session's finding about the key once there is one (allocated with the first):
   * an emit that grows it neither makes the first span id again nor looks the finding up.
   */
  private kept: (KeptFinding | undefined)[] | null = null;
  /**
   * Per session number, L_*: its records and their count. Which key is least recently touched
   * matters only once the session has `limit` keys, which few do; keeping the order up to date on
   * every touch costs three more places in memory (the neighbours and the newest). So until then
   * the records are listed in blocks (NEWEST the newest block, OLDEST unused), in the order added,
   * and a touch only writes the session's call number into the record's STAMP; at the limit they
   * are sorted by stamp, once, into the LRU list (OLDER and NEWER, from OLDEST to NEWEST), kept up
   * to date from then on. The same keys go, in the same order, as with a list kept all along.
   */
  private lists = new Int32Array(0);
  /**
   * The blocks of those lists: block b is in blockChunks[b >> BLOCK_CHUNK_BITS] from BLOCK * (b &
   * BLOCK_CHUNK_MASK), the previous block of its session (-1: none), then up to BLOCK_RECORDS
   * records, each with its index hash (slotHash).
   * Forgetting a session takes all its records out of the index: with the hash at hand a record
   * is not read first (its key's hash made again), and with the records listed, not chained
   * through themselves, the next one is not read from the last one: one wait on memory per record
   * instead of three in a row. Blocks in shared chunks (never copied; free blocks reused): a
   * session's newest block is one place in memory, where an array per session is three reads away.
   */
  private readonly blockChunks: Int32Array[] = [];
  private blocksUsed = 0;
  private readonly freeBlocks: number[] = [];

  constructor(
    private readonly limit: number,
    private readonly keyWidth: 1 | 2 | 3,
    keepsFirst: boolean,
    private readonly numWidth: number,
  ) {
    this.parts = keyWidth + (keepsFirst ? 1 : 0);
    this.numsAt = REC_PARTS + 2 * this.parts; // even
    this.stride = this.numsAt + 2 * numWidth;
  }

  private chunk(e: number): Int32Array {
    return this.chunks[e >> CHUNK_BITS]!;
  }

  /** Where record e starts in its chunk. */
  private at(e: number): number {
    return this.stride * (e & CHUNK_MASK);
  }

  /** Starts an empty list for a new session number. */
  open(sn: number): void {
    const l = LIST_FIELDS * sn;
    if (l + LIST_FIELDS > this.lists.length) {
      const lists = new Int32Array(Math.max(LIST_FIELDS * 64, 2 * this.lists.length, l + LIST_FIELDS));
      lists.set(this.lists);
      this.lists = lists;
    }
    this.lists[l + L_OLDEST] = -1;
    this.lists[l + L_NEWEST] = -1;
    this.lists[l + L_SIZE] = 0;
    this.lists[l + L_ORDERED] = 0;
  }

  /** Adds record e, its index hash h, to the blocks of the session's list at l (not ordered). */
  private listed(l: number, e: number, h: number): void {
    const k = this.lists[l + L_SIZE]! % BLOCK_RECORDS;
    if (k === 0) this.lists[l + L_NEWEST] = this.newBlock(this.lists[l + L_NEWEST]!);
    const b = this.lists[l + L_NEWEST]!;
    const chunk = this.blockChunks[b >> BLOCK_CHUNK_BITS]!, at = BLOCK * (b & BLOCK_CHUNK_MASK) + 1 + 2 * k;
    chunk[at] = e;
    chunk[at + 1] = h;
  }

  /** A block for a session's list of records, its previous block `prev`. */
  private newBlock(prev: number): number {
    let b = this.freeBlocks.pop();
    if (b === undefined) {
      b = this.blocksUsed++;
      if ((b & BLOCK_CHUNK_MASK) === 0) this.blockChunks.push(new Int32Array(BLOCK << BLOCK_CHUNK_BITS));
    }
    this.blockChunks[b >> BLOCK_CHUNK_BITS]![BLOCK * (b & BLOCK_CHUNK_MASK)] = prev;
    return b;
  }

  /**
   * The records of a session whose list is not ordered, newest first, given to `each` with their
   * index hashes; its blocks are freed.
   */
  private drain(sn: number, each: (e: number, h: number) => void): void {
    const l = LIST_FIELDS * sn;
    const size = this.lists[l + L_SIZE]!;
    let n = size > 0 ? ((size - 1) % BLOCK_RECORDS) + 1 : 0; // in the newest block
    for (let b = this.lists[l + L_NEWEST]!; b >= 0; n = BLOCK_RECORDS) {
      const chunk = this.blockChunks[b >> BLOCK_CHUNK_BITS]!, at = BLOCK * (b & BLOCK_CHUNK_MASK);
      for (let i = n - 1; i >= 0; i--) each(chunk[at + 1 + 2 * i]!, chunk[at + 2 + 2 * i]!);
      this.freeBlocks.push(b);
      b = chunk[at]!;
    }
  }

  /** Removes all keys of a session (it is forgotten). */
  close(sn: number): void {
    const l = LIST_FIELDS * sn;
    if (this.lists[l + L_ORDERED] === 0) {
      this.drain(sn, this.releaseRecord);
    } else {
      for (let e = this.lists[l + L_NEWEST]!; e >= 0; ) {
        const next = this.chunk(e)[this.at(e) + REC_OLDER]!;
        this.release(e, this.storedSlotHash(e));
        e = next;
      }
    }
    this.lists[l + L_OLDEST] = this.lists[l + L_NEWEST] = -1;
    this.lists[l + L_SIZE] = 0;
  }

  /** The hash of a key (parts past keyWidth are ignored), for find() and add(). */
  keyHash(a: KeyPart, b: KeyPart, c: KeyPart): number {
    const w = this.keyWidth;
    return w === 1 ? a.hash : w === 2 ? hashWith(a.hash, b.hash) : hashWith(hashWith(a.hash, b.hash), c.hash);
  }

  /** keyHash() of a record's key, from what it stores (a record keeps no hash: it is needed only to remove one). */
  private storedKeyHash(e: number): number {
    let h = 0;
    for (let i = 0; i < this.keyWidth; i++) {
      const text = this.texts === null ? undefined : this.texts[this.parts * e + i];
      const c = this.chunk(e), at = this.at(e) + REC_PARTS + 2 * i;
      const partHash = text !== undefined ? strHash(text) : halvesHash(c[at]!, c[at + 1]!);
      h = i === 0 ? partHash : hashWith(h, partHash);
    }
    return h;
  }

  /** The session's record of the key (parts past keyWidth are ignored), or -1. */
  find(sn: number, keyHash: number, a: KeyPart, b: KeyPart, c: KeyPart): number {
    if (this.live === 0) return -1;
    const h = slotHash(keyHash, sn);
    const slots = this.slots, mask = this.mask, w = this.keyWidth;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const e = slots[2 * i + 1]! - 1;
      if (e < 0) return -1;
      if (slots[2 * i] === h && this.chunk(e)[this.at(e) + REC_SESSION] === sn && this.partIs(e, 0, a) && (w < 2 || this.partIs(e, 1, b)) && (w < 3 || this.partIs(e, 2, c))) {
        return e;
      }
    }
  }

  private partIs(e: number, i: number, part: KeyPart): boolean {
    const j = this.parts * e + i;
    if (part.text !== undefined) return this.texts !== null && this.texts[j] === part.text;
    const c = this.chunk(e), at = this.at(e) + REC_PARTS + 2 * i;
    return c[at] === part.hi && c[at + 1] === part.lo && (this.texts === null || this.texts[j] === undefined);
  }

  private store(e: number, i: number, part: KeyPart): void {
    const c = this.chunk(e), at = this.at(e) + REC_PARTS + 2 * i;
    c[at] = part.hi;
    c[at + 1] = part.lo;
    const j = this.parts * e + i;
    if (part.text !== undefined) {
      this.texts = room(this.texts, j);
      this.texts[j] = part.text;
    } else if (this.texts !== null && j < this.texts.length) {
      this.texts[j] = undefined;
    }
  }

  count(e: number): number {
    return this.chunk(e)[this.at(e) + REC_COUNT]!;
  }

  setCount(e: number, n: number): void {
    this.chunk(e)[this.at(e) + REC_COUNT] = n;
  }

  /** The span id of the key's first call (tables that keep it): made again from its halves if it was hex digits. */
  first(e: number): string {
    const j = this.parts * e + this.keyWidth;
    const text = this.texts === null ? undefined : this.texts[j];
    if (text !== undefined) return text;
    const c = this.chunk(e), at = this.at(e) + REC_PARTS + 2 * this.keyWidth;
    return halvesText(c[at]!, c[at + 1]!);
  }

  finding(e: number): KeptFinding | undefined {
    return this.kept === null ? undefined : this.kept[e];
  }

  setFinding(e: number, f: KeptFinding): void {
    this.kept = room(this.kept, e);
    this.kept[e] = f;
  }

  clearFinding(e: number): void {
    if (this.kept !== null) this.kept[e] = undefined;
  }

  num(e: number, i: number): number {
    return this.numChunks[e >> CHUNK_BITS]![(this.at(e) + this.numsAt) / 2 + i]!;
  }

  setNum(e: number, i: number, x: number): void {
    this.numChunks[e >> CHUNK_BITS]![(this.at(e) + this.numsAt) / 2 + i] = x;
  }

  addNum(e: number, i: number, x: number): void {
    const nums = this.numChunks[e >> CHUNK_BITS]!, at = (this.at(e) + this.numsAt) / 2 + i;
    nums[at] = nums[at]! + x;
  }

  /** One more call of the key: its count goes up and it becomes its session's most recently touched. */
  again(e: number, stamp: number): void {
    this.chunk(e)[this.at(e) + REC_COUNT]!++;
    this.touch(e, stamp);
  }

  /**
   * Makes the record its session's most recently touched. stamp: the session's call number,
   * higher than any before (a session touches a table at most once per call).
   */
  touch(e: number, stamp: number): void {
    const c = this.chunk(e), r = this.at(e);
    const sn = c[r + REC_SESSION]!;
    const l = LIST_FIELDS * sn;
    if (this.lists[l + L_ORDERED] === 0) {
      if (stamp <= MAX_STAMP) {
        c[r + REC_STAMP] = stamp;
        return;
      }
      this.order(sn);
    }
    if (e === this.lists[l + L_NEWEST]) return;
    this.unlink(e, sn);
    this.append(e, sn);
  }

  /**
   * Adds a key (not in the table) with count 1 and numbers 0; the session's least recently touched
   * key goes if it has `limit`. stamp: as for touch().
   */
  add(sn: number, keyHash: number, a: KeyPart, b: KeyPart, c: KeyPart, first: KeyPart | null, stamp: number): number {
    const l = LIST_FIELDS * sn;
    if (this.lists[l + L_ORDERED] === 0 && (this.lists[l + L_SIZE]! >= this.limit || stamp > MAX_STAMP)) this.order(sn);
    if (this.lists[l + L_SIZE]! >= this.limit) this.remove(this.lists[l + L_OLDEST]!);
    if (this.live + 1 > MAX_LOAD * (this.slots.length / 2)) this.growIndex();
    let e: number;
    if (this.freeTop > 0) {
      e = this.freeStack[--this.freeTop]!;
    } else {
      if (this.used === CHUNK * this.chunks.length) this.addChunk();
      e = this.used++;
    }
    const h = slotHash(keyHash, sn);
    const rec = this.chunk(e), r = this.at(e);
    rec[r + REC_SESSION] = sn;
    rec[r + REC_COUNT] = 1;
    rec[r + REC_STAMP] = stamp;
    this.store(e, 0, a);
    if (this.keyWidth > 1) this.store(e, 1, b);
    if (this.keyWidth > 2) this.store(e, 2, c);
    if (first !== null) this.store(e, this.keyWidth, first);
    for (let i = 0; i < this.numWidth; i++) this.setNum(e, i, 0);
    if (this.kept !== null && e < this.kept.length) this.kept[e] = undefined;
    if (this.lists[l + L_ORDERED] === 0) this.listed(l, e, h);
    else this.append(e, sn);
    this.lists[l + L_SIZE]!++;
    this.live++;
    this.place(h, e + 1);
    return e;
  }

  /** Puts a session's records in LRU order, by stamp: from then on its list is kept in order. */
  private order(sn: number): void {
    const l = LIST_FIELDS * sn;
    const chain: number[] = [];
    this.drain(sn, (e) => chain.push(e)); // newest first
    const stamp = (e: number) => this.chunk(e)[this.at(e) + REC_STAMP]!;
    chain.sort((x, y) => stamp(x) - stamp(y));
    this.lists[l + L_OLDEST] = this.lists[l + L_NEWEST] = -1;
    this.lists[l + L_ORDERED] = 1;
    for (const e of chain) this.append(e, sn);
  }

  /** Takes a key back (its session's list put in LRU order first: a list in blocks cannot lose a record in its middle). */
  forget(e: number): void {
    const sn = this.chunk(e)[this.at(e) + REC_SESSION]!;
    if (this.lists[LIST_FIELDS * sn + L_ORDERED] === 0) this.order(sn);
    this.remove(e);
  }

  /** Removes the record from its session's list (in LRU order) and from the table. */
  private remove(e: number): void {
    const sn = this.chunk(e)[this.at(e) + REC_SESSION]!;
    this.unlink(e, sn);
    this.lists[LIST_FIELDS * sn + L_SIZE]!--;
    this.release(e, this.storedSlotHash(e));
  }

  /** Where a record is in the index: slotHash() of its key and session, made again from what it stores. */
  private storedSlotHash(e: number): number {
    return slotHash(this.storedKeyHash(e), this.chunk(e)[this.at(e) + REC_SESSION]!);
  }

  private readonly releaseRecord = (e: number, h: number): void => this.release(e, h);

  /** Frees the record, h its storedSlotHash() (its session's list is the caller's business). */
  private release(e: number, h: number): void {
    // the record itself is not written: nothing reaches it but the index, and it is rarely in the
    // CPU's caches (a session is forgotten long after its last call)
    this.unindex(e, h);
    this.live--;
    if (this.freeTop === this.freeStack.length) {
      const grown = new Int32Array(Math.max(CHUNK, 2 * this.freeStack.length));
      grown.set(this.freeStack);
      this.freeStack = grown;
    }
    this.freeStack[this.freeTop++] = e;
    // let go of what the record referred to
    if (this.kept !== null && e < this.kept.length) this.kept[e] = undefined;
    if (this.texts !== null) for (let j = this.parts * e; j < this.parts * (e + 1) && j < this.texts.length; j++) this.texts[j] = undefined;
  }

  private place(h: number, slotValue: number): void {
    const slots = this.slots, mask = this.mask;
    let i = h & mask;
    while (slots[2 * i + 1] !== 0) i = (i + 1) & mask;
    slots[2 * i] = h;
    slots[2 * i + 1] = slotValue;
  }

  private unlink(e: number, sn: number): void {
    const l = LIST_FIELDS * sn;
    const c = this.chunk(e), r = this.at(e);
    const o = c[r + REC_OLDER]!, n = c[r + REC_NEWER]!;
    if (o >= 0) this.chunk(o)[this.at(o) + REC_NEWER] = n;
    else this.lists[l + L_OLDEST] = n;
    if (n >= 0) this.chunk(n)[this.at(n) + REC_OLDER] = o;
    else this.lists[l + L_NEWEST] = o;
  }

  private append(e: number, sn: number): void {
    const l = LIST_FIELDS * sn;
    const c = this.chunk(e), r = this.at(e);
    const newest = this.lists[l + L_NEWEST]!;
    c[r + REC_OLDER] = newest;
    c[r + REC_NEWER] = -1;
    if (newest >= 0) this.chunk(newest)[this.at(newest) + REC_NEWER] = e;
    else this.lists[l + L_OLDEST] = e;
    this.lists[l + L_NEWEST] = e;
  }

  /** Removes a record from the index: backward-shift deletion, so probes never meet tombstones. */
  private unindex(e: number, h: number): void {
    const slots = this.slots, mask = this.mask;
    let hole = h & mask;
    while (slots[2 * hole + 1] !== e + 1) hole = (hole + 1) & mask;
    for (let j = (hole + 1) & mask; slots[2 * j + 1] !== 0; j = (j + 1) & mask) {
      // the record at j moves into the hole unless its home slot lies after the hole
      if (((j - slots[2 * j]!) & mask) >= ((j - hole) & mask)) {
        slots[2 * hole] = slots[2 * j]!;
        slots[2 * hole + 1] = slots[2 * j + 1]!;
        hole = j;
      }
    }
    slots[2 * hole] = 0;
    slots[2 * hole + 1] = 0;
  }

  private addChunk(): void {
    const buf = new ArrayBuffer(4 * this.stride * CHUNK);
    this.chunks.push(new Int32Array(buf));
    this.numChunks.push(new Float64Array(buf));
  }

  /** An index twice the size, rebuilt. */
  private growIndex(): void {
    const old = this.slots, oldSlots = old.length / 2;
    const n = Math.max(FIRST_SLOTS, 2 * oldSlots);
    this.slots = new Int32Array(2 * n);
    this.mask = n - 1;
    // the old index in slot order, from an empty slot (no run of slots wraps past it): the new
    // slots come in nearly the same order, so the writes go through memory in order too
    let start = 0;
    while (start < oldSlots && old[2 * start + 1] !== 0) start++;
    for (let k = 0; k < oldSlots; k++) {
      const i = (start + k) & (oldSlots - 1);
      const slotValue = old[2 * i + 1]!;
      if (slotValue !== 0) this.place(old[2 * i]!, slotValue);
    }
  }
}

/** The array, or a larger copy, with room for index i (it doubles: grown as records are used). */
function room<T>(xs: (T | undefined)[] | null, i: number): (T | undefined)[] {
  if (xs !== null && i < xs.length) return xs;
  return resized(xs ?? [], Math.max(CHUNK, 2 * (xs?.length ?? 0), i + 1));
}

/** A copy of an array with room for n elements (one allocation, where growing by assignment reallocates as it goes). */
function resized<T>(xs: (T | undefined)[], n: number): (T | undefined)[] {
  const out = new Array<T | undefined>(n);
  for (let j = 0; j < xs.length; j++) out[j] = xs[j];
  return out;
}

/** A call's outcome, as one string: the result hash itself for a result, else a tagged error or unknown. */
type Outcome = string;
const OUTCOME_TAG = '\u0000'; // result hashes (hex or decimal digits) never start with it
const ERROR_PREFIX = OUTCOME_TAG + 'E';

/**
 * A run of consecutive calls (repeat, stuck, retry storm): the key it repeats, its length (0 = no
 * run), first and last span ids and the waste after its first call. One per rule and session,
 * reused: observe() runs on every call.
 */
class Run {
  tool = '';
  args = '';
  /** stuck: the outcome repeated; repeat: the run's first outcome. */
  outcome: Outcome = '';
  /** repeat: the run's distinct outcomes once there are two. */
  outcomes: Set<Outcome> | null = null;
  len = 0;
  first = '';
  last = '';
  tokens = 0;
  cost = 0;
  /** repeat: this run's finding was raised (and may have been taken back since). */
  announced = false;
  /** retry storm: the latest start and the earliest end among the run's calls seen (epoch ms). */
  maxStart = -Infinity;
  minEnd = Infinity;
  /** retry storm: the run's distinct arguments once there are two (the message says how many). */
  argsSeen: Set<string> | null = null;

  start(tool: string, args: string, outcome: Outcome, spanId: string): void {
    this.tool = tool;
    this.args = args;
    this.outcome = outcome;
    this.outcomes = null;
    this.announced = false;
    this.len = 1;
    this.first = spanId;
    this.last = spanId;
    this.tokens = 0;
    this.cost = 0;
    this.maxStart = -Infinity;
    this.minEnd = Infinity;
    this.argsSeen = null;
  }

  extend(spanId: string, tokens: number, cost: number): void {
    this.len++;
    this.last = spanId;
    this.tokens += tokens;
    this.cost += cost;
  }
}

/** A stretch of calls equal to those one period back (oscillation). */
class Island {
  matches = 0;
  tokens = 0;
  cost = 0;
  readonly tools = new Set<string>();
  constructor(readonly first: string) {}
}

// runaway reasons as bits, in the (sorted) order their names are listed
const REASON_NAMES = ['calls', 'cost', 'depth', 'no_progress', 'tokens', 'wall_time'] as const;
const R_CALLS = 1;
const R_COST = 2;
const R_DEPTH = 4;
const R_NO_PROGRESS = 8;
const R_TOKENS = 16;
const R_WALL_TIME = 32;

/** A session's runaway finding as it accumulates: each wasted call counted once. */
class Runaway {
  reasons = 0;
  wasted = 0;
  /** The deepest nesting seen among its calls (for the depth budget's message). */
  maxDepth = 0;
  tokens = 0;
  cost = 0;
  stillNoProgress = false;
  readonly tools = new Set<string>();
  /** The sorted tools and the reasons text, rebuilt only when they change (a runaway session emits on every call). */
  private sorted: string[] | null = null;
  private whyReasons = 0;
  private whyText = '';

  count(tool: string, tokens: number, cost: number): void {
    if (this.tools.size < MAX_KEYS && !this.tools.has(tool)) {
      this.tools.add(tool);
      this.sorted = null;
    }
    this.wasted++;
    this.tokens += tokens;
    this.cost += cost;
  }

  /** The tools, sorted: a new array each time (each finding owns its own). */
  sortedTools(): string[] {
    this.sorted ??= [...this.tools].sort();
    return this.sorted.slice();
  }

  why(): string {
    if (this.whyReasons !== this.reasons) {
      let why = '';
      for (let b = 0; b < REASON_NAMES.length; b++) if (this.reasons & (1 << b)) why += (why ? ', ' : '') + REASON_NAMES[b];
      this.whyReasons = this.reasons;
      this.whyText = why;
    }
    return this.whyText;
  }
}

// findings are kept per kind, keyed by their first span id (the index is the kind's)
const KINDS: readonly LoopKind[] = ['repeat', 'stuck', 'oscillation', 'retry_storm', 'error_loop', 'runaway', 'redundant'];
const K_REPEAT = 0;
const K_STUCK = 1;
const K_OSCILLATION = 2;
const K_RETRY_STORM = 3;
const K_ERROR_LOOP = 4;
const K_RUNAWAY = 5;
const K_REDUNDANT = 6;

/**
 * A finding as a session keeps it. Never handed out (check() and findings() return copies), so a
 * finding that grows is updated in place instead of replaced: no garbage that outlives a call.
 */
interface KeptFinding {
  kind: LoopKind;
  sessionId: string;
  firstSpanId: string;
  lastSpanId: string;
  repeats: number;
  wastedCalls: number;
  wastedTokens: number;
  wastedCostUsd: number;
  tools: string[];
  severity: GuardFinding['severity'];
  message: string;
  /** When it was raised in its session: findings() lists them in that order. */
  order: number;
  /** redundant, error_loop: the record of the key in its table (the finding is under way while the record holds it), else -1. */
  rec: number;
}

/** error_loop's message, as SQL's: with the error's text. */
function errorLoopMessage(tool: string, count: number, errorType: string | undefined, quoted: string): string {
  return `Tool ${tool} hit the same error ${count} times in this session (${errorType ?? 'error'}: ${quoted}): the task may be impossible as attempted.`;
}

/** A finding as plain data (the fields in the order they have always had). */
function toFinding(f: KeptFinding, isNew: boolean): GuardFinding {
  return {
    kind: f.kind, sessionId: f.sessionId, firstSpanId: f.firstSpanId, isNew, lastSpanId: f.lastSpanId, repeats: f.repeats, wastedCalls: f.wastedCalls,
    wastedTokens: f.wastedTokens, wastedCostUsd: f.wastedCostUsd, tools: f.tools, severity: f.severity, message: f.message,
  };
}

const RING = 5; // the last calls kept: the longest oscillation period (4) plus one
const RING_FIELDS = 4;
const RING_TOOL = 0;
const RING_ARGS = 1;
const RING_OUTCOME = 2;
const RING_SPAN = 3;

// columns of the error tallies' numbers
const E_TOKENS = 0;
const E_COST = 1;
const E_FIRST_SEQ = 2;
// 1 once a loop of the error was announced (a loop taken back and found again is not new)
const E_ANNOUNCED = 3;
// columns of the redundant tallies' numbers (waste)
const W_TOKENS = 0;
const W_COST = 1;

/** One session's state: its runs, ring and findings (its keys are in the guard's KeyTables, under its number). */
class SessionState {
  /** The LRU list of sessions: older and newer neighbours. */
  older: SessionState | null = null;
  newer: SessionState | null = null;
  seq = 0;
  /**
   * The last RING calls, oldest first from the slot ringNext - ringLen: per slot, from RING_FIELDS
   * * slot, its tool, arguments, outcome and span id (one array: one place in memory to read).
   */
  readonly ring: string[] = new Array<string>(RING * RING_FIELDS).fill('');
  ringLen = 0;
  ringNext = 0;
  readonly repeat = new Run();
  readonly stuck = new Run();
  /** retry storm: tool, first arguments (and argsSeen), the run's ends and waste. */
  readonly storm = new Run();
  /** oscillation period -> its island (insertion order matters to check()). */
  islands: Map<number, Island> | null = null;
  /** Per tool, its last failure: the error key, and the arguments (halt stops that call, not every call of the tool). */
  lastErrorByTool: Map<string, { key: string; args: string }> | null = null;
  /** The tool last touched in lastErrorByTool (its newest entry if still there). */
  lastErrorTool = '';
  /**
   * Per call (tool and arguments), its failures as error_loop counted them (by error), until the
   * same call succeeds, which got past them all (a retry after a backoff, or tests run again after
   * fixes, as error_loop.sql).
   */
  pendingFailures: Map<string, Map<string, Failure[]>> | null = null; // tool -> arguments -> failures by error (no key built per call)
  /** Calls in a row that returned nothing new. */
  noProgressLen = 0;
  /** Calls the guard stopped (halt): they spend against the budgets, and the runaway message says how many. */
  stopped = 0;
  /**
   * The calls of that run not counted as runaway waste yet (tool, tokens, cost): counted all at
   * once when the run reaches runawayNoProgressRun, in order.
   */
  readonly pendingTools: string[] = [];
  readonly pendingTokens: number[] = [];
  readonly pendingCost: number[] = [];
  /** Entries of the pending lists in use (not their length: emptying an array frees its storage, refilling allocates again). */
  pending = 0;
  firstSpan = '';
  start = 0;
  /** The latest end of the calls so far, and the gaps between calls left out of the wall time (ms). */
  lastEnd = 0;
  idle = 0;
  calls = 0;
  tokens = 0;
  cost = 0;
  runaway: Runaway | null = null;
  /** Per kind (K_*): first span id -> finding. */
  readonly findings: (Map<string, KeptFinding> | null)[] = [null, null, null, null, null, null, null];
  findingCount = 0;
  findingOrder = 0;
  /** Past this many findings, the oldest of those whose loops ended are dropped (see pruneFindings). */
  pruneAt = 2 * MAX_ENDED_FINDINGS;

  /** Forgotten while its call was being observed (maxSessions < 1): its keys go once the call is done. */
  forgotten = false;

  /** id: the session's; no: its number in the guard's key tables, unique among the sessions kept. */
  constructor(
    readonly id: string,
    readonly no: number,
  ) {}
}

/** Where the call k back (1 = the previous call) starts in the ring, or -1. */
function back(s: SessionState, k: number): number {
  if (k > s.ringLen) return -1;
  return RING_FIELDS * ((s.ringNext - k + RING) % RING);
}

function toMs(t: number | bigint | string | Date | undefined): number {
  if (t === undefined) return NaN;
  if (typeof t === 'number') return t;
  if (typeof t === 'bigint') return nsToMs(t);
  if (t instanceof Date) return t.getTime();
  const m = /^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d)(\.\d+)?Z?$/.exec(t);
  if (m) return Date.parse(`${m[1]}T${m[2]}Z`) + (m[3] ? Number(`0${m[3]}`) * 1000 : 0);
  return Date.parse(t);
}

/**
 * Epoch nanoseconds as epoch milliseconds. Below the millisecond kept as a fraction: calls inside
 * one millisecond keep their order and their gaps (a retry storm needs a call that started after
 * another ended). Whole milliseconds stay exact: Number() of the nanoseconds (past 2^53) would
 * round them to 256 ns, and a call ending exactly at a budget would be over it.
 */
export function nsToMs(ns: bigint): number {
  return Number(ns / 1_000_000n) + Number(ns % 1_000_000n) / 1e6;
}

/**
 * The pauses between a turn's LLM calls, for ObservedCall.turnPauses ([from, to], epoch ms): one
 * before each call that started after the ones before it had all ended (as turn_pauses in
 * queries/features/detector-calls.sql). The live guard and `loopwatch replay` both use it. Sorts
 * `calls` by start.
 */
export function pausesBetween(calls: { startedAt: number; endedAt: number }[]): [number, number][] {
  calls.sort((a, b) => a.startedAt - b.startedAt);
  const out: [number, number][] = [];
  let end = -Infinity;
  for (const c of calls) {
    if (c.startedAt > end && end > -Infinity) out.push([end, c.startedAt]);
    end = Math.max(end, c.endedAt);
  }
  return out;
}

/** Bounded map: refreshes on touch, drops the least recently touched entry past the limit (given to `dropped`). */
export function touch<K, V>(map: Map<K, V>, key: K, value: V, limit: number, dropped?: (key: K, value: V) => void): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > limit) evictOldest(map, dropped);
}

function evictOldest<K, V>(map: Map<K, V>, dropped?: (key: K, value: V) => void): void {
  for (const [k, v] of map) {
    map.delete(k);
    dropped?.(k, v);
    return;
  }
}

const severity = (n: number, min: number): 'warning' | 'critical' => (n >= 2 * min ? 'critical' : 'warning');

/**
 * What a failed call's error becomes: its outcome (type and normalized message) and, for the last
 * tool that raised it, the error key (tool and outcome) and the key's hash. Memoized per raw
 * message: normalizing costs a few regular expressions, and a loop repeats the same error.
 */
interface ErrorMemo {
  norm: string;
  /** The message as a finding quotes it: its first 120 characters (made once per message, not per failed call). */
  quoted: string;
  type: string;
  outcome: Outcome;
  tool: string;
  key: string;
  keyHash: number;
}

const ERROR_MEMO_SIZE = 256;

/** A failure error_loop counted: its error key, and the waste added with it. */
interface Failure {
  key: string;
  keyHash: number;
  /** Failures of the call with this error, and their waste. */
  count: number;
  /** The first one's place in the session: a record of the error newer than it did not count it. */
  firstSeq: number;
  tokens: number;
  cost: number;
  /** The error as a finding quotes it. */
  type: string | undefined;
  quoted: string;
}

/** Distinct errors kept per failing call (tool and arguments): a call fails with one or two. */
const MAX_FAILURES_PER_CALL = 8;

export class LoopGuard {
  readonly params: DetectorParams;
  private readonly sessions = new Map<string, SessionState>();
  private readonly maxSessions: number;
  /** Sessions from the least to the most recently active (a list: moving one is O(1), no map churn). */
  private oldest: SessionState | null = null;
  private newest: SessionState | null = null;
  private readonly errorMemo = new Map<string, ErrorMemo>();
  // per session (see KeyTable): error key (tool, type, normalized message) -> calls, first call,
  // waste, first call's sequence number; (tool, arguments, result) -> calls, first call, waste;
  // (tool, result) of successful calls; span id -> nesting depth (in the count column)
  private readonly errors = new KeyTable(MAX_ERROR_KEYS, 1, true, 4);
  private readonly redundant = new KeyTable(MAX_KEYS, 3, true, 2);
  private readonly seen = new KeyTable(MAX_SEEN, 2, false, 0);
  private readonly depths = new KeyTable(MAX_KEYS, 1, false, 0);
  private readonly keyTables = [this.errors, this.redundant, this.seen, this.depths];
  /** Runaway sessions forgotten to keep others (at most MAX_STOPPED): they stay stopped. */
  private readonly stopped = new Map<string, KeptFinding>();
  /** The latest sessions forgotten (at most maxSessions), and how many of them came back (see state()). */
  private readonly forgottenIds = new Map<string, true>();
  private evictedActive = 0;
  /** Sessions that had a call after they were forgotten: more are active at once than kept (raise maxSessions). */
  get activeSessionsForgotten(): number {
    return this.evictedActive;
  }
  /** Session numbers of forgotten sessions, to reuse (numbers stay below the most sessions kept at once). */
  private readonly freeNumbers: number[] = [];
  private nextNumber = 0;
  /** What the observe() call under way raised or grew (observe() calls nothing outside the guard: no reentry). */
  private raised: GuardFinding[] | null = null;
  /** Table key parts of the call under way: tool, arguments, outcome, span id, parent span id, and one for anything else. */
  private readonly kTool = new KeyPart();
  private readonly kArgs = new KeyPart();
  private readonly kOutcome = new KeyPart();
  private readonly kSpan = new KeyPart();
  private readonly kOther = new KeyPart();
  private readonly kParent = new KeyPart();
  /**
   * Tool names by number, so table keys hold a number instead of the name. A tool gets its number
   * the first time the guard sees it and keeps it; past MAX_TOOL_IDS names the others are kept as
   * text, always (a tool is never one and then the other, so keys stay comparable).
   */
  private readonly toolIds = new Map<string, number>();

  constructor(opts: LoopGuardOptions = {}) {
    this.params = resolveDetectorParams(opts.params);
    const max = opts.maxSessions ?? 1000;
    // NaN (a Number() of an unset variable) kept every session, 0 or less detected nothing: both silently
    if (!Number.isInteger(max) || max < 1) throw new DetectorSettingsError(`maxSessions must be a whole number from 1 (given ${String(opts.maxSessions)})`);
    this.maxSessions = max;
  }

  /** Current findings of a session (or of all sessions): those under way, and the latest of those that ended (MAX_ENDED_FINDINGS). */
  findings(sessionId?: string): GuardFinding[] {
    const states: SessionState[] = [];
    if (sessionId === undefined) for (let s = this.oldest; s; s = s.newer) states.push(s); // least recently active first
    else if (this.sessions.has(sessionId)) states.push(this.sessions.get(sessionId)!);
    const out: GuardFinding[] = [];
    for (const s of states) {
      const kept: KeptFinding[] = [];
      for (const byFirst of s.findings) if (byFirst) for (const f of byFirst.values()) kept.push(f);
      kept.sort((a, b) => a.order - b.order);
      for (const f of kept) out.push(toFinding(f, false));
    }
    return out;
  }

  /** Forgets a session (it ended), a stopped one too. */
  end(sessionId: string): void {
    this.stopped.delete(sessionId);
    const s = this.sessions.get(sessionId);
    if (!s) return;
    this.unlink(s);
    this.sessions.delete(sessionId);
    this.release(s);
  }

  /**
   * The detected loop that a call about to run would continue, if any: the next call of a
   * repeat/stuck run, the next call of an oscillating cycle, another call of a tool in a retry
   * storm or error loop, any call of a runaway session. Redundant calls never halt.
   */
  check(call: { sessionId: string; tool: string; argsHash: string }): GuardFinding | undefined {
    // a runaway session forgotten for others stays stopped: being crowded out is no fresh budget
    if (this.stopped.size > 0) {
      const gone = this.stopped.get(call.sessionId);
      if (gone) return toFinding(gone, false);
    }
    const s = this.sessions.get(call.sessionId);
    if (!s || s.findingCount === 0) return undefined;
    // a runaway session first: it stops every call, and says so (a budget blown while the model
    // kept asking for a call halted as stuck was still reported as stuck)
    const runaway = stoppingRunaway(s);
    if (runaway) return toFinding(runaway, false);
    const tool = call.tool;
    const args = call.argsHash;
    if (s.repeat.len > 0 && s.repeat.tool === tool && s.repeat.args === args) {
      const f = active(s, K_REPEAT, s.repeat.first);
      if (f) return f;
    }
    if (s.stuck.len > 0 && s.stuck.tool === tool && s.stuck.args === args) {
      const f = active(s, K_STUCK, s.stuck.first);
      if (f) return f;
    }
    if (s.islands) {
      for (const [p, island] of s.islands) {
        const j = back(s, p);
        if (j >= 0 && s.ring[j + RING_TOOL] === tool && s.ring[j + RING_ARGS] === args) {
          const f = active(s, K_OSCILLATION, island.first);
          if (f) return f;
        }
      }
    }
    if (s.storm.len > 0 && s.storm.tool === tool) {
      const f = active(s, K_RETRY_STORM, s.storm.first);
      if (f) return f;
    }
    // an error loop stops the call that failed again, not the tool: a deploy failing for want of a
    // permission, once granted, can be tried with other arguments (every call of the tool stayed
    // stopped, and the guard never saw the cause fixed: a stopped call does not run)
    const lastError = s.lastErrorByTool?.get(tool);
    if (lastError && lastError.args === args) {
      const k = this.kOther.set(lastError.key);
      const e = this.errors.find(s.no, k.hash, k, k, k);
      const f = e >= 0 ? active(s, K_ERROR_LOOP, this.errors.first(e)) : undefined;
      if (f) return f;
    }
    return undefined;
  }

  /** Sets kTool to the tool. */
  private toolPart(tool: string): void {
    let id = this.toolIds.get(tool);
    if (id === undefined && this.toolIds.size < MAX_TOOL_IDS) this.toolIds.set(tool, (id = this.toolIds.size));
    if (id === undefined) this.kTool.setText(tool, strHash(tool));
    else this.kTool.setId(id);
  }

  private errorOf(tool: string, type: string, message: string): ErrorMemo {
    let m = this.errorMemo.get(message);
    if (m === undefined) {
      if (this.errorMemo.size >= ERROR_MEMO_SIZE) this.errorMemo.clear();
      const norm = message === '' ? '' : normalizeErrorMessage(message);
      m = { norm, quoted: message.length <= 120 ? message : [...message].slice(0, 120).join(''), type, outcome: errorOutcome(type, norm), tool: '', key: '', keyHash: 0 };
      this.errorMemo.set(message, m);
    } else if (m.type !== type) {
      m.type = type;
      m.outcome = errorOutcome(type, m.norm);
      m.tool = m.key = '';
    }
    if (m.key === '' || m.tool !== tool) {
      m.tool = tool;
      m.key = tool + OUTCOME_TAG + m.outcome;
      m.keyHash = strHash(m.key);
    }
    return m;
  }

  private emit(
    s: SessionState, k: number, firstSpanId: string, lastSpanId: string, repeats: number, wastedCalls: number,
    wastedTokens: number, wastedCostUsd: number, tools: string[], sev: GuardFinding['severity'], message: string,
    known?: KeptFinding,
    raisedBefore = false,
  ): KeptFinding {
    const byFirst = (s.findings[k] ??= new Map());
    let f = known ?? byFirst.get(firstSpanId);
    // (raisedBefore: the same loop, taken back and found again: kept, not announced a second time)
    const isNew = f === undefined && !raisedBefore;
    if (f === undefined) {
      f = {
        kind: KINDS[k]!, sessionId: s.id, firstSpanId, lastSpanId, repeats, wastedCalls, wastedTokens, wastedCostUsd, tools, severity: sev, message,
        order: s.findingOrder++, rec: -1,
      };
      byFirst.set(firstSpanId, f);
      if (++s.findingCount > s.pruneAt) this.pruneFindings(s, f);
    } else {
      f.lastSpanId = lastSpanId;
      f.repeats = repeats;
      f.wastedCalls = wastedCalls;
      f.wastedTokens = wastedTokens;
      f.wastedCostUsd = wastedCostUsd;
      f.tools = tools;
      f.severity = sev;
      f.message = message;
    }
    // most calls raise nothing and most that do raise one: `[f]` is sized to fit, a push onto [] reserves 16 slots
    if (this.raised === null) this.raised = [toFinding(f, isNew)];
    else this.raised.push(toFinding(f, isNew));
    return f;
  }

  /**
   * Drops the oldest findings of the session whose loops ended, down to MAX_ENDED_FINDINGS of
   * them: a finding stays while anything could still grow it, report it to check() or take it
   * back (a run under way that it starts, an oscillation island, a call of the last RING that
   * an island could start from, a key's record holding it, the session's runaway), and `just`,
   * raised by the call under way. Runs once per MAX_ENDED_FINDINGS new findings at most.
   */
  private pruneFindings(s: SessionState, just: KeptFinding): void {
    const ended: KeptFinding[] = [];
    let live = 0;
    for (let k = 0; k < KINDS.length; k++) {
      const byFirst = s.findings[k];
      if (!byFirst) continue;
      for (const [first, f] of byFirst) {
        if (f === just || this.findingLive(s, k, first, f)) live++;
        else ended.push(f);
      }
    }
    if (ended.length > MAX_ENDED_FINDINGS) {
      ended.sort((a, b) => a.order - b.order);
      for (let i = 0; i < ended.length - MAX_ENDED_FINDINGS; i++) {
        const f = ended[i]!;
        if (s.findings[KINDS.indexOf(f.kind)]!.delete(f.firstSpanId)) s.findingCount--;
      }
    }
    s.pruneAt = live + 2 * MAX_ENDED_FINDINGS;
  }

  /** Whether the session's finding (of kind k, under first span id `first`) is of a loop that may still grow. */
  private findingLive(s: SessionState, k: number, first: string, f: KeptFinding): boolean {
    switch (k) {
      case K_REPEAT:
        return s.repeat.len > 0 && s.repeat.first === first;
      case K_STUCK:
        return s.stuck.len > 0 && s.stuck.first === first;
      case K_RETRY_STORM:
        return s.storm.len > 0 && s.storm.first === first;
      case K_RUNAWAY:
        return true;
      case K_REDUNDANT:
        return f.rec >= 0 && this.redundant.finding(f.rec) === f;
      case K_ERROR_LOOP:
        return f.rec >= 0 && this.errors.finding(f.rec) === f;
      default: {
        if (s.islands) for (const island of s.islands.values()) if (island.first === first) return true;
        for (let i = 1; i <= s.ringLen; i++) if (s.ring[back(s, i) + RING_SPAN] === first) return true;
        return false;
      }
    }
  }

  /** Takes one completed call; returns the findings it raised (isNew) or grew. */
  observe(call: ObservedCall): GuardFinding[] {
    // a call the guard stopped never ran: not part of any loop (the SQL view leaves it out too)
    if (call.errorType === 'LoopDetectedError') return this.observeHalted(call);
    const p = this.params;
    const s = this.state(call.sessionId);
    this.raised = null;
    const tool = call.tool;
    const args = call.argsHash;
    const spanId = call.spanId;
    const seq = ++s.seq;
    const tokens = call.tokens ?? 0;
    const cost = call.costUsd ?? 0;
    const failed = call.status === 'error';
    const hasResult = !failed && !!call.resultHash;
    let outcome: Outcome;
    let error: ErrorMemo | null = null;
    if (failed) {
      error = this.errorOf(tool, call.errorType ?? '', call.errorMessage ?? '');
      outcome = error.outcome;
    } else if (hasResult) {
      outcome = String(call.resultHash);
    } else {
      outcome = OUTCOME_TAG + 'U' + spanId;
    }
    let empty = false;
    if (hasResult) {
      if (call.resultEmpty != null) empty = call.resultEmpty;
      // as EMPTY_HEX/EMPTY_DEC.has(lower case): lower-casing only a text that could be the hex one
      else empty = outcome === EMPTY_HEX || outcome === EMPTY_DEC || (outcome.length === EMPTY_HEX.length && (outcome.charCodeAt(0) | 0x20) === EMPTY_HEX_FIRST && outcome.toLowerCase() === EMPTY_HEX);
    }

    // The call's keys, looked up together before any rule runs: with many sessions each lookup is
    // likely a cache miss, and independent ones side by side overlap in the CPU. (Each table is
    // changed only after its own lookups, so what they found stays valid.)
    const kSpan = this.kSpan; // set where a table needs the span id: parsing it is not free
    const kTool = this.kTool, kArgs = this.kArgs, kOutcome = this.kOutcome;
    let seenHash = 0, seenAt = -1, redundantHash = 0, redundantAt = -1;
    if (hasResult) {
      this.toolPart(tool);
      kOutcome.set(outcome);
      seenHash = hashWith(kTool.hash, kOutcome.hash);
      seenAt = this.seen.find(s.no, seenHash, kTool, kOutcome, kOutcome);
      // (an empty result's call too: runaway counts an action not made before as progress)
      kArgs.set(args);
      redundantHash = hashWith(hashWith(kTool.hash, kArgs.hash), kOutcome.hash);
      redundantAt = this.redundant.find(s.no, redundantHash, kTool, kArgs, kOutcome);
    }
    // the call's nesting depth: given, or from its parent's (then its own is kept for its children)
    const dt = this.depths;
    const givenDepth = call.depth !== undefined && call.depth >= 1 ? call.depth : 0;
    let depth = givenDepth, spanAt = -1;
    if (givenDepth === 0) {
      const parentAt = call.parentSpanId ? dt.find(s.no, this.kParent.set(call.parentSpanId).hash, this.kParent, this.kParent, this.kParent) : -1;
      depth = parentAt >= 0 ? dt.count(parentAt) + 1 : 1;
      kSpan.set(spanId);
      spanAt = dt.find(s.no, kSpan.hash, kSpan, kSpan, kSpan);
    }

    this.trackRepeat(s, tool, args, outcome, spanId, tokens, cost);
    this.trackStuck(s, tool, args, outcome, spanId, tokens, cost, hasResult);
    this.trackOscillation(s, seq, tool, args, outcome, spanId, tokens, cost);
    this.trackRetryStorm(s, call, failed, tool, args, spanId, tokens, cost);
    if (!failed && s.pendingFailures !== null && s.pendingFailures.size > 0) {
      const ofTool = s.pendingFailures.get(tool);
      const pending = ofTool?.get(args);
      if (pending !== undefined) {
        ofTool!.delete(args);
        if (ofTool!.size === 0) s.pendingFailures.delete(tool);
        for (const f of pending) this.recovered(s, f);
      }
    }
    if (error) this.trackErrorLoop(s, seq, error, tool, args, spanId, tokens, cost, call.errorType);
    else if (s.lastErrorByTool !== null && s.lastErrorByTool.size > 0) s.lastErrorByTool.delete(tool);

    // redundant: the same call with the same non-empty result earlier in the session (calls with
    // an empty result are kept too, for runaway's "an action not made before")
    if (hasResult) {
      const rt = this.redundant;
      let e = redundantAt;
      if (e >= 0) {
        rt.again(e, s.seq);
        rt.addNum(e, W_TOKENS, tokens);
        rt.addNum(e, W_COST, cost);
      } else {
        e = rt.add(s.no, redundantHash, kTool, kArgs, kOutcome, kSpan.set(spanId), s.seq);
      }
      const n = rt.count(e);
      if (!empty && n >= p.redundantMinCalls) {
        const known = rt.finding(e);
        const f = this.emit(s, K_REDUNDANT, known ? known.firstSpanId : rt.first(e), spanId, n, n - 1, rt.num(e, W_TOKENS), rt.num(e, W_COST), [tool], 'info',
          `Tool ${tool} was called ${n} times with the same arguments and got the same result: ${n - 1} redundant calls.`, known);
        if (!known) {
          rt.setFinding(e, f);
          f.rec = e;
        }
      }
    }

    // runaway: no new result for a long run, or a budget blown
    let isNew = !failed && !hasResult; // an unknown result counts as new
    if (hasResult) {
      // a result the tool had not returned, or an action (returns nothing) not made before (as runaway.sql)
      isNew = seenAt < 0 || (empty && redundantAt < 0);
      if (isNew) this.seen.add(s.no, seenHash, kTool, kOutcome, kOutcome, null, s.seq);
      else this.seen.touch(seenAt, s.seq);
    }
    // the span's depth, for its children's
    if (givenDepth === 0) {
      const de = spanAt >= 0 ? spanAt : dt.add(s.no, kSpan.hash, kSpan, kSpan, kSpan, null, s.seq);
      if (spanAt >= 0) dt.touch(spanAt, s.seq);
      dt.setCount(de, depth);
    }
    this.trackRunaway(s, call, isNew, tool, spanId, depth, tokens, cost);

    // the ring of the last calls
    const slot = s.ringNext;
    const at = RING_FIELDS * slot;
    s.ring[at + RING_TOOL] = tool;
    s.ring[at + RING_ARGS] = args;
    s.ring[at + RING_OUTCOME] = outcome;
    s.ring[at + RING_SPAN] = spanId;
    s.ringNext = (slot + 1) % RING;
    if (s.ringLen < RING) s.ringLen++;
    return this.done(s);
  }

  /** repeat: same call in a row, outcomes mostly not new (distinct outcomes: a set only once a second one shows up). */
  private trackRepeat(s: SessionState, tool: string, args: string, outcome: Outcome, spanId: string, tokens: number, cost: number): void {
    const p = this.params;
    const r = s.repeat;
    if (r.len > 0 && r.tool === tool && r.args === args) {
      r.extend(spanId, tokens, cost);
      if (r.outcomes) {
        if (r.outcomes.size <= MAX_KEYS) r.outcomes.add(outcome);
      } else if (outcome !== r.outcome) {
        r.outcomes = new Set([r.outcome, outcome]);
      }
    } else {
      r.start(tool, args, outcome, spanId);
    }
    const distinct = r.outcomes ? r.outcomes.size : 1;
    if (r.len >= p.repeatMinRun && distinct <= r.len * p.repeatMaxNewRatio) {
      // a run whose share of new outcomes hovers at the limit is taken back and found again: one announcement
      this.emit(s, K_REPEAT, r.first, r.last, r.len, r.len - 1, r.tokens, r.cost, [tool], severity(r.len, p.repeatMinRun),
        `Tool ${tool} was called ${r.len} times in a row with the same arguments (${distinct} distinct outcome${distinct === 1 ? '' : 's'}).`, undefined, r.announced);
      r.announced = true;
    } else if (r.len > 1 && s.findingCount > 0) {
      // the run turned out to make progress
      takeBack(s, K_REPEAT, r.first);
    }
  }

  /** stuck: same call and same successful result in a row. */
  private trackStuck(
    s: SessionState, tool: string, args: string, outcome: Outcome, spanId: string, tokens: number, cost: number, hasResult: boolean,
  ): void {
    const p = this.params;
    const st = s.stuck;
    if (st.len > 0 && st.tool === tool && st.args === args && st.outcome === outcome) st.extend(spanId, tokens, cost);
    else st.start(tool, args, outcome, spanId);
    if (st.len >= p.stuckMinRun && hasResult) {
      this.emit(s, K_STUCK, st.first, st.last, st.len, st.len - 1, st.tokens, st.cost, [tool], severity(st.len, p.stuckMinRun),
        `Tool ${tool} returned the same result to the same arguments ${st.len} times in a row: the agent is stuck.`);
    }
  }

  /** oscillation: key and outcome equal to those one period back, over a cycle of distinct calls. */
  private trackOscillation(
    s: SessionState, seq: number, tool: string, args: string, outcome: Outcome, spanId: string, tokens: number, cost: number,
  ): void {
    const p = this.params;
    const maxP = Math.min(4, p.oscillationMaxPeriod);
    for (let period = 2; period <= maxP; period++) {
      const b = back(s, period);
      const matched = b >= 0 && seq > period && s.ring[b + RING_TOOL] === tool && s.ring[b + RING_ARGS] === args && s.ring[b + RING_OUTCOME] === outcome;
      if (!matched) {
        if (s.islands !== null && s.islands.size > 0) s.islands.delete(period);
        continue;
      }
      s.islands ??= new Map();
      let island = s.islands.get(period);
      if (!island) {
        island = new Island(s.ring[b + RING_SPAN]!);
        for (let k = period; k >= 1; k--) island.tools.add(s.ring[back(s, k) + RING_TOOL]!);
        s.islands.set(period, island);
      }
      island.matches++;
      island.tools.add(tool);
      island.tokens += tokens;
      island.cost += cost;
      // the cycle's calls: distinct (2, 3), or a minimal cycle of 4 (as oscillation.sql)
      if (island.matches >= period && island.matches + period >= period * p.oscillationMinCycles
          && (period === 4 ? this.cycleOfFour(s, tool, args, outcome) : this.cycleDistinct(s, period, tool, args))) {
        const total = island.matches + period;
        const tools = [...island.tools].sort();
        this.emit(s, K_OSCILLATION, island.first, spanId, total, island.matches, island.tokens, island.cost, tools,
          total >= 2 * period * p.oscillationMinCycles ? 'critical' : 'warning',
          `The agent cycles through ${period} calls (${tools.join(', ')}) ${Math.floor(total / period)} times with the same arguments and results.`);
      }
    }
  }

  /** retry_storm: the same tool failing in a row. */
  private trackRetryStorm(
    s: SessionState, call: ObservedCall, failed: boolean, tool: string, args: string, spanId: string, tokens: number, cost: number,
  ): void {
    const p = this.params;
    const prev = back(s, 1);
    const prevFailed = prev >= 0 && s.ring[prev + RING_OUTCOME]!.startsWith(ERROR_PREFIX) && s.ring[prev + RING_TOOL] === tool;
    const rs = s.storm;
    if (failed && rs.len > 0 && rs.tool === tool && prevFailed) {
      rs.extend(spanId, tokens, cost);
      if (rs.argsSeen !== null) rs.argsSeen.add(args);
      else if (args !== rs.args) rs.argsSeen = new Set([rs.args, args]);
    } else if (failed) rs.start(tool, args, '', spanId);
    else rs.len = 0;
    if (rs.len === 0) return;
    // tried again: a call of the run started after another had ended (as retry_storm.sql; strictly,
    // so never the same call). One step's parallel calls failing together are not retries of each
    // other; batch after batch are.
    const startMs = toMs(call.ts);
    const endMs = call.endTs === undefined ? startMs : toMs(call.endTs);
    if (startMs > rs.maxStart) rs.maxStart = startMs;
    if (endMs < rs.minEnd) rs.minEnd = endMs;
    if (rs.len >= p.retryStormMinRun && rs.maxStart > rs.minEnd) {
      this.emit(s, K_RETRY_STORM, rs.first, rs.last, rs.len, rs.len - 1, rs.tokens, rs.cost, [tool], severity(rs.len, p.retryStormMinRun),
        `Tool ${tool} failed ${rs.len} times in a row (${rs.argsSeen === null ? 'the same arguments' : `${rs.argsSeen.size} distinct argument sets`}; last error: ${call.errorType ?? 'error'}).`);
    }
  }

  /** error_loop: the same error again across the session, other calls in between. */
  private trackErrorLoop(
    s: SessionState, seq: number, error: ErrorMemo, tool: string, args: string, spanId: string, tokens: number, cost: number, errorType: string | undefined,
  ): void {
    const et = this.errors;
    const k = this.kOther.setText(error.key, error.keyHash); // never hex digits: it holds OUTCOME_TAG
    let e = et.find(s.no, k.hash, k, k, k);
    if (e >= 0) {
      et.again(e, seq);
      et.addNum(e, E_TOKENS, tokens);
      et.addNum(e, E_COST, cost);
    } else {
      e = et.add(s.no, k.hash, k, k, k, this.kSpan.set(spanId), seq);
      et.setNum(e, E_FIRST_SEQ, seq);
    }
    const lastErrors = (s.lastErrorByTool ??= new Map());
    // already the most recently touched: changed in place keeps its place (delete-then-set would reallocate the map)
    const last = tool === s.lastErrorTool ? lastErrors.get(tool) : undefined;
    if (last) {
      last.key = error.key;
      last.args = args;
    } else {
      touch(lastErrors, tool, { key: error.key, args }, MAX_ERROR_KEYS);
    }
    s.lastErrorTool = tool;
    // (the memo is shared: its key changes with the tool)
    const pending = (s.pendingFailures ??= new Map());
    let ofTool = pending.get(tool);
    if (ofTool === undefined) touch(pending, tool, (ofTool = new Map<string, Failure[]>()), MAX_ERROR_KEYS);
    const failures: Failure[] = ofTool.get(args) ?? [];
    touch(ofTool, args, failures, MAX_ERROR_KEYS);
    const same = failures.find((f) => f.key === error.key);
    if (same !== undefined) {
      same.count++;
      same.tokens += tokens;
      same.cost += cost;
    } else {
      // full: a further error of the call stays counted (the earlier ones, which a finding may
      // hold, are kept to be taken back)
      if (failures.length < MAX_FAILURES_PER_CALL) failures.push({ key: error.key, keyHash: error.keyHash, count: 1, firstSeq: seq, tokens, cost, type: errorType, quoted: error.quoted });
    }
    const count = et.count(e);
    // other calls in between: the tally spans more calls than it counts (this call is its last)
    if (count >= this.params.errorLoopMinCount && seq - et.num(e, E_FIRST_SEQ) + 1 > count) {
      const known = et.finding(e);
      const f = this.emit(s, K_ERROR_LOOP, known ? known.firstSpanId : et.first(e), spanId, count, count - 1, et.num(e, E_TOKENS), et.num(e, E_COST), [tool], 'critical',
        // with the error's text, as SQL's message (SQL quotes the first occurrence's, this the latest's: the same error, its ids aside)
        errorLoopMessage(tool, count, errorType, error.quoted), known, et.num(e, E_ANNOUNCED) === 1);
      if (!known) {
        et.setFinding(e, f);
        f.rec = e;
        et.setNum(e, E_ANNOUNCED, 1);
      }
    }
  }

  /**
   * error_loop: failures that the same call, tried again, got past were passing errors (a 503, a
   * timeout) or a problem the agent fixed (tests run again after its edits pass), not a wall: they
   * are not counted (as error_loop.sql). Undoing them is taking back their count (and the key, when
   * they were all of it: the error starts again from its next failure). When other calls failed
   * with the same error since, the error's first occurrence stays where it was even if it was one
   * of these (SQL would anchor a finding on the next), and so does the waste (SQL's leaves out the
   * new first occurrence's): not re-judged.
   */
  private recovered(s: SessionState, failure: Failure): void {
    const et = this.errors;
    const k = this.kOther.setText(failure.key, failure.keyHash);
    const e = et.find(s.no, k.hash, k, k, k);
    // (a record newer than the failures: theirs was dropped for other errors, and this one is another call's)
    if (e < 0 || et.num(e, E_FIRST_SEQ) > failure.firstSeq) return;
    const count = Math.max(0, et.count(e) - failure.count);
    const f = et.finding(e);
    if (f !== undefined && count < this.params.errorLoopMinCount) {
      // the wall was got past after all: no error loop (the SQL pass, seeing the retry, reports none)
      takeBack(s, K_ERROR_LOOP, f.firstSpanId);
      et.clearFinding(e);
    }
    if (count === 0) {
      // every failure of the error was got past: it starts again from its next failure (its first
      // span and first call were the ones taken out)
      et.forget(e);
      return;
    }
    et.setCount(e, count);
    // (the waste never held the first failure's: kept from going below nothing, not re-judged)
    et.setNum(e, E_TOKENS, Math.max(0, et.num(e, E_TOKENS) - failure.tokens));
    et.setNum(e, E_COST, Math.max(0, et.num(e, E_COST) - failure.cost));
    if (f === undefined || count < this.params.errorLoopMinCount) return;
    f.repeats = count;
    f.wastedCalls = count - 1;
    f.wastedTokens = et.num(e, E_TOKENS);
    f.wastedCostUsd = et.num(e, E_COST);
    f.message = errorLoopMessage(f.tools[0] ?? '', count, failure.type, failure.quoted);
  }

  /** runaway: no new result for a long run, or a budget blown; also the session's totals. */
  private trackRunaway(
    s: SessionState, call: ObservedCall, isNew: boolean, tool: string, spanId: string, depth: number, tokens: number, cost: number, halted = false,
  ): void {
    const p = this.params;
    const startMs = toMs(call.ts);
    if (halted) s.stopped++;
    if (s.calls === 0) {
      s.start = startMs;
      s.firstSpan = spanId;
    } else if (p.budgetIdleGapS > 0) {
      // pauses (a person's turn, a conversation resumed later) are not wall time, the LLM calls
      // between are (as runaway.sql): before the turn's LLM calls, and from them to the call
      const gap = p.budgetIdleGapS * 1000;
      const turnStart = call.turnStart === undefined ? NaN : toMs(call.turnStart);
      const turnEnd = call.turnEnd === undefined ? NaN : toMs(call.turnEnd);
      if (Number.isFinite(turnStart) && Number.isFinite(turnEnd)) {
        if (turnStart - s.lastEnd > gap) s.idle += turnStart - s.lastEnd;
        if (call.turnPauses !== undefined) {
          for (const [from, to] of call.turnPauses) {
            const d = to - Math.max(from, s.lastEnd);
            if (d > gap) s.idle += d;
          }
        }
        const after = startMs - Math.max(s.lastEnd, turnEnd);
        if (after > gap) s.idle += after;
      } else if (startMs - s.lastEnd > gap) {
        s.idle += startMs - s.lastEnd;
      }
    }
    s.calls++;
    s.tokens += tokens;
    s.cost += cost;
    let reasons = 0;
    let reachedNoProgress = false;
    if (isNew) {
      s.noProgressLen = 0;
      s.pending = 0;
    } else {
      s.noProgressLen++;
      reachedNoProgress = s.noProgressLen === p.runawayNoProgressRun;
      if (s.noProgressLen >= p.runawayNoProgressRun) reasons |= R_NO_PROGRESS;
    }
    const endTs = toMs(call.endTs);
    const endMs = Number.isFinite(endTs) ? endTs : startMs;
    if (s.calls === 1 || endMs > s.lastEnd) s.lastEnd = endMs;
    const wallMs = endMs - s.start - s.idle;
    if (p.budgetMaxCalls > 0 && s.calls > p.budgetMaxCalls) reasons |= R_CALLS;
    // over the budget, not at it: sums of shares and prices are not exact (twenty calls of 0.1 USD
    // sum to 2.0000000000000004); as runaway.sql
    if (p.budgetMaxTokens > 0 && s.tokens > p.budgetMaxTokens * (1 + 1e-9)) reasons |= R_TOKENS;
    if (p.budgetMaxCostUsd > 0 && s.cost > p.budgetMaxCostUsd * (1 + 1e-9)) reasons |= R_COST;
    if (p.budgetMaxWallTimeS > 0 && wallMs / 1000 > p.budgetMaxWallTimeS) reasons |= R_WALL_TIME;
    if (p.budgetMaxToolDepth > 0 && depth > p.budgetMaxToolDepth) reasons |= R_DEPTH;
    if (s.runaway) s.runaway.stillNoProgress = (reasons & R_NO_PROGRESS) !== 0;
    if (reasons === 0) {
      // not counted yet: waits for its no-progress run to reach the threshold
      if (!isNew && !halted) {
        s.pendingTools[s.pending] = tool;
        s.pendingTokens[s.pending] = tokens;
        s.pendingCost[s.pending] = cost;
        s.pending++;
      }
      return;
    }
    const rw = (s.runaway ??= new Runaway());
    rw.stillNoProgress = (reasons & R_NO_PROGRESS) !== 0;
    rw.reasons |= reasons;
    // each call counted once: the no-progress run's calls not counted yet when it reaches the threshold, then this call
    if (reachedNoProgress) {
      for (let i = 0; i < s.pending; i++) rw.count(s.pendingTools[i]!, s.pendingTokens[i]!, s.pendingCost[i]!);
      s.pending = 0;
    }
    if (!halted) rw.count(tool, tokens, cost);
    if (depth > rw.maxDepth) rw.maxDepth = depth;
    // what the session has used against each budget it blew: the agent's log says by how much
    const used: string[] = [];
    if (rw.reasons & R_CALLS) used.push(`${s.calls} calls of ${p.budgetMaxCalls}`);
    if (rw.reasons & R_COST) used.push(`$${s.cost.toFixed(4)} of $${p.budgetMaxCostUsd}`);
    if (rw.reasons & R_DEPTH) used.push(`tool depth ${rw.maxDepth} of ${p.budgetMaxToolDepth}`);
    if (rw.reasons & R_TOKENS) used.push(`${Math.round(s.tokens)} tokens of ${p.budgetMaxTokens}`);
    if (rw.reasons & R_WALL_TIME) used.push(`${Math.round(wallMs / 1000)} s of ${p.budgetMaxWallTimeS} s`);
    this.emit(s, K_RUNAWAY, s.firstSpan, spanId, rw.wasted, rw.wasted, rw.tokens, rw.cost, rw.sortedTools(), 'critical',
      `Runaway session: ${rw.why()} (${rw.wasted} calls wasted${s.stopped ? `, ${s.stopped} stopped by the guard` : ''}${used.length ? `; used ${used.join(', ')}` : ''}).`);
  }

  /**
   * A call the guard stopped still spends: the model that asked for it was paid, and a framework
   * that hands the halt back to the model (the AI SDK: a tool error the model reads) may be asked
   * for it again and again. It counts against the budgets as a call that made no progress, so a
   * session that keeps going after a halt runs away and is stopped; it is in no loop rule (its
   * depth neither: a call stopped for its depth was reported when it was stopped), and not in a
   * finding's waste (the SQL pass leaves stopped calls out: the figures stay comparable).
   */
  private observeHalted(call: ObservedCall): GuardFinding[] {
    const s = this.state(call.sessionId);
    this.raised = null;
    this.trackRunaway(s, call, false, call.tool, call.spanId, 0, call.tokens ?? 0, call.costUsd ?? 0, true);
    return this.done(s);
  }

  /** The end of an observe(): a session forgotten meanwhile lets go of its keys; what the call raised. */
  private done(s: SessionState): GuardFinding[] {
    if (s.forgotten) this.release(s);
    const raised = this.raised ?? [];
    this.raised = null;
    return raised;
  }

  /**
   * The last 4 calls, this one included, are a cycle of 4: each differs from the next (tool and
   * arguments; the last from the first, which comes next), and it is not a cycle of 2 twice (each
   * call the same as two before, outcome included). Edit A, run tests (fail X), edit B, run tests
   * (fail Y) is one: two fixes flip-flopping.
   */
  private cycleOfFour(s: SessionState, tool: string, args: string, outcome: Outcome): boolean {
    const r = s.ring;
    const c0 = back(s, 3), c1 = back(s, 2), c2 = back(s, 1);
    const t0 = r[c0 + RING_TOOL], a0 = r[c0 + RING_ARGS], t1 = r[c1 + RING_TOOL], a1 = r[c1 + RING_ARGS], t2 = r[c2 + RING_TOOL], a2 = r[c2 + RING_ARGS];
    // neighbours differ (this call's next is the cycle's first)
    if ((t0 === t1 && a0 === a1) || (t1 === t2 && a1 === a2) || (t2 === tool && a2 === args) || (t0 === tool && a0 === args)) return false;
    // not a cycle of 2 twice
    return !(t0 === t2 && a0 === a2 && r[c0 + RING_OUTCOME] === r[c2 + RING_OUTCOME] && t1 === tool && a1 === args && r[c1 + RING_OUTCOME] === outcome);
  }

  /** The last `period` calls, this one included, are all different calls (tool and arguments). */
  private cycleDistinct(s: SessionState, period: number, tool: string, args: string): boolean {
    for (let i = 1; i < period; i++) {
      const a = back(s, i);
      if (s.ring[a + RING_TOOL] === tool && s.ring[a + RING_ARGS] === args) return false;
      for (let j = i + 1; j < period; j++) {
        const b = back(s, j);
        if (s.ring[a + RING_TOOL] === s.ring[b + RING_TOOL] && s.ring[a + RING_ARGS] === s.ring[b + RING_ARGS]) return false;
      }
    }
    return true;
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
    const no = this.freeNumbers.pop() ?? this.nextNumber++;
    for (const table of this.keyTables) table.open(no);
    // a session forgotten, and back: more sessions are active at once than kept (each forgotten
    // before its next call, its loops unseen)
    if (this.forgottenIds.size > 0 && this.forgottenIds.delete(sessionId)) this.evictedActive++;
    s = new SessionState(sessionId, no);
    this.sessions.set(sessionId, s);
    this.append(s);
    while (this.sessions.size > this.maxSessions && this.oldest) {
      const drop = this.oldest;
      touch(this.forgottenIds, drop.id, true, this.maxSessions);
      const runaway = stoppingRunaway(drop);
      if (runaway) touch(this.stopped, drop.id, runaway, MAX_STOPPED);
      this.unlink(drop);
      this.sessions.delete(drop.id);
      if (drop === s) s.forgotten = true;
      else this.release(drop);
    }
    return s;
  }

  /** Drops a forgotten session's keys; its number can be reused. */
  private release(s: SessionState): void {
    for (const table of this.keyTables) table.close(s.no);
    this.freeNumbers.push(s.no);
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

function errorOutcome(type: string, norm: string): Outcome {
  return ERROR_PREFIX + type + OUTCOME_TAG + norm;
}

/** The session's runaway finding while it stops every call: a budget blown, or still no progress. */
function stoppingRunaway(s: SessionState): KeptFinding | undefined {
  const rw = s.runaway;
  if (!rw || ((rw.reasons & ~R_NO_PROGRESS) === 0 && !rw.stillNoProgress)) return undefined;
  return s.findings[K_RUNAWAY]?.get(s.firstSpan);
}

/** Drops the session's finding of that kind and first span id: the loop turned out not to be one. */
function takeBack(s: SessionState, k: number, firstSpanId: string): void {
  if (s.findings[k]?.delete(firstSpanId)) s.findingCount--;
}

/** A copy of the session's finding of that kind and first span id, if any. */
function active(s: SessionState, k: number, firstSpanId: string): GuardFinding | undefined {
  const f = s.findings[k]?.get(firstSpanId);
  return f ? toFinding(f, false) : undefined;
}
