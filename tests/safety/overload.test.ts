// (4) Under ~10x overload the collector answers 429/503 with Retry-After instead of growing
// memory: a real collector process, open-loop load, RSS sampled from /proc. Bounded by counts
// (requests); the RSS bound is generous for a shared CI machine (docs/data-safety.md has the
// measured numbers from bench/overload.ts).
import { describe, expect, it } from 'vitest';
import { runOverload } from '../../bench/overload.js';

const RSS_BOUND_MIB = 2048;

describe('overload', () => {
  it(`open-loop overload (up to ~10x the sustainable rate): only 200/429/503 (with Retry-After), RSS under ${RSS_BOUND_MIB} MiB, everything acknowledged drains`, async () => {
    const r = await runOverload({ rate: 330, requests: 1500, spansPerRequest: 1000, maxOutstanding: 256 });
    console.log(`overload: ${JSON.stringify(r)}`);
    expect(Object.keys(r.statuses).filter((s) => !['200', '429', '503'].includes(s))).toEqual([]);
    expect(r.errors, r.errorMessages.join('; ')).toBe(0);
    expect(r.retryAfterMissing).toBe(0);
    expect(r.statuses['200'] ?? 0).toBeGreaterThan(0);
    expect(r.rssMiB.max).toBeLessThan(RSS_BOUND_MIB);
  }, 200_000);
});
