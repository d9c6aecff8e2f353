// The status (GET /api/v1/status, `loopwatch status`, a health check) says when ingest or storing
// is failing now, not only what piled up: a spool that cannot write (disk full), a spool full of
// what the store has not taken, inserts that keep failing. Each is cleared when it stops: a
// refusal after five minutes, failing inserts at the next insert that succeeds. A real collector;
// the events are its own counters going up, as the ingest path and the loader raise them (a full
// disk or a failing store cannot be made here without root; outage-server.test.ts fills a real
// spool).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

let tc: TestCollector;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
});
afterAll(async () => {
  await tc?.close();
});

const status = async () => (await (await fetch(`${tc.url}/api/v1/status`)).json()) as { healthy: boolean; problems: string[] };

describe('status problems of ingest and storing', () => {
  it('healthy at first; a spool write failure, a full spool and failing inserts each make a problem', async () => {
    expect(await status()).toEqual(expect.objectContaining({ healthy: true, problems: [] }));
    const m = tc.collector.metrics;
    m.inc('loopwatch_spool_write_failures_total');
    m.inc('loopwatch_requests_spool_full_total', 'grpc');
    m.inc('loopwatch_insert_failures_total');
    const s = await status();
    expect(s.healthy).toBe(false);
    expect(s.problems).toEqual([
      expect.stringMatching(/^the spool could not write requests \(disk full or failing; last at \d{4}-.*Z\): they were answered 503/),
      expect.stringMatching(/^the spool was full \(last at \d{4}-.*Z\): requests were answered 503/),
      expect.stringMatching(/^inserts into the store are failing \(last at \d{4}-.*Z, retried\): acknowledged spans wait in the spool/),
    ]);
  });

  it('failing inserts stop being a problem once an insert succeeds', async () => {
    await new Promise((r) => setTimeout(r, 5)); // a later millisecond than the failure
    tc.collector.metrics.add('loopwatch_spans_inserted_total', 10);
    expect((await status()).problems.some((p) => p.startsWith('inserts into the store are failing'))).toBe(false);
  });
});
