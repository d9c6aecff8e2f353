// The provisioned alert rules stay quiet on clean agent sessions (pagination, reading
// different files, polling whose result changes, a retry that then succeeds) with no loop
// findings and no loop spans. When the detector engine exists it runs on the data first.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDetectors } from '../../collector/src/detect/run-detectors.js';
import { buildSession as buildCalls, insertSession } from '../detectors/helpers.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { evaluateRule } from './alerts.js';
import { alertRules } from './files.js';
import { cleanSessions, detectorEngineAvailable, runDetectorEngine, sendSessions } from './seed.js';

let tc: TestCollector;

beforeAll(async () => {
  tc = await startTestCollector();
  await sendSessions(tc, cleanSessions(new Date()));
  if (detectorEngineAvailable()) await runDetectorEngine(tc);
}, 120_000);

afterAll(async () => {
  await tc?.close();
});

describe('alert rules on clean sessions', () => {
  it('have data to look at', async () => {
    const [row] = await tc.rows<{ n: string }>('SELECT toString(count()) AS n FROM agent_tool_calls FINAL');
    expect(Number(row!.n)).toBeGreaterThan(50);
  });

  for (const rule of alertRules()) {
    it(`${rule.title}: no instance fires`, async () => {
      const instances = await evaluateRule(tc, rule);
      expect(instances.filter((i) => i.firing)).toEqual([]);
    });
  }

  it('a config read again before each edit (an info-level redundant finding, not a loop) does not page as a loop', async () => {
    const client = tc.collector.store.client;
    await insertSession(client, buildCalls('alert-reread', [0, 1, 2].flatMap((i) => [
      { tool: 'read_config', args: { path: 'app.yaml' }, result: 'same config' },
      { tool: 'edit_file', args: { path: `src/f${i}.ts` }, result: `patched ${i}` },
    ])));
    await runDetectors(client, { params: { watermarkOverlapS: 0 } });
    const found = await tc.rows<{ detector: string; severity: string }>(`SELECT detector, severity FROM agent_findings FINAL WHERE session_id = 'alert-reread'`);
    expect(found).toEqual([{ detector: 'redundant', severity: 'info' }]);
    const rule = alertRules().find((r) => r.uid === 'loopwatch-loop-detected')!;
    expect((await evaluateRule(tc, rule)).filter((i) => i.firing)).toEqual([]);
  });
});
