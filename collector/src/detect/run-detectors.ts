// Runs every loop and waste detector (queries/detectors/*.sql) over the sessions that received
// calls since the last pass, stores new or grown findings in agent_findings, and writes each
// stored finding version as a `loopwatch.loop` span into the looping session's trace.
//
// ## Detector file contract
// A detector is one file `queries/detectors/<name>.sql` holding one SELECT; <name> ([a-z0-9_]+)
// becomes the finding's `detector`. Files starting with `_` are skipped.
//
// Parameters (ClickHouse `{name:Type}` placeholders; bind only what you use, an unknown one is
// an error):
//   {calls:Identifier}  the pass's copy of the per-call features (queries/features/
//       detector-calls.sql): one row per tool call, with precomputed keys and neighbour flags,
//       of the whole deduplicated history of every session with calls inserted since the
//       oldest detector watermark (re-examining a session is harmless: findings are
//       idempotent); on a full pass, a copy of the features earlier passes kept
//       (agent_call_features), the same columns for every session. The runner builds it once
//       per pass (in buckets of sessions when a pass is large) and every detector scans it, so
//       a detector pays for its own logic only; a detector that reads it runs once per bucket.
//   {since:DateTime64(3)}, {until:DateTime64(3)}  the pass's window of *insertion* time, for a
//       detector that reads other tables (degradation); such a detector runs once per pass.
//   every setting of queries/src/detector-defaults.ts in snake_case, e.g.
//       {repeat_min_run:UInt32}, {budget_max_cost_usd:Float64} (types: DETECTOR_PARAM_TYPES).
//
// `-- loopwatch: judged <expression>` (a detector that reads other tables): which of its stored
// findings a run judged again, over agent_findings' columns with the file's parameters; those
// it did not report are withdrawn (degradation: a model-day that got better).
//
// Columns, one row per finding (required: session_id, first_span_id, last_span_id, repeats):
//   session_id String, first_span_id String (with detector and session: the finding's identity,
//   so it must not move as the loop grows), last_span_id String, repeats UInt,
//   trace_id String, parent_span_id String (parent of the first looping call: where the loop
//   span hangs), service, agent, model String, tools Array(String),
//   first_ts, last_ts String (toString(DateTime64(9)): start of the first, end of the last call),
//   wasted_calls UInt, wasted_tokens, wasted_cost_usd, wasted_time_ns Float,
//   severity ('info' | 'warning' | 'critical'), message String (a sentence), details String (JSON).
// A finding is stored as a new version when repeats, wasted_calls or last_span_id change, or its
// waste figures (tokens, cost, time: LLM spans that arrived after the tool spans).
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClickHouseClient, ClickHouseSettings } from '@clickhouse/client';
import {
  DETECTOR_DEFAULTS,
  DETECTOR_PARAM_TYPES,
  resolveDetectorParams,
  sqlParamName,
  type DetectorParams,
} from '../../../queries/src/detector-defaults.js';
import { detectorFileNames, detectorsDir, queriesDir } from '../paths.js';
import { queryRows } from '../store/client.js';

export interface DetectorFile {
  name: string;
  sql: string;
  /** Placeholder names the file uses. */
  params: string[];
  /**
   * `-- loopwatch: hourly` in the file: it judges whole hours, so it runs on a full pass and
   * when the window crosses an hour boundary of the store's clock, and is skipped otherwise.
   */
  hourly: boolean;
  /**
   * `-- loopwatch: when <expression>` in a file that reads {calls}: an aggregate over the calls
   * that is false when the detector cannot find anything (a necessary condition, never a
   * sufficient one); with several such lines the file runs when any of them holds. The runner
   * evaluates every file's condition in one query per bucket and skips the files whose
   * condition is false: most incremental passes have nothing for most detectors.
   */
  when: string | null;
  /** Placeholder names the `when` condition uses. */
  whenParams: string[];
  /**
   * `-- loopwatch: judged <expression>` in a file that reads other tables: which of its stored
   * findings a pass that ran it judged again (an expression over agent_findings' columns, with
   * the file's parameters). Those it did not report again are withdrawn, as the per-call
   * detectors' are for the sessions they examined: a model-day that got better is no longer
   * reported as degraded.
   */
  judged: string | null;
}

export interface RunDetectorsOptions {
  params?: Partial<DetectorParams>;
  /** Ignore watermarks: examine every session (still no duplicate findings). */
  full?: boolean;
  /** End of the pass's window (default: the store's clock). */
  now?: Date;
  /** Directory of detector files (default queries/detectors). */
  dir?: string;
  /** Calls per bucket of sessions in one pass (default 1M); smaller buckets use less memory. */
  callsPerBucket?: number;
  /**
   * Stops the pass before its next query (a shutdown): it then rejects with PassStopped, having
   * moved no watermark, so the next pass examines its sessions again. A query under way finishes.
   */
  signal?: AbortSignal;
}

/** A pass stopped by its signal before it ended (see RunDetectorsOptions.signal). */
export class PassStopped extends Error {
  constructor() {
    super('detector pass stopped before it ended; the next pass examines its sessions again');
    this.name = 'PassStopped';
  }
}

export interface RunDetectorsResult {
  /** Findings the detectors report for the sessions examined (stored or already known). */
  findings: number;
  /** Findings stored for the first time. */
  newFindings: number;
  /** Known findings stored again as a higher version because the loop grew. */
  grownFindings: number;
  /**
   * Stored findings that the detectors no longer report on their session's whole history (a call
   * that arrived late moved the loop's first call or broke the run): deleted, with their loop spans.
   */
  withdrawnFindings: number;
  durationMs: number;
  /** Findings reported per detector. */
  perDetector: Record<string, number>;
  /** Sessions examined (with calls inserted since the oldest watermark). */
  sessions: number;
  /** Detectors that failed this pass (their watermark does not move), with the error. */
  errors: Record<string, string>;
  /** Detectors not run this pass: an hourly one between hours, or one whose `when` was false (per bucket). */
  skipped: string[];
}

export interface FindingRow {
  finding_id: string;
  version: number;
  detector: string;
  severity: string;
  detected_at: string;
  session_id: string;
  trace_id: string;
  service: string;
  agent: string;
  model: string;
  tools: string[];
  first_span_id: string;
  last_span_id: string;
  first_ts: string;
  last_ts: string;
  repeats: number;
  wasted_calls: number;
  wasted_tokens: number;
  wasted_cost_usd: number;
  wasted_time_ns: number;
  message: string;
  details: string;
}

// A full pass over many sessions is split so that one copy of the calls stays around this size
// (a few hundred bytes a call in memory; at most 1.5x it, see bucketsFor).
const CALLS_PER_BUCKET = 1_000_000;
// The features' watermark in loopwatch_detector_state (no detector is named so: names start with [a-z0-9]).
const FEATURES = '_features';
// A pass table older than this belongs to a pass that died (a crash mid-pass): dropped.
const STALE_PASS_TABLE_MS = 3600_000;

let sessionCalls: string | undefined;
/**
 * The SELECT of the deduplicated calls of the sessions with calls inserted in a window (and
 * bucket of sessions), queries/features/session-calls.sql; binds since, until, buckets, bucket.
 */
export function sessionCallsSql(): string {
  return (sessionCalls ??= readFileSync(join(queriesDir, 'features', 'session-calls.sql'), 'utf8').trim());
}

let detectorCalls: string | undefined;
/**
 * The SELECT of the per-call features, queries/features/detector-calls.sql, over a table of
 * sessionCallsSql()'s rows; binds session_calls (its name).
 */
export function detectorCallsSql(): string {
  return (detectorCalls ??= readFileSync(join(queriesDir, 'features', 'detector-calls.sql'), 'utf8').trim());
}

// The settings of a pass's queries. The engine compiles an expression (LLVM) the third time it
// sees it: the copy, the conditions and the detectors of a pass are large expressions, so the third
// pass after a start paid 0.2-0.4 s of compiling (an incremental pass of 0.7 s instead of
// 0.3 s), and neither an incremental nor a full pass measured faster compiled.
// The runaway detector's depth walk is a recursive query of up to 9,000 steps (queries/detectors/
// runaway.sql): past the engine's default of 1,000 it failed, for every session of the pass.
const PASS_SETTINGS: ClickHouseSettings = {
  compile_expressions: 0, compile_aggregate_expressions: 0, compile_sort_description: 0,
  max_recursive_cte_evaluation_depth: 10_000,
} as ClickHouseSettings;
// A pass over few calls also runs on one thread: its copy measured 5-10% faster (less pipeline to
// build), and the other core stays with ingest.
const SMALL_PASS_CALLS = 100_000;
const SMALL_PASS_SETTINGS: ClickHouseSettings = { ...PASS_SETTINGS, max_threads: 1 };

/**
 * Materializes `select` into a table of its own; returns its name (nothing is left behind if it
 * fails). With `columnsOf` (a table or view whose columns are the SELECT's, in its order) the
 * table is made empty with those columns and then filled: CREATE ... AS SELECT analyses its
 * SELECT twice (once for the columns), which made the features copy of an incremental pass 92
 * instead of 62 ms, nearly all of it the engine's planning.
 */
async function createPassTable(client: ClickHouseClient, select: string, params: Record<string, unknown>, settings: ClickHouseSettings, columnsOf?: string): Promise<string> {
  const table = passTableName();
  try {
    if (columnsOf === undefined) {
      await client.command({ query: `CREATE TABLE ${table} ENGINE = Memory AS ${select}`, query_params: params, clickhouse_settings: settings });
    } else {
      await client.command({ query: `CREATE TABLE ${table} ENGINE = Memory EMPTY AS SELECT * FROM ${columnsOf}` });
      await client.command({ query: `INSERT INTO ${table} ${select}`, query_params: params, clickhouse_settings: settings });
    }
  } catch (err) {
    // a CREATE ... AS SELECT whose SELECT fails can leave the table created
    await dropPassTable(client, table);
    throw err;
  }
  return table;
}

const dropPassTable = (client: ClickHouseClient, table: string) =>
  client.command({ query: `DROP TABLE IF EXISTS ${table}` }).then(() => undefined, () => undefined);

/** Materializes `select` into a table of its own, runs fn with its name, and drops it. */
async function withPassTable<T>(
  client: ClickHouseClient,
  select: string,
  params: Record<string, unknown>,
  fn: (table: string) => Promise<T>,
  settings = PASS_SETTINGS,
): Promise<T> {
  const table = await createPassTable(client, select, params, settings);
  try {
    return await fn(table);
  } finally {
    await dropPassTable(client, table);
  }
}

type CallsScope = { since: string; until: string; buckets?: number; bucket?: number };
const scopeParams = (scope: CallsScope) => ({ since: scope.since, until: scope.until, buckets: scope.buckets ?? 1, bucket: scope.bucket ?? 0 });

/**
 * Materializes the deduplicated calls of one window's (and bucket's) sessions (sessionCallsSql)
 * into a table of its own, runs fn with its name, and drops it.
 */
function withSessionCalls<T>(client: ClickHouseClient, scope: CallsScope, fn: (table: string) => Promise<T>, settings = PASS_SETTINGS): Promise<T> {
  return withPassTable(client, sessionCallsSql(), scopeParams(scope), fn, settings);
}

/**
 * Materializes the per-call features (detectorCallsSql) for one window (and bucket of
 * sessions) into a table of its own, runs fn with its name, and drops it. Detectors bind the
 * name as {calls:Identifier}. Two steps: the sessions' calls, then their features from that
 * table (dropped before fn runs).
 */
export async function withCallsTable<T>(
  client: ClickHouseClient,
  scope: CallsScope,
  fn: (table: string) => Promise<T>,
  settings = PASS_SETTINGS,
): Promise<T> {
  // the kept features' view has the features' columns (a test holds them equal)
  const table = await withSessionCalls(client, scope, (calls) => createPassTable(client, detectorCallsSql(), { session_calls: calls }, settings, 'loopwatch_call_features'), settings);
  try {
    return await fn(table);
  } finally {
    await dropPassTable(client, table);
  }
}

/**
 * Copies the kept features (loopwatch_call_features) of the sessions in [from, to) (null: no
 * bound) into a table of its own for a full pass, runs fn with its name, and drops it. One
 * deduplicating (FINAL) read per pass instead of one per detector: FINAL reads every column a
 * query needs for every row before any filter.
 */
export function withFeaturesTable<T>(client: ClickHouseClient, range: SessionRange, fn: (table: string) => Promise<T>): Promise<T> {
  const bounds: string[] = [];
  const params: Record<string, string> = {};
  if (range.from !== null) {
    bounds.push('session_id >= {from:String}');
    params.from = range.from;
  }
  if (range.to !== null) {
    bounds.push('session_id < {to:String}');
    params.to = range.to;
  }
  return withPassTable(client, `SELECT * FROM loopwatch_call_features${bounds.length ? ` WHERE ${bounds.join(' AND ')}` : ''}`, params, fn);
}

const passTableName = () => `loopwatch_pass_${Date.now()}_${randomBytes(4).toString('hex')}`;

export interface SessionRange {
  from: string | null;
  to: string | null;
}

/**
 * Splits the kept features into about `buckets` ranges of session ids holding similar numbers of
 * calls (cut at even ranks of a sample of the calls' sessions). Ranges, not hashes: the table is
 * ordered by session, so each range reads only its own granules.
 */
async function sessionRanges(client: ClickHouseClient, buckets: number): Promise<SessionRange[]> {
  if (buckets <= 1) return [{ from: null, to: null }];
  const [r] = await queryRows<{ ids: string[] }>(
    client,
    `SELECT arraySort(groupArraySample(${Math.min(100_000, buckets * 256)}, 1)(session_id)) AS ids FROM agent_call_features`,
  );
  const ids = r?.ids ?? [];
  const cuts = [...new Set(Array.from({ length: buckets - 1 }, (_, i) => ids[Math.floor(((i + 1) * ids.length) / buckets)]))]
    .filter((x): x is string => x !== undefined);
  return [null, ...cuts].map((from, i) => ({ from, to: cuts[i] ?? null }));
}

/** Writes the rows of a calls table (or of the parenthesized features SELECT, for a window) into the kept features. */
async function keepFeatures(client: ClickHouseClient, source: string, params: Record<string, unknown> = {}, settings = PASS_SETTINGS): Promise<void> {
  await client.command({
    query: `INSERT INTO agent_call_features SELECT *, toUInt64(toUnixTimestamp64Micro(now64(6))) AS version FROM ${source}`,
    query_params: params,
    clickhouse_settings: settings,
  });
}

/**
 * The files (of those with a `when`) whose condition holds on the calls table, plus every file
 * without one. One query for all; if it fails, every file runs (the detectors report their own
 * errors).
 */
async function conditionsHold(
  client: ClickHouseClient,
  files: DetectorFile[],
  table: string,
  bound: Record<string, unknown>,
  settings: ClickHouseSettings,
): Promise<Set<string>> {
  const all = new Set(files.map((f) => f.name));
  const guarded = files.filter((f) => f.when);
  if (guarded.length === 0) return all;
  const values: Record<string, unknown> = { calls: table };
  for (const f of guarded) for (const p of f.whenParams) if (p in bound) values[p] = bound[p];
  try {
    const [row] = await queryRows<Record<string, unknown>>(
      client,
      `SELECT ${guarded.map((f, i) => `toUInt8(${f.when}) AS c${i}`).join(', ')} FROM {calls:Identifier}`,
      values,
      settings,
    );
    guarded.forEach((f, i) => {
      if (num(row?.[`c${i}`]) === 0) all.delete(f.name);
    });
  } catch {
    // run them all
  }
  return all;
}

const lastSweep = new WeakMap<ClickHouseClient, number>();

async function dropStalePassTables(client: ClickHouseClient): Promise<void> {
  // a sweep every few minutes is plenty: tables are left behind only by a crash mid-pass
  if (Date.now() - (lastSweep.get(client) ?? 0) < STALE_PASS_TABLE_MS / 10) return;
  lastSweep.set(client, Date.now());
  const rows = await queryRows<{ name: string }>(
    client,
    "SELECT name FROM system.tables WHERE database = currentDatabase() AND startsWith(name, 'loopwatch_pass_')",
  );
  for (const { name } of rows) {
    const created = Number(/^loopwatch_pass_(\d+)_[0-9a-f]+$/.exec(name)?.[1]);
    if (Number.isFinite(created) && Date.now() - created > STALE_PASS_TABLE_MS) {
      await client.command({ query: `DROP TABLE IF EXISTS ${name}` });
    }
  }
}

const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}/g;

export function loadDetectorFiles(dir = detectorsDir): DetectorFile[] {
  return detectorFileNames(dir)
    .map((f) => {
      const sql = readFileSync(join(dir, f), 'utf8');
      const params = [...new Set([...stripComments(sql).matchAll(PLACEHOLDER)].map((m) => m[1]!))];
      // several `when` lines: the file runs when any of them holds
      const whens = [...sql.matchAll(/^--\s*loopwatch:\s*when\s+(.+)$/gm)].map((m) => `(${m[1]!.trim()})`);
      const when = whens.length ? whens.join(' OR ') : null;
      const whenParams = when ? [...when.matchAll(PLACEHOLDER)].map((m) => m[1]!) : [];
      return {
        name: f.slice(0, -4),
        sql: stripComments(sql),
        params,
        hourly: /^--\s*loopwatch:\s*hourly\s*$/m.test(sql),
        when,
        judged: /^--\s*loopwatch:\s*judged\s+(.+)$/m.exec(sql)?.[1]!.trim() ?? null,
        whenParams: [...new Set(whenParams)],
      };
    });
}

/** Comments out: they document parameters by name and must not be taken for placeholders. */
function stripComments(sql: string): string {
  return sql
    .split('\n')
    .filter((l) => !l.trimStart().startsWith('--'))
    .join('\n')
    .trim()
    .replace(/;\s*$/, '');
}

/** finding_id: stable for (detector, session, first looping span). */
export function findingId(detector: string, sessionId: string, firstSpanId: string): string {
  return createHash('sha256').update(`${detector}\n${sessionId}\n${firstSpanId}`).digest('hex').slice(0, 32);
}

/** The loop span of one finding version. */
export function loopSpanId(id: string, version: number): string {
  return createHash('sha256').update(`${id}:${version}`).digest('hex').slice(0, 16);
}

/** DateTime64 text -> nanoseconds since the epoch (the clock's zone cancels out in differences). */
function nanos(text: string): bigint {
  const m = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?$/.exec(text);
  if (!m) return 0n;
  const ms = Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!);
  return BigInt(ms) * 1_000_000n + BigInt((m[7] ?? '0').padEnd(9, '0'));
}

/**
 * A loop's wasted time is at most the time it lasted: calls run in parallel (five identical
 * fetches of 2 s at once) waste their 2 s, not the 8 s their durations add up to. Sequential calls
 * and the LLM calls between them lie within the loop's span, so their sum stays as it is.
 */
function wastedTime(sumNs: number, firstTs: string, lastTs: string): number {
  const span = Number(nanos(lastTs) - nanos(firstTs));
  const sum = Math.max(0, Math.round(sumNs));
  return span > 0 ? Math.min(sum, span) : sum;
}

const epochSeconds = (ms: number) => (ms / 1000).toFixed(3);
const str = (v: unknown) => (v === undefined || v === null ? '' : String(v));
const num = (v: unknown) => {
  const n = Number(v);
  return Number.isFinite(n) ? n : 0;
};

// One pass at a time per store: a scheduled pass and a manual one must not both store version n+1.
const running = new WeakMap<ClickHouseClient, Promise<unknown>>();
// Stores whose every loop span has its finding stored, as far as this process knows (storeFindings).
const spansSettled = new WeakSet<ClickHouseClient>();

export async function runDetectors(client: ClickHouseClient, opts: RunDetectorsOptions = {}): Promise<RunDetectorsResult> {
  const prev = running.get(client) ?? Promise.resolve();
  const next = prev.catch(() => undefined).then(() => runOnce(client, opts));
  running.set(client, next);
  return next;
}

async function runOnce(client: ClickHouseClient, opts: RunDetectorsOptions): Promise<RunDetectorsResult> {
  const started = performance.now();
  const params = resolveDetectorParams(opts.params);
  const files = loadDetectorFiles(opts.dir);
  // the store's clock and time zone (insertion times are the store's now64()), the start of its
  // current hour (for hourly detectors), and the watermarks: one query
  const [clock] = await queryRows<{ ms: number; text: string; hour_ms: number; marks: [string, number][] }>(
    client,
    `SELECT toUnixTimestamp64Milli(t) AS ms, toString(t) AS text, toUnixTimestamp(toStartOfHour(t)) * 1000 AS hour_ms,
            (SELECT groupArray((detector, toUnixTimestamp64Milli(watermark))) FROM loopwatch_detector_state FINAL) AS marks
     FROM (SELECT if({ms:Int64} > 0, fromUnixTimestamp64Milli({ms:Int64}), now64(3)) AS t)`,
    { ms: opts.now ? opts.now.getTime() : 0 },
  );
  // checked before each query of the pass: a shutdown waits for one query, not the whole pass
  const stopIfAsked = () => {
    if (opts.signal?.aborted) throw new PassStopped();
  };
  stopIfAsked();
  const untilMs = num(clock?.ms);
  const watermarks = new Map((clock?.marks ?? []).map(([detector, ms]) => [detector, num(ms)]));
  // an hourly detector is due when its window reaches back past the start of the current hour
  const hourDue = (sinceMs: number) => sinceMs === 0 || sinceMs < num(clock?.hour_ms);
  const sinceOf = (name: string): number => {
    const wm = watermarks.get(name);
    return opts.full || wm === undefined ? 0 : Math.max(0, wm - params.watermarkOverlapS * 1000);
  };

  const bound: Record<string, unknown> = { until: epochSeconds(untilMs) };
  for (const key of Object.keys(DETECTOR_DEFAULTS) as (keyof DetectorParams)[]) bound[sqlParamName(key)] = params[key];

  const perDetector: Record<string, number> = {};
  const errors: Record<string, string> = {};
  const candidates: Candidate[] = [];
  let reported = 0;
  let withdrawn = 0;
  let stored = { stored: 0, fresh: 0, grown: 0 };
  const skipped: string[] = [];
  const detectedAt = str(clock?.text);
  const oldest = files.length ? Math.min(...files.map((f) => sinceOf(f.name))) : 0;
  // Every pass keeps the features of the sessions it examines (agent_call_features); a full
  // pass (a detector examines every session) first brings them up to date and then reads them.
  const featuresMark = watermarks.get(FEATURES);
  const featuresSince = featuresMark === undefined ? 0 : Math.max(0, featuresMark - params.watermarkOverlapS * 1000);
  const fullPass = oldest === 0 && featuresSince > 0;
  const window = { since: epochSeconds(fullPass ? 0 : Math.min(oldest, featuresSince)), until: epochSeconds(untilMs) };
  // sessions with calls inserted in a window, and (to size the buckets) their calls
  const scannedIn = (w: { since: string; until: string }, countCalls = true) =>
    queryRows<{ n: number; calls: number }>(
      client,
      `WITH scope AS (SELECT DISTINCT session_id FROM agent_call_activity WHERE inserted_at > {since:DateTime64(3)} AND inserted_at <= {until:DateTime64(3)})
       SELECT (SELECT count() FROM scope) AS n,
              ${countCalls ? '(SELECT count() FROM agent_tool_calls WHERE session_id IN (SELECT session_id FROM scope))' : '0'} AS calls`,
      w,
    ).then((rows) => ({ n: num(rows[0]?.n), calls: num(rows[0]?.calls) }));
  // a full pass sizes its buckets by the kept features instead
  const scanned = await scannedIn(window, !fullPass);
  const sessions = scanned.n;
  const settings = !fullPass && scanned.calls < SMALL_PASS_CALLS ? SMALL_PASS_SETTINGS : PASS_SETTINGS;
  const perBucket = opts.callsPerBucket ?? CALLS_PER_BUCKET;
  // the number of buckets that brings each closest to perBucket calls (at most 1.5x it): a store
  // just past a multiple of perBucket (1M calls and a few new ones) is not split into halves, each
  // paying every detector's fixed cost again
  const bucketsFor = (calls: number) => Math.max(1, Math.round(calls / perBucket));
  let featuresKept = true;
  // runs a write of the kept features; a failure (of the write or of what it reads) is recorded, not thrown
  const keep = async (write: () => Promise<unknown>) => {
    stopIfAsked();
    try {
      await write();
    } catch (err) {
      featuresKept = false;
      errors[FEATURES] ??= `keeping the calls' features: ${(err as Error).message}`;
    }
  };
  // nothing new since any watermark: every detector would return nothing
  const done: string[] = sessions === 0 ? files.map((f) => f.name) : [];
  for (const f of files) perDetector[f.name] = 0;

  if (sessions > 0) {
    const failed = new Set<string>();
    // the values of a file's placeholders (its SELECT's, or its `judged` expression's)
    const bind = (file: DetectorFile, names: Iterable<string>, extra: Record<string, unknown> = {}) => {
      const values: Record<string, unknown> = {};
      for (const p of names) {
        if (p === 'since') values.since = epochSeconds(sinceOf(file.name));
        else if (p in extra) values[p] = extra[p];
        else if (p in bound) values[p] = bound[p];
        else throw new Error(`unknown parameter {${p}} (known: calls, since, until, ${Object.keys(DETECTOR_PARAM_TYPES).map(sqlParamName).join(', ')})`);
      }
      return values;
    };
    const run = async (file: DetectorFile, extra: Record<string, unknown>) => {
      if (failed.has(file.name)) return;
      stopIfAsked();
      try {
        const rows = await queryRows<Record<string, unknown>>(client, file.sql, bind(file, file.params, extra), settings);
        perDetector[file.name] = (perDetector[file.name] ?? 0) + rows.length;
        reported += rows.length;
        for (const r of rows) candidates.push(toFinding(file.name, r, detectedAt));
      } catch (err) {
        failed.add(file.name);
        errors[file.name] = (err as Error).message;
      }
    };
    // detectors over the calls: once per bucket of sessions, on one shared copy of the calls
    const callFiles = files.filter((f) => f.params.includes('calls'));
    // a full pass runs every detector: on every session nearly all can fire, and the conditions
    // would cost a scan of their own
    const detect = async (table: string) => {
      const due = fullPass ? new Set(callFiles.map((f) => f.name)) : await conditionsHold(client, callFiles, table, bound, settings);
      const from = candidates.length;
      for (const file of callFiles) {
        if (due.has(file.name)) await run(file, { calls: table });
        else skipped.push(file.name);
      }
      // what each detector that ran (or could not fire: its `when` was false) now reports for these
      // sessions; a full pass, which examines every session, withdraws once at its end
      const reportedHere = candidates.slice(from).map((c) => c.finding_id);
      if (fullPass) for (const id of reportedHere) reportedInPass.push(id);
      else withdrawn += await withdrawFindings(client, table, answered(), reportedHere, settings);
    };
    const reportedInPass: string[] = [];
    const answered = () => callFiles.filter((f) => !failed.has(f.name)).map((f) => f.name);
    const buildFailed = (err: unknown) => {
      for (const file of callFiles) {
        failed.add(file.name);
        errors[file.name] ??= `building the calls of the pass: ${(err as Error).message}`;
      }
    };
    await dropStalePassTables(client);
    if (fullPass) {
      // the sessions with calls since the features were last kept, then every session's kept features
      const stale = { since: epochSeconds(featuresSince), until: window.until };
      const { calls } = await scannedIn(stale);
      const staleBuckets = bucketsFor(calls);
      for (let bucket = 0; bucket < staleBuckets && calls > 0; bucket++) {
        stopIfAsked();
        await keep(() => withSessionCalls(client, { ...stale, buckets: staleBuckets, bucket },
          (calls) => keepFeatures(client, `(${detectorCallsSql()})`, { session_calls: calls }, settings), settings));
      }
      if (callFiles.length > 0) {
        const [kept] = await queryRows<{ n: number }>(client, 'SELECT count() AS n FROM agent_call_features');
        for (const range of await sessionRanges(client, bucketsFor(num(kept?.n)))) {
          stopIfAsked();
          try {
            await withFeaturesTable(client, range, detect);
          } catch (err) {
            if (err instanceof PassStopped) throw err;
            buildFailed(err);
          }
        }
      }
    } else {
      const buckets = bucketsFor(scanned.calls);
      for (let bucket = 0; bucket < buckets; bucket++) {
        stopIfAsked();
        try {
          await withCallsTable(client, { ...window, buckets, bucket }, async (table) => {
            await keep(() => keepFeatures(client, table, {}, settings));
            if (callFiles.length > 0) await detect(table);
          }, settings);
        } catch (err) {
          if (err instanceof PassStopped) throw err;
          featuresKept = false;
          buildFailed(err);
        }
      }
    }
    if (fullPass && callFiles.length > 0) {
      withdrawn += await withdrawFindings(client, null, answered(), reportedInPass, settings);
    }
    // then detectors over other tables, once per pass (an hourly one only when an hour is due),
    // after this pass's loop findings are stored: degradation's loop rate counts them
    stored = await storeFindings(client, candidates.splice(0), detectedAt, untilMs);
    for (const file of files.filter((f) => !f.params.includes('calls'))) {
      if (file.hourly && !hourDue(sinceOf(file.name))) {
        skipped.push(file.name);
        continue;
      }
      await run(file, {});
      if (file.judged && !failed.has(file.name)) {
        // what it reported in this pass: still waiting in candidates (the stored ones are the call detectors')
        const reportedHere = candidates.filter((c) => c.detector === file.name).map((c) => c.finding_id);
        const params = bind(file, new Set([...file.judged.matchAll(PLACEHOLDER)].map((m) => m[1]!)));
        withdrawn += await withdrawFindings(client, { where: file.judged, params }, [file.name], reportedHere, settings);
      }
    }
    for (const f of files) if (!failed.has(f.name)) done.push(f.name);
  }

  const late = await storeFindings(client, candidates, detectedAt, untilMs);
  const fresh = stored.fresh + late.fresh;
  const grown = stored.grown + late.grown;

  if (featuresKept) done.push(FEATURES);
  if (done.length > 0) {
    await client.command({
      query: `INSERT INTO loopwatch_detector_state (detector, watermark)
               SELECT arrayJoin({names:Array(String)}), fromUnixTimestamp64Milli({ms:Int64})`,
      query_params: { names: done, ms: untilMs },
    });
  }
  const result: RunDetectorsResult = {
    findings: reported,
    newFindings: fresh,
    grownFindings: grown,
    withdrawnFindings: withdrawn,
    durationMs: performance.now() - started,
    perDetector,
    sessions,
    errors,
    skipped,
  };
  return result;
}

/** A detector's row as a finding, plus where its loop span hangs (not a column of agent_findings). */
type Candidate = FindingRow & { parent_span_id: string };

function toFinding(detector: string, r: Record<string, unknown>, detectedAt: string): Candidate {
  const session = str(r.session_id);
  const first = str(r.first_span_id);
  if (!session || !first) throw new Error(`detector ${detector}: a row without session_id or first_span_id`);
  const details = r.details === undefined ? '{}' : typeof r.details === 'string' ? r.details : JSON.stringify(r.details);
  return {
    finding_id: findingId(detector, session, first),
    version: 1,
    detector,
    severity: str(r.severity) || 'warning',
    detected_at: detectedAt,
    session_id: session,
    trace_id: str(r.trace_id),
    service: str(r.service),
    agent: str(r.agent),
    model: str(r.model),
    tools: Array.isArray(r.tools) ? r.tools.map(String) : [],
    first_span_id: first,
    last_span_id: str(r.last_span_id) || first,
    first_ts: str(r.first_ts) || '1970-01-01 00:00:00',
    last_ts: str(r.last_ts) || str(r.first_ts) || '1970-01-01 00:00:00',
    repeats: Math.max(0, Math.round(num(r.repeats))),
    wasted_calls: Math.max(0, Math.round(num(r.wasted_calls))),
    wasted_tokens: Math.max(0, Math.round(num(r.wasted_tokens))),
    wasted_cost_usd: Math.max(0, num(r.wasted_cost_usd)),
    wasted_time_ns: wastedTime(num(r.wasted_time_ns), str(r.first_ts), str(r.last_ts)),
    message: str(r.message) || `${detector} loop in session ${session}`,
    details,
    parent_span_id: str(r.parent_span_id),
  };
}

/**
 * Deletes the stored findings of `detectors` for the sessions of the pass table (all sessions when
 * null; or those a detector's `judged` expression selects) that this pass no longer reports
 * (`reported`: the finding ids it does), and their loop spans; returns how many. The pass sees
 * each of these sessions' whole history, so a finding it does not report again is one that
 * history no longer holds: a call that arrived late came before the loop's first call (the loop
 * is now reported from that call, under another identity) or broke its run. Kept, it would be a
 * duplicate, or a loop that no longer exists.
 */
async function withdrawFindings(
  client: ClickHouseClient,
  scope: string | { where: string; params: Record<string, unknown> } | null,
  detectors: string[],
  reported: string[],
  settings: ClickHouseSettings,
): Promise<number> {
  if (detectors.length === 0) return 0;
  // the sessions of a pass table, the findings a detector judged (its `judged` expression), or all
  const where = scope === null ? '' : typeof scope === 'string' ? 'session_id IN (SELECT session_id FROM {calls:Identifier}) AND ' : `(${scope.where}) AND `;
  const params = scope === null ? {} : typeof scope === 'string' ? { calls: scope } : scope.params;
  const stale = await queryRows<{ finding_id: string }>(
    client,
    `SELECT finding_id FROM agent_findings FINAL
     WHERE ${where}detector IN {detectors:Array(String)}
       AND finding_id NOT IN (SELECT arrayJoin({reported:Array(String)}))`,
    { ...params, detectors, reported },
    settings,
  );
  if (stale.length === 0) return 0;
  const ids = stale.map((r) => r.finding_id);
  // loop spans first: a pass that dies in between finds the findings again and retries
  await client.command({
    query: `DELETE FROM otel_traces WHERE SpanName = 'loopwatch.loop' AND SpanAttributes['loop.finding_id'] IN {ids:Array(String)}`,
    query_params: { ids },
  });
  await client.command({ query: 'DELETE FROM agent_findings WHERE finding_id IN {ids:Array(String)}', query_params: { ids } });
  return ids.length;
}

/**
 * The same loop, other waste figures: the LLM spans of its calls arrived after the tool spans (a
 * streamed turn ends after the calls it asked for; another process exports them), so its tokens,
 * cost or time were not known when it was first stored. Beyond rounding (the store keeps the cost
 * as a Float64 it summed in another order): a cent in a million, a token, a microsecond.
 */
function wasteMoved(k: Pick<FindingRow, 'wasted_tokens' | 'wasted_cost_usd' | 'wasted_time_ns'>, c: FindingRow): boolean {
  return Math.abs(k.wasted_tokens - c.wasted_tokens) >= 1
    || Math.abs(k.wasted_cost_usd - c.wasted_cost_usd) > 1e-6 * Math.max(1, Math.abs(c.wasted_cost_usd))
    || Math.abs(k.wasted_time_ns - c.wasted_time_ns) >= 1000;
}

/**
 * A growing loop writes a span at its first growth this long after its last span: under the
 * loop alert's 5-minute window for any loop that grows at least every 3 minutes (2 + 3), and a
 * slower loop writes one at each growth.
 */
export const LOOP_SPAN_EVERY_MS = 2 * 60_000;

type SpanFigures = Pick<FindingRow, 'repeats' | 'wasted_tokens' | 'wasted_cost_usd' | 'severity'>;

/**
 * Whether a finding's new version (`next`, stored by a pass at `passMs` of the store's clock)
 * also writes a loop span, after the version before (`prev`) and the finding's last span
 * (`lastSpanMs`, unknown after a restart). Every version did: a loop that went on for an hour at
 * a call a second left some 720 spans per detector in its trace (a soak measured loop spans at
 * 13.5% of all rows, from loops of 20 to 40 calls). Now: when its severity changes, its repeats
 * reach the next power of two, its waste is first known (LLM spans that came late), or its last
 * span is LOOP_SPAN_EVERY_MS old or unknown (so the loop alert keeps firing while the loop grows).
 * agent_findings keeps every version; a span shows its finding as of that version.
 */
export function writesLoopSpan(prev: SpanFigures, next: SpanFigures, passMs: number, lastSpanMs: number | undefined): boolean {
  const power = (n: number) => (n > 0 ? Math.floor(Math.log2(n)) : -1);
  return next.severity !== prev.severity
    || power(next.repeats) !== power(prev.repeats)
    || (prev.wasted_tokens === 0 && next.wasted_tokens > 0)
    || (prev.wasted_cost_usd === 0 && next.wasted_cost_usd > 0)
    || lastSpanMs === undefined || passMs - lastSpanMs >= LOOP_SPAN_EVERY_MS;
}

// When each finding last wrote a loop span, per store, as this process wrote them (after a
// restart none is known: a growing finding's next version writes one). Cleared past 100k
// findings: the cost is a span each for the findings still growing.
const lastSpans = new WeakMap<ClickHouseClient, Map<string, number>>();

/** Stores findings that are new or grew (version + 1) and their loop spans (writesLoopSpan); returns counts. */
async function storeFindings(client: ClickHouseClient, candidates: Candidate[], passClock: string, passMs: number): Promise<{ stored: number; fresh: number; grown: number }> {
  if (candidates.length === 0) return { stored: 0, fresh: 0, grown: 0 };
  type Known = Pick<FindingRow, 'version' | 'repeats' | 'wasted_calls' | 'last_span_id' | 'wasted_tokens' | 'wasted_cost_usd' | 'wasted_time_ns' | 'detected_at' | 'severity'>;
  const known = new Map<string, Known>();
  const sessions = [...new Set(candidates.map((c) => c.session_id))];
  for (let i = 0; i < sessions.length; i += 1000) {
    const rows = await queryRows<Known & { finding_id: string }>(
      client,
      `SELECT finding_id, version, repeats, wasted_calls, last_span_id, wasted_tokens, wasted_cost_usd, wasted_time_ns, toString(detected_at) AS detected_at, severity
       FROM agent_findings FINAL
       WHERE session_id IN {sessions:Array(String)}`,
      { sessions: sessions.slice(i, i + 1000) },
    );
    for (const r of rows) {
      known.set(r.finding_id, {
        version: num(r.version), repeats: num(r.repeats), wasted_calls: num(r.wasted_calls), last_span_id: r.last_span_id,
        wasted_tokens: num(r.wasted_tokens), wasted_cost_usd: num(r.wasted_cost_usd), wasted_time_ns: num(r.wasted_time_ns),
        detected_at: r.detected_at, severity: r.severity,
      });
    }
  }
  const spannedAt = lastSpans.get(client);
  const toStore: Candidate[] = [];
  const spanned: Candidate[] = [];
  let fresh = 0;
  let grown = 0;
  const seen = new Set<string>();
  for (const c of candidates) {
    if (seen.has(c.finding_id)) continue; // a detector reporting one identity twice: first wins
    seen.add(c.finding_id);
    const k = known.get(c.finding_id);
    let version: Candidate | undefined;
    if (!k) {
      fresh++;
      toStore.push(c);
      spanned.push(c);
    } else if (k.repeats !== c.repeats || k.wasted_calls !== c.wasted_calls || k.last_span_id !== c.last_span_id) {
      version = { ...c, version: k.version + 1 };
    } else if (wasteMoved(k, c)) {
      // the same loop, only its accounting is new: found when it was found (the loop alert keys on
      // detected_at, and must not page again for LLM spans that came late, or for a new pricing)
      version = { ...c, version: k.version + 1, detected_at: k.detected_at };
    }
    if (k && version) {
      grown++;
      toStore.push(version);
      if (writesLoopSpan(k, version, passMs, spannedAt?.get(c.finding_id))) spanned.push(version);
    }
  }
  if (toStore.length === 0) return { stored: 0, fresh, grown };
  // Spans first, then the findings: a pass that dies in between stored loop spans of versions
  // agent_findings does not have, and the next pass stores those versions again, under the same
  // span ids, so the first pass of a process (or after a pass failed in between) deletes such
  // spans first. The insert token is the pass's own (its clock with the span ids): a finding
  // withdrawn and later found again is version 1 again, under the same span id, and a token of
  // the span ids alone dropped its new loop span as a duplicate of the deleted one.
  const spans = spanned.map(loopSpanRow);
  const token = createHash('sha256').update(`${passClock}\n`).update(spans.map((s) => s.SpanId).join(',')).digest('hex');
  if (spans.length > 0 && !spansSettled.has(client)) {
    const orphans = await queryRows<{ id: string }>(
      client,
      `SELECT DISTINCT SpanId AS id FROM otel_traces
       WHERE SpanName = 'loopwatch.loop' AND TraceId IN {traces:Array(String)} AND SpanId IN {ids:Array(String)}`,
      { traces: [...new Set(spans.map((s) => String(s.TraceId)))], ids: spans.map((s) => s.SpanId) },
    );
    if (orphans.length > 0) {
      await client.command({
        query: `DELETE FROM otel_traces WHERE SpanName = 'loopwatch.loop' AND SpanId IN {ids:Array(String)}`,
        query_params: { ids: orphans.map((o) => o.id) },
      });
    }
  }
  // (a pass that writes no span leaves the store as it was: the check above is still due if it was)
  if (spans.length > 0) {
    spansSettled.delete(client); // until the findings are stored too
    await client.insert({
      table: 'otel_traces',
      values: spans,
      format: 'JSONEachRow',
      // the views that normalize spans (tool and LLM calls, trace index) run on these rows too, and
      // for a few rows their planning is most of the insert: side by side, not one after another
      // (an insert of 8 loop spans measured 42 against 53 ms; 9 ms into a table without views)
      clickhouse_settings: {
        insert_deduplication_token: token,
        parallel_view_processing: 1,
      },
    });
  }
  await client.insert({
    table: 'agent_findings',
    values: toStore.map(({ parent_span_id: _parent, ...row }) => row),
    format: 'JSONEachRow',
  });
  if (spans.length > 0) spansSettled.add(client);
  let written = spannedAt;
  if (!written || written.size > 100_000) lastSpans.set(client, (written = new Map()));
  for (const f of spanned) written.set(f.finding_id, passMs);
  return { stored: toStore.length, fresh, grown };
}

/** A finding version as an otel_traces row (the exporter layout), beside the looping calls. */
export function loopSpanRow(f: FindingRow & { parent_span_id?: string }): Record<string, unknown> & { SpanId: string } {
  const start = nanos(f.first_ts);
  const end = nanos(f.last_ts);
  return {
    Timestamp: f.first_ts,
    TraceId: f.trace_id,
    SpanId: loopSpanId(f.finding_id, f.version),
    ParentSpanId: f.parent_span_id ?? '',
    TraceState: '',
    SpanName: 'loopwatch.loop',
    SpanKind: 'Internal',
    ServiceName: f.service,
    ResourceAttributes: { 'service.name': f.service },
    ScopeName: 'loopwatch.detectors',
    ScopeVersion: '0.1.0',
    SpanAttributes: {
      'loop.detector': f.detector,
      'loop.session_id': f.session_id,
      'loop.agent': f.agent,
      'loop.model': f.model,
      'loop.tools': f.tools.join(','),
      'loop.repeats': String(f.repeats),
      'loop.first_span_id': f.first_span_id,
      'loop.last_span_id': f.last_span_id,
      'loop.wasted_calls': String(f.wasted_calls),
      'loop.wasted_tokens': String(f.wasted_tokens),
      'loop.wasted_cost_usd': String(f.wasted_cost_usd),
      'loop.wasted_time_ns': String(f.wasted_time_ns),
      'loop.finding_id': f.finding_id,
      'loop.version': String(f.version),
      'loop.severity': f.severity,
      // when the pass found it (the store's clock): alert rules key on it, the span's own time
      // being the loop's first call
      'loop.detected_at': f.detected_at,
    },
    Duration: String(end > start ? end - start : 0n),
    StatusCode: 'Error',
    StatusMessage: f.message,
    'Events.Timestamp': [],
    'Events.Name': [],
    'Events.Attributes': [],
    'Links.TraceId': [],
    'Links.SpanId': [],
    'Links.TraceState': [],
    'Links.Attributes': [],
  };
}
