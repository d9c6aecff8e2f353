// haltSignal(): an AbortSignal that ends a run once the model asks for a stopped call again (the
// frameworks hand a halted call back to the model as a tool error), and loopGuard(): the running
// guard, also the one LOOPWATCH_GUARD started. The real guard on traced tool calls.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { packageRoot } from '../../collector/src/paths.js';
import { traceTool, withSession } from '../../instrumentation/src/api.js';
import { enableLoopGuard, loopGuard, warnOnlyFromEnv, type LoopGuardHandle } from '../../instrumentation/src/guard/enable.js';
import { haltSignal } from '../../instrumentation/src/guard/halt-signal.js';
import { LoopDetectedError } from '../../instrumentation/src/guard/loop-guard.js';
import { assertBuilt } from '../cli/helpers.js';

let handle: LoopGuardHandle | undefined;
afterEach(() => handle?.disable());

const search = traceTool('search_docs', async (q: string) => `no results for ${q}`);

/** `n` identical searches in `session`, each stopped one caught; the signal made at the start. */
async function run(session: string, n: number, opts?: Parameters<typeof haltSignal>[0]) {
  return withSession(session, async () => {
    const signal = haltSignal(opts);
    const abortedAt: number[] = [];
    const outcomes: string[] = [];
    for (let i = 0; i < n; i++) {
      try {
        await search('exit vim');
        outcomes.push('ran');
      } catch (err) {
        outcomes.push(err instanceof LoopDetectedError ? err.finding.kind : String(err));
      }
      if (signal.aborted && !abortedAt.length) abortedAt.push(i + 1);
    }
    return { signal, outcomes, abortedAt: abortedAt[0] };
  });
}

describe('haltSignal', () => {
  it('aborts at the second stop of the session, its reason the stopped call\'s LoopDetectedError; other sessions\' stops do not count', async () => {
    handle = enableLoopGuard({ policy: 'halt', log: () => undefined });
    const other = await run(`hs-other-${Date.now()}`, 4); // one stop in another session
    expect(other.outcomes).toEqual(['ran', 'ran', 'ran', 'stuck']);
    expect(other.signal.aborted).toBe(false);
    const r = await run(`hs-${Date.now()}`, 6);
    expect(r.outcomes).toEqual(['ran', 'ran', 'ran', 'stuck', 'stuck', 'stuck']);
    expect(r.abortedAt).toBe(5);
    expect(r.signal.reason).toBeInstanceOf(LoopDetectedError);
    expect((r.signal.reason as LoopDetectedError).finding).toMatchObject({ kind: 'stuck', tools: ['search_docs'] });
  });

  it('a long run\'s signal keeps working while thousands of other runs make theirs (none is dropped for newer ones)', async () => {
    handle = enableLoopGuard({ policy: 'halt', maxSessions: 5000, log: () => undefined });
    const outcomes: string[] = [];
    const signal = await withSession(`hs-long-${Date.now()}`, async () => {
      const mine = haltSignal();
      for (let i = 0; i < 6; i++) {
        // 300 short runs between each of its calls, each with a signal of its own
        for (let k = 0; k < 300; k++) await withSession(`hs-short-${i}-${k}`, async () => void haltSignal());
        try {
          await search('exit vim');
          outcomes.push('ran');
        } catch (err) {
          outcomes.push((err as LoopDetectedError).finding.kind);
        }
      }
      return mine;
    });
    expect(outcomes).toEqual(['ran', 'ran', 'ran', 'stuck', 'stuck', 'stuck']);
    expect(signal.aborted).toBe(true);
  });

  it('stops: 1 aborts at the first stop; kinds abort at once; a runaway stop aborts at once by default', async () => {
    handle = enableLoopGuard({ policy: 'halt', log: () => undefined });
    expect((await run(`hs-one-${Date.now()}`, 5, { stops: 1 })).abortedAt).toBe(4);
    expect((await run(`hs-kind-${Date.now()}`, 5, { kinds: ['stuck'] })).abortedAt).toBe(4);
    handle.disable();
    const lines: string[] = [];
    handle = enableLoopGuard({ policy: 'halt', params: { budgetMaxCalls: 2 }, log: (line) => lines.push(line) });
    // three calls, over the budget of 2: the session runs away, and its next call is stopped
    const r = await run(`hs-runaway-${Date.now()}`, 5);
    expect(r.outcomes).toEqual(['ran', 'ran', 'ran', 'runaway', 'runaway']);
    expect(r.abortedAt).toBe(4);
    expect(lines.find((l) => l.startsWith('halted'))).toMatch(/^halted a search_docs call in session hs-runaway-\d+: it would continue the runaway session: Runaway session: /);
  });

  it('never aborts without stops (warn: nothing is stopped), and refuses a stops that is not a whole number from 1', async () => {
    handle = enableLoopGuard({ policy: 'warn', log: () => undefined });
    const r = await run(`hs-warn-${Date.now()}`, 8);
    expect(r.outcomes.every((o) => o === 'ran')).toBe(true);
    expect(r.signal.aborted).toBe(false);
    expect(() => haltSignal({ stops: 0 })).toThrow(/stops must be a whole number from 1/);
  });
});

describe('warnOnly', () => {
  it('a poll the guard only warns about keeps running (it may yet see the answer change); a blown budget still stops it', async () => {
    const lines: string[] = [];
    handle = enableLoopGuard({ policy: 'halt', warnOnly: ['check_ci'], params: { budgetMaxCalls: 8 }, log: (line) => lines.push(line) });
    let polls = 0;
    const checkCi = traceTool('check_ci', async (_job: string) => (++polls < 6 ? 'running' : 'passed'));
    const outcomes = await withSession(`wo-${Date.now()}`, async () => {
      const out: string[] = [];
      for (let i = 0; i < 10; i++) {
        try {
          out.push(await checkCi('job-1'));
        } catch (err) {
          out.push((err as LoopDetectedError).finding.kind);
        }
      }
      return out;
    });
    // stuck after three 'running', reported, not stopped: the sixth poll sees 'passed'; past 8 calls the budget stops it
    expect(outcomes).toEqual(['running', 'running', 'running', 'running', 'running', 'passed', 'passed', 'passed', 'passed', 'runaway']);
    expect(lines.some((l) => l.startsWith('stuck loop in session'))).toBe(true);
    // other tools are stopped as before
    expect((await run(`wo-other-${Date.now()}`, 4)).outcomes).toEqual(['ran', 'ran', 'ran', 'stuck']);
  });

  it('comes from LOOPWATCH_GUARD_WARN_ONLY', () => {
    expect(warnOnlyFromEnv({ LOOPWATCH_GUARD_WARN_ONLY: ' check_ci, wait_for_job ,' })).toEqual(['check_ci', 'wait_for_job']);
    expect(warnOnlyFromEnv({})).toEqual([]);
  });
});

describe('loopGuard()', () => {
  it('is the running guard: enableLoopGuard\'s, and the one LOOPWATCH_GUARD started at the import, whose sessions can then be ended', () => {
    handle = enableLoopGuard({ policy: 'warn', log: () => undefined });
    expect(loopGuard()).toBe(handle);
    handle.disable();
    expect(loopGuard()).toBeUndefined();
    assertBuilt();
    const index = JSON.stringify(join(packageRoot, 'dist', 'instrumentation', 'src', 'index.js'));
    const script = `
      import { loopGuard, traceTool, withSession, LoopDetectedError } from ${index};
      const search = traceTool('search_docs', async (q) => 'no results for ' + q);
      const out = [];
      await withSession('s', async () => {
        for (let i = 0; i < 4; i++) { try { await search('q'); out.push('ran'); } catch (e) { out.push(e instanceof LoopDetectedError ? 'halt' : String(e)); } }
        loopGuard().guard.end('s');
        try { await search('q'); out.push('ran'); } catch { out.push('halt'); }
      });
      process.stdout.write(JSON.stringify({ policy: loopGuard()?.policy, out }));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: packageRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LOOPWATCH_GUARD: 'halt', LOOPWATCH_INSTRUMENTATION: 'off', LOOPWATCH_DETECTORS: '' },
    });
    expect(JSON.parse(out)).toEqual({ policy: 'halt', out: ['ran', 'ran', 'ran', 'halt', 'ran'] });
  });
});
