// A fatal error ends the collector: V8 running out of heap aborts the process (SIGABRT). The
// embedded engine's handlers for fatal signals used to catch it and wait forever, so the
// collector hung holding its port and data directory, and a process manager never restarted it.
// Now it dies; restarted on the same directory, it stores what it had acknowledged.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, postProto, queryDir, range, startProcess, stopProcess, toolSpansRequest, waitDrained } from './helpers.js';

let dataDir: string;
beforeAll(() => {
  ensureBuilt();
  dataDir = mkdtempSync(join(tmpdir(), 'lw-safety-abort-'));
});
afterAll(() => {
  rmSync(dataDir, { recursive: true, force: true });
});

describe('a fatal signal', () => {
  it('SIGABRT ends the process (it does not hang); a restart on the same directory stores what was acknowledged', async () => {
    const p = await startProcess(dataDir);
    const { body, spanIds } = toolSpansRequest(range(71, 0, 50));
    expect((await postProto(p.url, body)).status).toBe(200);
    p.child.kill('SIGABRT');
    const ended = await Promise.race([p.exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), 20_000))]);
    if (ended === 'hung') p.child.kill('SIGKILL');
    expect(ended).toEqual({ code: null, signal: 'SIGABRT' });

    const again = await startProcess(dataDir);
    try {
      await waitDrained(again.url);
    } finally {
      await stopProcess(again);
    }
    const stored = queryDir<{ n: string }>(dataDir, `SELECT toString(count()) AS n FROM otel_traces WHERE SpanId IN (${spanIds.map((s) => `'${s}'`).join(',')})`);
    expect(Number(stored[0]!.n)).toBe(spanIds.length);
  }, 120_000);
});
