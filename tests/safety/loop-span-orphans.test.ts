// A detector pass writes a finding's loop span first and then the finding. A pass that dies in
// between (kill -9) leaves loop spans whose findings were never stored; the next pass stores
// those findings again, under the same loop span ids, in a set of findings that differs (calls
// arrived meanwhile), so its insert token did not drop them: the trace held the loop twice,
// with two detected_at (an alert keyed on it could page again). The death is recreated as its
// state: the findings taken back, the store opened again by a new collector on the same directory.
import { rmSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { runDetectors } from '../../collector/src/detect/run-detectors.js';
import { buildSession, insertSession, times } from '../detectors/helpers.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

const open: TestCollector[] = [];
const dirs: string[] = [];
afterAll(async () => {
  for (const tc of open) await tc.collector.close().catch(() => undefined);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('loop spans of a pass that died before its findings were stored', () => {
  it('are replaced, not doubled, when the next process stores those findings', async () => {
    const first = await startTestCollector({ detect: { enabled: false } });
    open.push(first);
    dirs.push(first.dataDir);
    await insertSession(first.collector.store.client, buildSession('orphan-a', times(5, { tool: 'write_file', args: { path: 'a.ts' }, result: 'ok' })));
    const r1 = await runDetectors(first.collector.store.client);
    expect(r1.errors).toEqual({});
    expect(r1.newFindings).toBeGreaterThan(0);
    // the state a pass leaves that died after its loop spans: no findings, its watermarks not moved
    await first.collector.store.client.command({ query: 'DELETE FROM agent_findings WHERE 1' });
    await first.collector.store.client.command({ query: 'TRUNCATE TABLE loopwatch_detector_state' });
    await first.collector.close();
    open.pop();

    const second = await startTestCollector({ detect: { enabled: false }, dataDir: first.dataDir });
    open.push(second);
    dirs.push(second.dataDir);
    const client = second.collector.store.client;
    // meanwhile another loop: this pass's set of findings is not the dead pass's
    await insertSession(client, buildSession('orphan-b', times(5, { tool: 'read_file', args: { path: 'b.ts' }, result: 'same' })));
    const r2 = await runDetectors(client);
    expect(r2.errors).toEqual({});
    const [n] = await second.rows<{ rows: string; ids: string; findings: string }>(
      `SELECT toString(count()) AS rows, toString(uniqExact(SpanId)) AS ids,
              (SELECT toString(count()) FROM agent_findings FINAL) AS findings
       FROM otel_traces WHERE SpanName = 'loopwatch.loop'`,
    );
    expect(Number(n!.findings)).toBeGreaterThan(r1.newFindings);
    expect(n!.rows).toBe(n!.ids);
    expect(n!.ids).toBe(n!.findings);
  }, 120_000);
});
