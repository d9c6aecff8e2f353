// (2) Server mode with the server down: LOOPWATCH_CLICKHOUSE_URL points at a loopback port where
// nothing listens. The collector starts anyway (migrations retried in the background, the loader
// waits for the schema), acknowledges into the spool, answers 503 + Retry-After when it is full,
// and exits 0 on SIGTERM keeping the spool. The spool is store-agnostic: a collector started on
// the same data directory with a reachable store (here the embedded one) loads every span.
import { createServer } from 'node:net';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../cli/helpers.js';
import { ensureBuilt, postProto, queryDir, range, startProcess, stopProcess, toolSpansRequest, waitDrained } from './helpers.js';

let dataDir: string;
beforeAll(() => {
  ensureBuilt();
  dataDir = mkdtempSync(join(tmpdir(), 'lw-safety-server-down-'));
});
afterAll(() => {
  rmSync(dataDir, { recursive: true, force: true });
});

async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

const SPOOL_MAX = 1024 * 1024;

describe('server mode, server unreachable', () => {
  it('starts, spools, 503 + Retry-After when full, exits 0 on SIGTERM, and nothing acknowledged is lost', async () => {
    const port = await closedPort();
    const p = await startProcess(dataDir, {
      LOOPWATCH_CLICKHOUSE_URL: `http://127.0.0.1:${port}`,
      LOOPWATCH_SPOOL_MAX_BYTES: String(SPOOL_MAX),
      LOOPWATCH_SPOOL_SEGMENT_MAX_BYTES: String(128 * 1024),
      LOOPWATCH_SPOOL_SEGMENT_MAX_AGE_MS: '100',
    });
    const h = (await (await fetch(`${p.url}/healthz`)).json()) as { store: string; schema: string };
    expect(h).toMatchObject({ store: 'server', schema: 'pending' });

    const acked: string[] = [];
    let full: Response | null = null;
    let next = 0;
    for (let i = 0; i < 2000 && !full; i++) {
      const { body, spanIds } = toolSpansRequest(range(20, next, 100));
      next += 100;
      const res = await postProto(p.url, body);
      if (res.status === 200) acked.push(...spanIds);
      else if (res.status === 503) full = res;
      else throw new Error(`unexpected ${res.status}`);
    }
    expect(full).not.toBeNull();
    expect(full!.headers.get('retry-after')).toMatch(/^\d+$/);
    const metrics = await (await fetch(`${p.url}/metrics`)).text();
    expect(metrics).toMatch(/loopwatch_schema_ready 0/);
    expect(metrics).toMatch(/loopwatch_spool_bytes [1-9]/);
    // and `loopwatch status` says what is wrong, with exit code 1
    const status = await cli(['status', '--json', '--url', p.url]);
    expect(status.code).toBe(1);
    const st = JSON.parse(status.stdout) as { healthy: boolean; problems: string[]; spool: { bytes: number } };
    expect(st.healthy).toBe(false);
    expect(st.problems[0]).toMatch(/^the store is not reachable yet: spans are acknowledged into the spool/);
    expect(st.problems).toContainEqual(expect.stringMatching(/^the spool was full \(last at .*\): requests were answered 503/));
    expect(st.spool.bytes).toBeGreaterThan(0);

    const t0 = Date.now();
    const exit = await stopProcess(p, 'SIGTERM');
    expect(exit.code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(readdirSync(join(dataDir, 'spool')).filter((n) => n.endsWith('.sealed')).length).toBeGreaterThan(0);
    expect(p.output()).toMatch(/store unreachable at start/);
    expect(p.output()).toMatch(/"segments":[1-9]\d*.*"msg":"stopped: spool segments not yet in the store wait in the spool for the next start"/); // and says so

    // Recovery: the same spool, a store that works.
    const q = await startProcess(dataDir);
    await waitDrained(q.url);
    expect((await stopProcess(q)).code).toBe(0);
    const stored = new Map(
      queryDir<{ id: string; n: string }>(dataDir, "SELECT SpanId AS id, count() AS n FROM otel_traces WHERE startsWith(SpanId, '00000015') GROUP BY SpanId").map((r) => [r.id, Number(r.n)]),
    );
    console.log(`server down: ${acked.length} spans acknowledged into a ${SPOOL_MAX} byte spool, ${stored.size} loaded after recovery`);
    expect(acked.length).toBeGreaterThan(1000);
    expect(acked.filter((id) => stored.get(id) !== 1)).toEqual([]);
    expect(stored.size).toBe(acked.length);
  }, 120_000);
});
