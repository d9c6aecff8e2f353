// bench/fuzz: the ingest fuzzer at volume. Random, mutated and odd-valued OTLP protobuf / JSON
// bodies (some gzipped; tests/safety/fuzz-cases.ts) against the real collector app in process
// (real spool with fdatasync, loader, embedded ClickHouse). Passes when every answer is 2xx/4xx
// and everything acknowledged reaches the store (no quarantined rows, dropped = 0).
// Usage: npm run fuzz [-- --cases 100000 --seed 1 --concurrency 16]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import fc from 'fast-check';
import { createCollector } from '../collector/src/collector.js';
import { loadConfig } from '../collector/src/config.js';
import { acceptable, fuzzCase, send } from '../tests/safety/fuzz-cases.js';

const { values } = parseArgs({
  options: {
    cases: { type: 'string', default: '100000' },
    seed: { type: 'string', default: String(Date.now() % 2 ** 31) },
    concurrency: { type: 'string', default: '16' },
  },
});
const CASES = Number(values.cases);
const SEED = Number(values.seed);
const CONCURRENCY = Number(values.concurrency);
const CHUNK = 1000;

const dataDir = mkdtempSync(join(tmpdir(), 'lw-fuzz-'));
const collector = await createCollector(loadConfig({ port: 0, dataDir, logLevel: 'error', detect: { enabled: false } }, {}));
const statuses = new Map<number, number>();
const kinds = new Map<string, number>();
const failures: string[] = [];
const t0 = performance.now();
let done = 0;
for (let chunk = 0; done < CASES; chunk++) {
  const cases = fc.sample(fuzzCase, { numRuns: Math.min(CHUNK, CASES - done), seed: SEED + chunk });
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < cases.length) {
        const c = cases[next++]!;
        kinds.set(c.kind, (kinds.get(c.kind) ?? 0) + 1);
        try {
          const a = await send(collector.app, c);
          statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
          if (!acceptable(a.status)) failures.push(`${c.kind} gzip=${c.gzip} -> ${a.status} ${a.text.slice(0, 200)} body=${Buffer.from(c.body).toString('base64').slice(0, 400)}`);
        } catch (err) {
          failures.push(`${c.kind} threw ${(err as Error).stack}`);
        }
      }
    }),
  );
  done += cases.length;
  if (chunk % 10 === 9) process.stderr.write(`${done} cases, ${Math.round(done / ((performance.now() - t0) / 1000))}/s\n`);
}
await collector.flush();
const seconds = (performance.now() - t0) / 1000;
const quarantined = await collector.metrics.value('loopwatch_spool_quarantined_segments_total');
const dropped = await collector.metrics.value('loopwatch_spans_dropped_total');
const accepted = await collector.metrics.value('loopwatch_spans_accepted_total');
const inserted = await collector.metrics.value('loopwatch_spans_inserted_total');
await collector.close();
rmSync(dataDir, { recursive: true, force: true });

const result = {
  cases: done, seed: SEED, seconds: Math.round(seconds), casesPerSec: Math.round(done / seconds),
  statuses: Object.fromEntries(statuses), kinds: Object.fromEntries(kinds),
  spansAccepted: accepted, spansInserted: inserted, spansDropped: dropped, quarantinedSegments: quarantined,
  failures: failures.length,
};
process.stdout.write(JSON.stringify(result, null, 2) + '\n');
for (const f of failures.slice(0, 20)) process.stdout.write(`FAIL ${f}\n`);
const ok = failures.length === 0 && dropped === 0 && quarantined === 0 && accepted === inserted;
process.stdout.write(ok ? 'fuzz: OK\n' : 'fuzz: FAILED\n');
process.exit(ok ? 0 : 1);
