// (5) Fuzzing the ingest endpoint: random, mutated and odd-valued protobuf and JSON bodies
// (some gzipped) against the real app (in process, app.request; real spool, loader, chDB).
// Only 2xx/4xx, no crash; and everything acknowledged is insertable (no segment quarantined,
// dropped stays 0). bench/fuzz.ts runs the same cases at volume.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCollector, type Collector } from '../../collector/src/collector.js';
import { loadConfig } from '../../collector/src/config.js';
import { acceptable, fuzzCase, send } from './fuzz-cases.js';

const RUNS = Number(process.env.LOOPWATCH_FUZZ_RUNS ?? 3000);
let dataDir: string;
let collector: Collector;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'lw-safety-fuzz-'));
  collector = await createCollector(loadConfig({ port: 0, dataDir, logLevel: 'silent', detect: { enabled: false } }, {}));
});
afterAll(async () => {
  await collector.close();
  rmSync(dataDir, { recursive: true, force: true });
});

describe('fuzzing POST /v1/traces', () => {
  it(`${RUNS} random and mutated bodies: only 2xx/4xx, and all acknowledged rows insert`, async () => {
    const statuses = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(fuzzCase, async (c) => {
        const a = await send(collector.app, c);
        statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
        if (!acceptable(a.status)) throw new Error(`${c.kind}: ${a.status} ${a.text}`);
      }),
      { numRuns: RUNS, seed: Number(process.env.LOOPWATCH_FUZZ_SEED ?? 20261123) },
    );
    await collector.flush();
    console.log(`fuzz statuses: ${JSON.stringify(Object.fromEntries(statuses))}`);
    expect(statuses.get(200) ?? 0).toBeGreaterThan(RUNS / 20);
    expect(await collector.metrics.value('loopwatch_spool_quarantined_segments_total')).toBe(0);
    expect(await collector.metrics.value('loopwatch_spans_dropped_total')).toBe(0);
    expect(await collector.metrics.value('loopwatch_spans_inserted_total')).toBe(await collector.metrics.value('loopwatch_spans_accepted_total'));
  }, 180_000);
});
