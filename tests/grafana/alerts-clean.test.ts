// The provisioned alert rules stay quiet on clean agent sessions (pagination, reading
// different files, polling whose result changes, a retry that then succeeds) with no loop
// findings and no loop spans. When the detector engine exists it runs on the data first.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
});
