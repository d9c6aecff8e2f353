// A detector's `-- loopwatch: when` condition lets a pass skip it when the calls cannot hold
// its loop; it never hides a loop that is there.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadDetectorFiles, runDetectors } from '../../collector/src/detect/run-detectors.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { buildSession, insertSession, times } from './helpers.js';

let tc: TestCollector;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
  const client = tc.collector.store.client;
  await insertSession(client, buildSession('cond-clean', Array.from({ length: 6 }, (_, i) => ({ tool: 'read_file', args: { path: `f${i}.ts` }, result: `c${i}` }))));
  await insertSession(client, buildSession('cond-stuck', times(4, { tool: 'read_file', args: { path: 'same.ts' }, result: 'same' })));
});
afterAll(async () => {
  await tc?.close();
});

describe('detector conditions', () => {
  it('every detector over the calls declares one', () => {
    for (const f of loadDetectorFiles().filter((d) => d.params.includes('calls'))) expect(f.when, f.name).not.toBeNull();
  });

  it('skips the detectors that cannot fire and still finds the loop', async () => {
    const r = await runDetectors(tc.collector.store.client, { full: true });
    expect(r.errors).toEqual({});
    // no failure and no budget crossed: those detectors are not run; nor oscillation, which the
    // stuck run's A A A A does not pass (its calls repeat the one two back, but also the one before)
    expect(r.skipped).toEqual(expect.arrayContaining(['retry_storm', 'error_loop', 'runaway', 'oscillation']));
    // the stuck run is found by the detectors that run
    expect(r.skipped).not.toContain('stuck');
    expect(r.skipped).not.toContain('repeat');
    expect(r.perDetector.stuck).toBe(1);
    expect(r.perDetector.redundant).toBe(1);
  });
});
