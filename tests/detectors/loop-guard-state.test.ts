// The LoopGuard's per-session memory: all sessions share its key tables (see KeyTable in
// loop-guard.ts), so these check that sessions never see each other's keys (also when a forgotten
// session's number is reused), that the bounded memories drop the least recently used key as a
// plain LRU would (reference models below), and that ids and hashes kept as numbers come back as
// the same strings.
import { describe, expect, it } from 'vitest';
import { LoopGuard, type GuardFinding, type ObservedCall } from '../../instrumentation/src/guard/loop-guard.js';

/** Deterministic pseudo-random numbers (mulberry32): the same streams on every run. */
function random(seed: number): (n: number) => number {
  let a = seed;
  return (n) => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4294967296) * n);
  };
}

const hex = (n: number) => n.toString(16).padStart(16, '0');
/** A new string with the same text: callers make their strings per call. */
const fresh = (s: string) => (' ' + s).slice(1);
const T0 = 1_700_000_000_000;

/** A stream of calls over a few sessions with small alphabets, so that every kind of loop happens. */
function stream(seed: number, n: number, sessions: number): ObservedCall[] {
  const r = random(seed);
  const spans: string[][] = Array.from({ length: sessions }, () => []);
  return Array.from({ length: n }, (_, i) => {
    const si = r(sessions);
    const mine = spans[si]!;
    const spanId = r(2) ? hex(i * 7919 + 1) : `span-${i}`;
    const failed = r(5) === 0;
    const call: ObservedCall = {
      sessionId: `s${si}`, tool: fresh(`tool${r(3)}`), argsHash: fresh(r(2) ? hex(r(4)) : String(r(4))), spanId,
      parentSpanId: mine.length && r(2) ? mine[mine.length - 1 - r(Math.min(3, mine.length))] : undefined,
      status: failed ? 'error' : 'ok', errorType: failed ? 'Error' : undefined, errorMessage: failed ? `failed after ${r(3)} tries` : undefined,
      resultHash: failed ? undefined : fresh(r(2) ? hex(r(3)) : String(r(3))),
      ts: T0 + i * 1000, tokens: r(100), costUsd: r(100) / 1000,
    };
    mine.push(spanId);
    return call;
  });
}

describe('LoopGuard memory shared by sessions', () => {
  it('a session among many finds what it finds alone, also when sessions end or are dropped and come back', () => {
    for (const [seed, maxSessions] of [[1, 1000], [2, 3], [3, 1]] as const) {
      const params = { repeatMinRun: 3, stuckMinRun: 2, oscillationMinCycles: 2, retryStormMinRun: 2, errorLoopMinCount: 2, redundantMinCalls: 2, runawayNoProgressRun: 6, budgetMaxToolDepth: 2 };
      const shared = new LoopGuard({ params, maxSessions });
      // the reference: one guard per session, replaced when the shared guard forgets the session
      const alone = new Map<string, LoopGuard>(); // least recently active first
      const calls = stream(seed, 6000, 8);
      const r = random(seed + 100);
      for (const call of calls) {
        if (r(200) === 0) {
          shared.end(call.sessionId);
          alone.delete(call.sessionId);
        }
        let own = alone.get(call.sessionId);
        alone.delete(call.sessionId);
        own ??= new LoopGuard({ params });
        alone.set(call.sessionId, own);
        while (alone.size > maxSessions) alone.delete(alone.keys().next().value!);
        expect(shared.observe(call)).toStrictEqual(own.observe(call));
      }
      for (const [id, own] of alone) expect(shared.findings(id)).toStrictEqual(own.findings());
    }
  });

  it('call keys: the same counts and first calls as an LRU of 1024 keys per session', () => {
    const g = new LoopGuard({ params: { redundantMinCalls: 2, budgetMaxCalls: 0 } });
    const lru = new Map<string, { count: number; first: string }>();
    const r = random(7);
    for (let i = 0; i < 30_000; i++) {
      const k = r(4) === 0 ? r(40) : r(3000); // some keys come back often, most rarely
      const spanId = hex(i + 1);
      const got = g.observe({ sessionId: 's', tool: 't', argsHash: hex(k), resultHash: `r${k}`, status: 'ok', ts: T0 + i, spanId });
      const key = String(k);
      const seen = lru.get(key);
      const now = seen ? { count: seen.count + 1, first: seen.first } : { count: 1, first: spanId };
      lru.delete(key);
      lru.set(key, now);
      if (lru.size > 1024) lru.delete(lru.keys().next().value!);
      const redundant = got.filter((f) => f.kind === 'redundant').map((f) => [f.repeats, f.firstSpanId]);
      expect(redundant).toEqual(now.count >= 2 ? [[now.count, now.first]] : []);
    }
  });

  it('span ids: the same nesting depths as an LRU of 1024 spans per session', () => {
    // only the depth budget can make a call runaway waste: a finding grows exactly on the calls nested deeper than 1
    const params = { budgetMaxToolDepth: 1, budgetMaxCalls: 0, budgetMaxTokens: 0, budgetMaxCostUsd: 0, budgetMaxWallTimeS: 0, runawayNoProgressRun: 1e9 };
    const g = new LoopGuard({ params });
    const depths = new Map<string, number>();
    const spans: string[] = [];
    const r = random(11);
    for (let i = 0; i < 20_000; i++) {
      const spanId = spans.length && r(20) === 0 ? spans[spans.length - 1 - r(Math.min(spans.length, 50))]! : hex(i * 2654435761 + 1);
      const parentSpanId = spans.length && r(3) ? spans[Math.max(0, spans.length - 1 - r(1500))] : undefined;
      const got = g.observe({ sessionId: 's', tool: 't', argsHash: 'a', resultHash: hex(i), status: 'ok', ts: T0 + i, spanId, parentSpanId });
      const parent = parentSpanId === undefined ? undefined : depths.get(parentSpanId);
      const depth = parent === undefined ? 1 : parent + 1;
      depths.delete(spanId);
      depths.set(spanId, depth);
      if (depths.size > 1024) depths.delete(depths.keys().next().value!);
      spans.push(spanId);
      expect(got.some((f) => f.kind === 'runaway')).toBe(depth > 1);
    }
  });

  it('hex ids and hashes are compared by value and come back as the same text', () => {
    const g = new LoopGuard();
    const call = (i: number, over: Partial<ObservedCall>): GuardFinding[] =>
      g.observe({ sessionId: 's', tool: 't', argsHash: '0123456789abcdef', resultHash: '00000000000000ff', status: 'ok', ts: T0 + i, spanId: hex(i), ...over });
    const redundant = (fs: GuardFinding[]) => fs.filter((f) => f.kind === 'redundant').map((f) => [f.repeats, f.firstSpanId]);
    // leading zeros, separate string objects, other calls in between (no stuck run)
    expect(redundant(call(10, { argsHash: fresh('0123456789abcdef') }))).toEqual([]);
    call(11, { argsHash: 'other' });
    expect(redundant(call(12, { argsHash: fresh('0123456789abcdef') }))).toEqual([]);
    call(13, { argsHash: 'other2' });
    expect(redundant(call(14, {}))).toEqual([[3, '000000000000000a']]);
    // upper case is another text (as in SQL), not the same hash
    expect(redundant(call(15, { argsHash: '0123456789ABCDEF' }))).toEqual([]);
    // a span id that is not 16 hex digits comes back as itself
    for (let i = 0; i < 3; i++) call(20 + i, { argsHash: 'x', resultHash: 'y', spanId: i === 0 ? 'Span-Ä' : hex(20 + i) });
    expect(g.findings('s').find((f) => f.kind === 'redundant' && f.lastSpanId === hex(22))?.firstSpanId).toBe('Span-Ä');
    expect(JSON.parse(JSON.stringify(g.findings('s')))).toStrictEqual(g.findings('s'));
  });
});
