// Moves sealed spool segments into otel_traces, oldest first, one INSERT per segment with the
// segment's deduplication token: a crash between the INSERT and the delete replays the segment
// and the store drops the copy. A store that is down is retried with backoff, forever; only a
// segment the store rejects as data, repeatedly, is quarantined (kept on disk, logged, counted).
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { drainStream, type ClickHouseClient } from '@clickhouse/client';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { SPAN_INSERT_SQL } from '../ingest/span-rows.js';
import { readRecords, type SealedSegment, type Spool } from './spool.js';

const MAX_DATA_FAILURES = 5;

/** ClickHouse error codes that mean "this data cannot be inserted", not "the store is unwell". */
const DATA_ERROR_CODES = new Set(['6', '26', '27', '32', '38', '41', '53', '62', '69', '70', '72', '117', '130', '131', '144']);

function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code !== undefined && DATA_ERROR_CODES.has(String(code));
}

export interface LoaderOptions {
  maxBackoffMs?: number;
}

export class Loader {
  private running: Promise<void> | null = null;
  private readonly abort = new AbortController();
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly spool: Spool,
    private readonly client: ClickHouseClient,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly opts: LoaderOptions = {},
  ) {}

  start(): void {
    this.running ??= this.loop();
  }

  /** Resolves when every sealed segment so far is in the store (tests, shutdown). */
  async drained(): Promise<void> {
    await this.spool.seal();
    while (this.spool.sealedCount > 0) {
      await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    }
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  private async loop(): Promise<void> {
    let backoff = 100;
    let dataFailures = 0;
    for (;;) {
      const seg = await this.spool.next(this.abort.signal);
      if (!seg) return;
      try {
        await this.load(seg);
        backoff = 100;
        dataFailures = 0;
        if (this.spool.sealedCount === 0) for (const w of this.idleWaiters.splice(0)) w();
      } catch (err) {
        if (this.abort.signal.aborted) return;
        if (isDataError(err) && ++dataFailures >= MAX_DATA_FAILURES) {
          const where = await this.spool.quarantine(seg);
          this.metrics.inc('loopwatch_spool_quarantined_segments_total');
          this.log.error({ err, segment: where }, 'store rejects segment as data; quarantined it for inspection');
          dataFailures = 0;
          continue;
        }
        this.metrics.inc('loopwatch_insert_failures_total');
        this.log.warn({ err: (err as Error).message, retryInMs: backoff }, 'insert into store failed; will retry');
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, this.opts.maxBackoffMs ?? 10_000);
      }
    }
  }

  private async load(seg: SealedSegment): Promise<void> {
    const buf = await readFile(seg.path);
    const { records, corrupt, validBytes } = readRecords(buf);
    if (corrupt) {
      // Written with fdatasync and checksummed: only disk corruption gets here. Keep the bytes.
      this.log.error({ segment: seg.name, validBytes, totalBytes: buf.length }, 'spool segment has a corrupt record; loading the intact prefix');
      this.metrics.inc('loopwatch_spool_corrupt_segments_total');
    }
    const started = performance.now();
    let rows = 0;
    for (const r of records) rows += countLines(r);
    if (rows > 0) {
      // exec with a raw body: the records already are JSONCompactEachRow text (client.insert
      // would re-encode stream chunks as row objects).
      const result = await this.client.exec({
        query: SPAN_INSERT_SQL,
        values: Readable.from(records),
        clickhouse_settings: {
          insert_deduplication_token: seg.token,
          deduplicate_blocks_in_dependent_materialized_views: 1,
          date_time_input_format: 'best_effort',
        },
      });
      await drainStream(result.stream);
    }
    this.metrics.observe('loopwatch_insert_duration_seconds', (performance.now() - started) / 1000);
    this.metrics.add('loopwatch_spans_inserted_total', rows);
    if (corrupt) await this.spool.quarantine(seg);
    else await this.spool.release(seg);
  }
}

function countLines(b: Buffer): number {
  let n = 0;
  for (let i = b.indexOf(10); i !== -1; i = b.indexOf(10, i + 1)) n++;
  return n;
}
