// A long-lived session's findings are bounded: a polling agent raises a new stuck and a new
// redundant finding every round, and the guard kept them all (400,000 in one session after 800,000
// calls, findings() taking a second; a soak review). It keeps those of loops under way and the
// latest MAX_ENDED_FINDINGS to twice as many of those that ended; what observe() and check() say
// about loops under way is unchanged. Counts of what a session keeps, not heap sizes.
import { describe, expect, it } from 'vitest';
import { LoopGuard, type GuardFinding } from '../../instrumentation/src/guard/loop-guard.js';

/** MAX_ENDED_FINDINGS in loop-guard.ts, as docs/detectors.md says it. */
const MAX_ENDED_FINDINGS = 256;

const hex = (n: number) => n.toString(16).padStart(16, '0');
const T0 = 1_700_000_000_000;
const NO_BUDGETS = { budgetMaxCalls: 0, budgetMaxWallTimeS: 0, budgetMaxTokens: 0, budgetMaxCostUsd: 0 };

describe('LoopGuard findings of a long session', () => {
  it('a polling session keeps the latest ended findings and every loop under way, not all it ever raised', () => {
    const g = new LoopGuard({ params: NO_BUDGETS });
    let n = 0;
    const call = (tool: string, args: string, result: string): GuardFinding[] => {
      n++;
      return g.observe({ sessionId: 's', tool, argsHash: args, resultHash: result, status: 'ok', ts: T0 + n, endTs: T0 + n, spanId: hex(n) });
    };
    const ROUNDS = 3000;
    const stuckFirsts: string[] = [];
    let configFirst = '';
    let configAnnounced = 0;
    let configGrown = 0;
    for (let r = 0; r < ROUNDS; r++) {
      call('start_job', hex(1e9 + r), hex(2e9 + r));
      // the same job polled three times, 'pending' each time: a stuck run (and a redundant key)
      for (let i = 0; i < 3; i++) call('check_job', hex(3e9 + r), hex(4e9));
      stuckFirsts.push(hex(n - 2));
      // the same configuration read every round: one redundant finding under way all along
      if (r === 0) configFirst = hex(n + 1);
      for (const f of call('get_config', 'cfg', 'v1')) {
        if (f.kind !== 'redundant') continue;
        expect(f.firstSpanId).toBe(configFirst);
        if (f.isNew) configAnnounced++;
        else configGrown++;
      }
    }
    // the loop under way, grown in place all along: announced once, never again
    expect(configAnnounced).toBe(1);
    expect(configGrown).toBe(ROUNDS - 3);
    const all = g.findings('s');
    const stuck = all.filter((f) => f.kind === 'stuck');
    // 6,000 findings raised (a stuck and a redundant one a round): bounded
    expect(stuck.length).toBeGreaterThanOrEqual(MAX_ENDED_FINDINGS);
    expect(stuck.length).toBeLessThanOrEqual(2 * MAX_ENDED_FINDINGS);
    // the redundant ones under way: at most one per call key the session remembers (1024)
    expect(all.length).toBeLessThanOrEqual(1024 + 2 * MAX_ENDED_FINDINGS);
    // the latest ended ones are there, in the order raised
    expect(stuck.slice(-MAX_ENDED_FINDINGS).map((f) => f.firstSpanId)).toEqual(stuckFirsts.slice(-MAX_ENDED_FINDINGS));
    expect(stuck.at(-1)!.repeats).toBe(3);
    const config = all.find((f) => f.kind === 'redundant' && f.tools[0] === 'get_config')!;
    expect([config.firstSpanId, config.repeats]).toEqual([configFirst, ROUNDS]);
    // findings() still lists them in the order raised
    const order = stuck.map((f) => Number.parseInt(f.firstSpanId, 16));
    expect(order).toEqual([...order].sort((a, b) => a - b));

    // a loop under way after the pruning: reported, and check() stops its next call
    call('start_job', 'last', 'started');
    const raised = [0, 1, 2].flatMap(() => call('check_job', 'last-job', 'pending'));
    expect(raised.filter((f) => f.kind === 'stuck' && f.isNew).map((f) => f.firstSpanId)).toEqual([hex(n - 2)]);
    expect(g.check({ sessionId: 's', tool: 'check_job', argsHash: 'last-job' })).toMatchObject({ kind: 'stuck', firstSpanId: hex(n - 2), repeats: 3 });
    expect(g.check({ sessionId: 's', tool: 'check_job', argsHash: hex(3e9) })).toBeUndefined();
  });

  it('an error loop under way stays through the pruning: check() stops its call, and it is still taken back', () => {
    const g = new LoopGuard({ params: { ...NO_BUDGETS, budgetMaxCalls: 100_000 } });
    let n = 0;
    const ok = (tool: string, args: string, result: string) => g.observe({ sessionId: 's', tool, argsHash: args, resultHash: result, status: 'ok', ts: T0 + n, spanId: hex(++n) });
    const fail = (tool: string, args: string) =>
      g.observe({ sessionId: 's', tool, argsHash: args, status: 'error', errorType: 'Error', errorMessage: 'permission denied', ts: T0 + n, spanId: hex(++n) });
    // deploy fails four times with other calls in between: an error loop
    for (let i = 0; i < 4; i++) {
      fail('deploy', 'prod');
      ok('read', hex(i), hex(i));
    }
    expect(g.check({ sessionId: 's', tool: 'deploy', argsHash: 'prod' })?.kind).toBe('error_loop');
    // then 2,000 stuck polls between which deploy is not called
    for (let r = 0; r < 2000; r++) for (let i = 0; i < 3; i++) ok('poll', hex(1e6 + r), hex(2e6 + r));
    // the error loop is still there (its record of the error holds it), also for check()
    expect(g.findings('s').filter((f) => f.kind === 'error_loop')).toHaveLength(1);
    fail('deploy', 'prod');
    expect(g.check({ sessionId: 's', tool: 'deploy', argsHash: 'prod' })?.kind).toBe('error_loop');
    // the call succeeds: its failures were got past, the finding is taken back and the count kept right
    ok('deploy', 'prod', 'deployed');
    expect(g.findings('s').filter((f) => f.kind === 'error_loop')).toHaveLength(0);
    const kept = g.findings('s').length;
    expect(kept).toBeLessThanOrEqual(2 * MAX_ENDED_FINDINGS + 1024);
    expect(g.findings('s').filter((f) => f.kind === 'stuck').length).toBeLessThanOrEqual(2 * MAX_ENDED_FINDINGS);
  });
});

