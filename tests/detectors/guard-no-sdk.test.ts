// The loop guard in a process where no OpenTelemetry SDK runs (LOOPWATCH_INSTRUMENTATION=off and
// none of the application's): withSession still keeps agents apart, and calls outside any session
// are not lumped together. A fresh process (the compiled package): the OpenTelemetry API's global
// state is per process, and other test files register SDKs.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../collector/src/paths.js';
import { assertBuilt } from '../cli/helpers.js';

const dist = (p: string) => JSON.stringify(join(packageRoot, 'dist', 'instrumentation', 'src', p));

describe('loop guard without an OpenTelemetry SDK', () => {
  it('keeps sessions apart (one agent\'s calls do not spend another\'s budget), and skips calls it cannot place', () => {
    assertBuilt();
    const script = `
      import { traceTool, withSession } from ${dist('api.js')};
      import { enableLoopGuard, LoopDetectedError } from ${dist('guard/index.js')};
      const g = enableLoopGuard({ policy: 'halt', params: { budgetMaxCalls: 5 }, log: () => {} });
      const read = traceTool('read_file', async (p) => 'contents of ' + p);
      const run = (id) => withSession(id, async () => {
        const out = [];
        for (let i = 0; i < 4; i++) {
          try { await read(id + '/f' + i + '.ts'); out.push('ok'); } catch (e) { out.push(e instanceof LoopDetectedError ? 'halt' : String(e)); }
        }
        return out.join(' ');
      });
      const a = await run('user-a');
      const b = await run('user-b');
      // outside any session: 6 calls, each its own, none halted for the others
      const outside = [];
      for (let i = 0; i < 6; i++) { try { await read('x.ts'); outside.push('ok'); } catch { outside.push('halt'); } }
      process.stdout.write(JSON.stringify({ a, b, outside: outside.join(' '), findings: g.guard.findings().length }));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: packageRoot, encoding: 'utf8', env: { ...process.env, LOOPWATCH_GUARD: '', LOOPWATCH_DETECTORS: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    expect(JSON.parse(out)).toEqual({ a: 'ok ok ok ok', b: 'ok ok ok ok', outside: 'ok ok ok ok ok ok', findings: 0 });
  });

  it('stops a recursion at the depth budget (the depth is carried without the OpenTelemetry context), and sibling calls are not nested', () => {
    assertBuilt();
    const script = `
      import { traceTool, withSession } from ${dist('api.js')};
      import { enableLoopGuard, loopDetectedIn } from ${dist('guard/index.js')};
      enableLoopGuard({ policy: 'halt', params: { budgetMaxToolDepth: 5 }, log: () => {} });
      let deepest = 0;
      const solve = traceTool('solve', async (n) => { deepest = Math.max(deepest, n); return n >= 1000 ? n : await solve(n + 1); });
      let stopped;
      try { await withSession('deep', () => solve(1)); } catch (e) { stopped = loopDetectedIn(e)?.finding.message; }
      // ten calls one after another, each at depth 1: none stopped
      const read = traceTool('read_file', async (p) => 'contents of ' + p);
      const flat = await withSession('flat', async () => { for (let i = 0; i < 10; i++) await read('f' + i); return 'ok'; });
      process.stdout.write(JSON.stringify({ deepest, stopped, flat }));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: packageRoot, encoding: 'utf8', env: { ...process.env, LOOPWATCH_GUARD: '', LOOPWATCH_DETECTORS: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const got = JSON.parse(out) as { deepest: number; stopped: string; flat: string };
    expect(got.deepest).toBe(5);
    expect(got.stopped).toMatch(/solve would run at tool depth 6, over the budget of 5/);
    expect(got.flat).toBe('ok');
  });
});
