// (7) Graceful shutdown: SIGTERM during sustained ingest stops accepting, flushes the spool into
// the store and exits 0; every acknowledged span is stored exactly once and the spool is empty.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, postProto, queryDir, range, startProcess, toolSpansRequest } from './helpers.js';

let dataDir: string;
beforeAll(() => {
  ensureBuilt();
  dataDir = mkdtempSync(join(tmpdir(), 'lw-safety-shutdown-'));
});
afterAll(() => {
  rmSync(dataDir, { recursive: true, force: true });
});

describe('SIGTERM', () => {
  it('stops accepting, flushes the spool into the store, exits 0', async () => {
    const p = await startProcess(dataDir, { LOOPWATCH_LOG_LEVEL: 'info' });
    const acked = new Set<string>();
    let next = 0;
    let acks = 0;
    let termAt = -1;
    let stopped = false;
    const worker = async () => {
      while (!stopped) {
        const { body, spanIds } = toolSpansRequest(range(50, next, 200));
        next += 200;
        try {
          const res = await postProto(p.url, body);
          await res.arrayBuffer();
          if (res.status === 200) {
            for (const id of spanIds) acked.add(id);
            if (++acks === 60) {
              termAt = Date.now();
              p.child.kill('SIGTERM');
            }
          } else {
            throw new Error(`unexpected ${res.status}`);
          }
        } catch (err) {
          if (termAt < 0) throw err;
          stopped = true; // refused or reset: the collector stopped accepting
        }
      }
    };
    const [exit] = await Promise.all([p.exited, ...Array.from({ length: 4 }, worker)]);
    expect(exit.code).toBe(0);
    expect(Date.now() - termAt).toBeLessThan(30_000);
    expect(p.output()).toMatch(/shutting down: stop accepting, flush spool to store/);
    expect(p.output()).toMatch(/stopped: every acknowledged span is in the store/); // and says so
    // stdout is the CLI's: one JSON document, the logs on stderr
    expect(p.stdout().trim().split('\n').map((l) => Object.keys(JSON.parse(l) as object))).toEqual([['url', 'otlp_traces_endpoint', 'otlp_grpc', 'tls', 'tls_client_ca', 'store', 'store_location']]);
    expect(readdirSync(join(dataDir, 'spool')).filter((n) => n.startsWith('seg-'))).toEqual([]);
    const stored = new Map(
      queryDir<{ id: string; n: string }>(dataDir, "SELECT SpanId AS id, count() AS n FROM otel_traces WHERE startsWith(SpanId, '00000033') GROUP BY SpanId").map((r) => [r.id, Number(r.n)]),
    );
    console.log(`SIGTERM after 60 acks: ${acked.size} spans acknowledged, ${stored.size} stored, exit ${exit.code} in ${Date.now() - termAt} ms`);
    expect(acked.size).toBeGreaterThanOrEqual(60 * 200);
    expect([...acked].filter((id) => stored.get(id) !== 1)).toEqual([]);
    expect([...stored.values()].filter((n) => n !== 1)).toEqual([]);
  }, 120_000);
});
