// Moves sealed spool segments into otel_traces, oldest first, one INSERT per segment with the
// segment's deduplication token: a crash between the INSERT and the delete replays the segment
// and the store drops the copy. A store that is down is retried with backoff, forever. A segment
// the store rejects as data is split in halves, recursively, each half inserted with a token
// derived from the segment's (so a replay stays idempotent), until only the rows the store
// refuses are left: those go to spool/quarantine/<segment>.rejected (kept, logged, counted as
// dropped), and every other row of the segment is stored. One bad row never blocks the spool.
import { readFile } from 'node:fs/promises';
import type { ClickHouseClient } from '@clickhouse/client';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { insertSpanRows, isDiskFull, type InsertSettings } from '../store/client.js';
import { repairSegment } from './repair.js';
import { readRecords, type SealedSegment, type Spool } from './spool.js';

const MAX_DATA_FAILURES = 5;

/** ClickHouse error codes that mean "this data cannot be inserted", not "the store is unwell". */
const DATA_ERROR_CODES = new Set([
  '6', '25', '26', '27', '32', '33', '36', '38', '41', '43', '53', '62', '69', '70', '72', '117', '130', '131', '144',
  '190', '306', '321', '349', '395', '407',
]);

function isDataError(err: unknown): boolean {
  const code = (err as { code?: unknown }).code;
  return code !== undefined && DATA_ERROR_CODES.has(String(code));
}

/** The settings every spool segment is inserted with (bench/ingest uses them for its engine ceiling too). */
export function spanInsertSettings(token: string): InsertSettings {
  return {
    insert_deduplication_token: token,
    deduplicate_blocks_in_dependent_materialized_views: 1,
    date_time_input_format: 'best_effort',
    // A segment's spans may span many days (backfills, skewed clocks): one partition per
    // day must not make the store refuse the segment (found by fuzzing; it wedged the loader).
    max_partitions_per_insert_block: '0',
    // Tool arguments with a key twice ({"path":"a","path":"b"}, which models write now and then)
    // made the views' JSON cast fail the whole row: an acknowledged span quarantined, and the
    // segment split row by row. The first value is kept (the views hash the canonical text).
    type_json_skip_duplicated_paths: 1,
  };
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
    // inserts failed in a row: the first that works again after them is said (the warnings stop)
    let failing = 0;
    for (;;) {
      const seg = await this.spool.next(this.abort.signal);
      if (!seg) return;
      try {
        await this.load(seg);
        if (failing > 0) this.log.info({ failedAttempts: failing, segmentsLeft: this.spool.sealedCount }, 'inserts into the store work again: loading the spool');
        failing = 0;
        backoff = 100;
        dataFailures = 0;
        if (this.spool.sealedCount === 0) for (const w of this.idleWaiters.splice(0)) w();
      } catch (err) {
        if (this.abort.signal.aborted) return;
        if (isDataError(err) && ++dataFailures >= MAX_DATA_FAILURES) {
          // Acknowledged spans that will not reach the store unless a human re-feeds the file.
          const rows = await readFile(seg.path).then((b) => readRecords(b).records.reduce((n, r) => n + countLines(r), 0), () => 0);
          const where = await this.spool.quarantine(seg);
          this.metrics.inc('loopwatch_spool_quarantined_segments_total');
          this.metrics.add('loopwatch_spans_dropped_total', rows);
          this.log.error({ err, segment: where }, 'store rejects segment as data; quarantined it for inspection');
          dataFailures = 0;
          continue;
        }
        seg.mayBePartial = true; // the failed INSERT may have reached some tables
        failing++;
        this.metrics.inc('loopwatch_insert_failures_total');
        const message = (err as Error).message;
        this.log.warn({ err: message, retryInMs: backoff },
          isDiskFull(message)
            ? 'insert into store failed: the disk of the store is full; free space on it (the spool keeps what was acknowledged); will retry'
            : 'insert into store failed; will retry');
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, this.opts.maxBackoffMs ?? 10_000);
      }
    }
  }

  private async load(seg: SealedSegment): Promise<void> {
    const buf = await readFile(seg.path);
    const { records, corrupt, unreadableBytes } = readRecords(buf);
    const started = performance.now();
    let rows = 0;
    for (const r of records) rows += countLines(r);
    let rejected: Buffer[] = [];
    // the rows one by one, split once: the refused ones are told apart from the rest by identity
    let lines: Buffer[] | undefined;
    const linesOf = () => (lines ??= splitLines(records));
    if (rows > 0) {
      try {
        await this.insert(records, seg.token);
      } catch (err) {
        if (!isDataError(err)) throw err;
        this.log.warn({ segment: seg.name, code: (err as { code?: unknown }).code, err: (err as Error).message }, 'store refuses a row of the segment; isolating it');
        rejected = await this.insertSplitting(linesOf(), seg.token);
      }
    }
    if (seg.mayBePartial && rows > rejected.length) {
      const refused = new Set(rejected);
      const stored = linesOf().filter((l) => !refused.has(l));
      const repaired = await repairSegment(this.client, stored, seg.token, (rows, token) => this.insert(rows, token));
      if (repaired.traces > 0 || Object.keys(repaired.derived).length > 0) {
        this.metrics.inc('loopwatch_spool_repaired_segments_total');
        this.log.warn({ segment: seg.name, ...repaired }, 'a replayed segment was missing from some tables (interrupted INSERT); inserted what was missing');
      }
    }
    this.metrics.observe('loopwatch_insert_duration_seconds', (performance.now() - started) / 1000);
    this.metrics.add('loopwatch_spans_inserted_total', rows - rejected.length);
    if (rejected.length > 0) {
      const where = await this.spool.quarantineRows(seg, rejected);
      this.metrics.add('loopwatch_spans_dropped_total', rejected.length);
      this.log.error({ segment: seg.name, rows: rejected.length, file: where }, 'store refused rows as data; kept them in quarantine, stored the rest');
    }
    if (corrupt) {
      // Written with fdatasync and checksummed: only disk corruption gets here. Keep the bytes.
      // (Said and counted once the records around the damage are stored: not again on each retry.)
      this.log.error({ segment: seg.name, unreadableBytes, totalBytes: buf.length, records: records.length },
        'spool segment has unreadable records (disk corruption): stored the records around them, keeping the segment in spool/quarantine');
      this.metrics.inc('loopwatch_spool_corrupt_segments_total');
      this.metrics.add('loopwatch_spool_unreadable_bytes_total', unreadableBytes);
      await this.spool.quarantine(seg);
    } else {
      await this.spool.release(seg);
    }
  }

  private async insert(chunks: Buffer[], token: string): Promise<void> {
    // The records already are JSONCompactEachRow text: handed to the store as bytes.
    await insertSpanRows(this.client, chunks, spanInsertSettings(token));
  }

  /** Inserts what the store accepts of `lines` (halving around refusals); returns the refused lines. */
  private async insertSplitting(lines: Buffer[], token: string): Promise<Buffer[]> {
    const refused: Buffer[] = [];
    const go = async (part: Buffer[], tok: string): Promise<void> => {
      if (part.length === 0) return;
      try {
        await this.insert(part, tok);
      } catch (err) {
        if (!isDataError(err)) throw err; // store unwell: the whole segment is retried later
        if (part.length === 1) {
          refused.push(part[0]!);
          return;
        }
        const mid = part.length >> 1;
        await go(part.slice(0, mid), `${tok}.0`);
        await go(part.slice(mid), `${tok}.1`);
      }
    };
    const mid = lines.length >> 1;
    await go(lines.slice(0, mid), `${token}.0`);
    await go(lines.slice(mid), `${token}.1`);
    return refused;
  }
}

/** The rows (one JSON line each, newline included) of the records. */
function splitLines(records: Buffer[]): Buffer[] {
  const lines: Buffer[] = [];
  for (const r of records) {
    let start = 0;
    for (let i = r.indexOf(10); i !== -1; i = r.indexOf(10, start)) {
      lines.push(r.subarray(start, i + 1));
      start = i + 1;
    }
  }
  return lines;
}

function countLines(b: Buffer): number {
  let n = 0;
  for (let i = b.indexOf(10); i !== -1; i = b.indexOf(10, i + 1)) n++;
  return n;
}
