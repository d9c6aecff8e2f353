// `loopwatch session <id>` marks the calls each finding is made of: with a real collector
// (detectors on), Loopwatch's SDK exporting a traced tool over OTLP, and the compiled CLI.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { traceTool, withSession } from '../../instrumentation/src/api.js';
import { startLoopwatch, type LoopwatchHandle } from '../../instrumentation/src/sdk.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { assertBuilt, cli, until } from './helpers.js';

let tc: TestCollector;
let lw: LoopwatchHandle;

beforeAll(async () => {
  assertBuilt();
  tc = await startTestCollector({ detect: { enabled: true, intervalMs: 200 } });
  lw = startLoopwatch({ endpoint: tc.url, serviceName: 'marks-agent' });
}, 60_000);
afterAll(async () => {
  await lw?.shutdown();
  await tc?.close();
});

/** Once the detectors found `detector` in the session: per tool call, whether `loopwatch session --json` marks it part of it. */
async function marksOf(session: string, detector: string): Promise<boolean[]> {
  await lw.flush();
  await tc.collector.flush();
  const api = `${tc.url}/api/v1/findings?session=${encodeURIComponent(session)}`;
  await until(async () => ((await (await fetch(api)).json()) as { findings: Array<{ detector: string }> }).findings.some((f) => f.detector === detector));
  const r = await cli(['session', session, '--json', '--url', tc.url]);
  expect(r.code, r.stderr).toBe(0);
  const d = JSON.parse(r.stdout) as { calls: Array<{ kind: string; loops: string[] }> };
  return d.calls.filter((c) => c.kind === 'tool').map((c) => c.loops.includes(detector));
}

describe('loopwatch session: loop marks', () => {
  it('a redundant read is marked on the calls that repeat it, not on reads of other files in between', async () => {
    const session = `marks-${Date.now()}`;
    const readFile = traceTool('read_file', async (args: { path: string }) => `contents of ${args.path}`);
    await withSession(session, async () => {
      for (const path of ['a.ts', 'b.ts', 'a.ts', 'c.ts', 'a.ts', 'd.ts']) await readFile({ path });
    });
    expect(await marksOf(session, 'redundant')).toEqual([true, false, true, false, true, false]);

    // a page that starts after the finding's first call: still only the reads of a.ts
    const paged = await cli(['session', session, '--json', '--url', tc.url, '--offset', '3']);
    const pagedCalls = (JSON.parse(paged.stdout) as { calls: Array<{ kind: string; loops: string[] }> }).calls.filter((c) => c.kind === 'tool');
    expect(pagedCalls.map((c) => c.loops.includes('redundant'))).toEqual([false, true, false]); // c.ts, a.ts, d.ts
    // further on in the session: times still from its start; past its end, said
    const later = await cli(['session', session, '--url', tc.url, '--offset', '3']);
    const firstShown = later.stdout.split('\n').find((l) => /^\S*\s+4 /.test(l) || /^\s+4 /.test(l))!;
    expect(firstShown).toBeDefined();
    expect(firstShown).not.toMatch(/\s\+0µs\s/);
    const past = await cli(['session', session, '--url', tc.url, '--offset', '100']);
    expect(past.code).toBe(0);
    expect(past.stdout).toContain('no calls from --offset 100: the session has 6 calls');
  }, 90_000);

  it('an error loop is marked on the failures of its error only, not on other failures of the tool', async () => {
    const session = `marks-err-${Date.now()}`;
    let round = 0;
    const dbQuery = traceTool('db_query', async (args: { sql: string }) => {
      if (args.sql.startsWith('select')) throw new Error('permission denied for table users');
      throw new Error(`syntax error at or near "updat${round}"`);
    });
    const listDir = traceTool('list_dir', async (args: { path: string }) => [`${args.path}/a`]);
    await withSession(session, async () => {
      for (round = 0; round < 4; round++) {
        await dbQuery({ sql: `select * from users where id = ${round}` }).catch(() => undefined);
        await dbQuery({ sql: `updat${round} users` }).catch(() => undefined);
        await listDir({ path: `dir${round}` });
      }
    });
    expect(await marksOf(session, 'error_loop')).toEqual([true, false, false, true, false, false, true, false, false, true, false, false]);
  }, 90_000);
});

