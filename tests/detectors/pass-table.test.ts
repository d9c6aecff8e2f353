// The runner's per-pass copy of the calls: the same findings whether a pass takes its sessions
// in one bucket or many, no copy left behind after a pass, and a copy left by a pass that died
// (older than an hour) dropped by the next one. The features the passes keep for full passes
// (agent_call_features) equal a recomputation, however a session's calls arrive.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDetectors, withCallsTable } from '../../collector/src/detect/run-detectors.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { buildSession, insertSession, insertSpans, times } from './helpers.js';

let tc: TestCollector;
const passTables = async () =>
  (await tc.rows<{ name: string }>("SELECT name FROM system.tables WHERE database = currentDatabase() AND startsWith(name, 'loopwatch_pass_') ORDER BY name")).map((r) => r.name);

beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
  const client = tc.collector.store.client;
  for (let i = 0; i < 12; i++) {
    await insertSession(client, buildSession(`bucket-${i}`, [
      { tool: 'read_file', args: { path: `a${i}.ts` }, result: `content ${i}` },
      ...times(4, { tool: 'run_tests', args: {}, result: 'same failure' }),
      ...times(6, { tool: 'fetch', args: { url: `u${i}` }, error: { type: 'HTTPError', message: '503 unavailable' } }),
    ]));
  }
});
afterAll(async () => {
  await tc?.close();
});

describe('pass table', () => {
  it('finds the same loops in one bucket and in many, and drops its copies', async () => {
    const stale = `loopwatch_pass_${Date.now() - 2 * 3600_000}_deadbeef`;
    await tc.collector.store.client.command({ query: `CREATE TABLE ${stale} (x UInt8) ENGINE = Memory` });

    const one = await runDetectors(tc.collector.store.client, { full: true });
    expect(one.errors).toEqual({});
    expect(one.perDetector.stuck).toBe(12);
    expect(one.perDetector.retry_storm).toBe(12);
    const many = await runDetectors(tc.collector.store.client, { full: true, callsPerBucket: 20 });
    expect(many.errors).toEqual({});
    expect(many.perDetector).toEqual(one.perDetector);
    expect(many.newFindings + many.grownFindings).toBe(0);

    expect(await passTables()).toEqual([]);
  });

  it('keeps each call\'s features as a recomputation has them, however the calls arrive', async () => {
    const client = tc.collector.store.client;
    const s = buildSession('arrivals', [
      ...times(3, { tool: 'run_tests', args: {}, result: 'same failure' }),
      { tool: 'edit_file', args: { path: 'a.ts' }, result: '' },
      ...times(3, { tool: 'fetch', args: { url: 'u' }, error: { type: 'HTTPError', message: '503 unavailable' } }),
      ...times(3, { tool: 'run_tests', args: {}, result: 'same failure' }),
    ]);
    const third = Math.ceil(s.rows.length / 3);
    // the middle of the session arrives last: its calls move the later calls' seq and flags
    for (const part of [s.rows.slice(0, third), s.rows.slice(2 * third), s.rows.slice(third, 2 * third)]) {
      await insertSpans(client, part);
      const r = await runDetectors(client);
      expect(r.errors).toEqual({});
    }
    const kept = await tc.rows("SELECT * FROM loopwatch_call_features WHERE session_id = 'arrivals' ORDER BY seq");
    const recomputed = await withCallsTable(client, { since: '0.000', until: (Date.now() / 1000 + 60).toFixed(3) }, (table) =>
      tc.rows("SELECT * FROM {table:Identifier} WHERE session_id = 'arrivals' ORDER BY seq", { table }));
    expect(recomputed.length).toBe(10);
    expect(kept).toEqual(recomputed);
    // and a full pass over the kept features finds what the detectors find on a recomputation
    const full = await runDetectors(client, { full: true });
    expect(full.errors).toEqual({});
    expect(full.newFindings + full.grownFindings).toBe(0);
    expect(await passTables()).toEqual([]);
  });
});
