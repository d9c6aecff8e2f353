// Runs the reports in queries/reports/*.sql: one SELECT each, `{name:Type}` query parameters.
// Every placeholder a report uses must be given, except the optional filters, which default to
// '' (any) and the limit, which defaults to 10,000 rows. Times may be Date, epoch ms or text.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import { queriesDir } from '../../collector/src/paths.js';

export const REPORTS = ['session-scorecard', 'model-reliability'] as const;
export type ReportName = (typeof REPORTS)[number];

export interface SessionScorecardRow {
  session_id: string;
  agent: string;
  service: string;
  model: string;
  started_at: string;
  calls: number;
  llm_calls: number;
  errors: number;
  /** Calls the in-process LoopGuard halted before they ran (not in errors). */
  halted: number;
  retries: number;
  loops_entered: number;
  loop_kinds: string[];
  failed_tools: number;
  recovered_tools: number;
  recovered: number;
  ended_cleanly: number;
  files_touched: number;
  commands_run: number;
  files: string[];
  commands: string[];
  tokens: number;
  cost_usd: number;
  wall_time_s: number;
  wasted_calls: number;
  waste_ratio: number;
}

export interface ModelReliabilityRow {
  day: string;
  model: string;
  sessions: number;
  llm_calls: number;
  llm_errors: number;
  tool_calls: number;
  tool_errors: number;
  tool_error_rate: number;
  loop_sessions: number;
  loop_rate: number;
  error_sessions: number;
  recovered_sessions: number;
  recovery_rate: number | null;
  tokens: number;
  cost_usd: number;
  cost_per_session: number;
  latency_p50_ms: number;
  latency_p95_ms: number;
  latency_p99_ms: number;
}

export interface ReportRows {
  'session-scorecard': SessionScorecardRow;
  'model-reliability': ModelReliabilityRow;
}

export type TimeValue = Date | number | string;
export interface ReportParams {
  from: TimeValue;
  to: TimeValue;
  agent?: string;
  service?: string;
  session_id?: string;
  model?: string;
  limit?: number;
  /** session-scorecard: 1 = the `limit` sessions that start latest, newest first (default 0: oldest first). */
  newest_first?: 0 | 1;
}

const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}/g;
const OPTIONAL: Record<string, unknown> = { agent: '', service: '', session_id: '', model: '', limit: 10_000, newest_first: 0 };

/** The report's SQL, comments dropped, and the placeholders it uses. */
export function loadReport(name: ReportName, dir = join(queriesDir, 'reports')): { sql: string; params: string[] } {
  if (!REPORTS.includes(name)) throw new Error(`unknown report ${name} (known: ${REPORTS.join(', ')})`);
  const sql = readFileSync(join(dir, `${name}.sql`), 'utf8')
    .split('\n')
    .filter((l) => !l.trimStart().startsWith('--'))
    .join('\n')
    .trim()
    .replace(/;\s*$/, '');
  return { sql, params: [...new Set([...sql.matchAll(PLACEHOLDER)].map((m) => m[1]!))] };
}

/** DateTime64(3) parameter text (UTC epoch seconds with milliseconds). */
function timeParam(v: TimeValue): string {
  if (v instanceof Date) return (v.getTime() / 1000).toFixed(3);
  if (typeof v === 'number') return (v / 1000).toFixed(3);
  return v;
}

const NUMERIC = new Set(['calls', 'llm_calls', 'errors', 'halted', 'retries', 'loops_entered', 'failed_tools', 'recovered_tools', 'recovered', 'ended_cleanly',
  'files_touched', 'commands_run', 'tokens', 'cost_usd', 'wall_time_s', 'wasted_calls', 'waste_ratio', 'sessions', 'llm_errors', 'tool_calls',
  'tool_errors', 'tool_error_rate', 'loop_sessions', 'loop_rate', 'error_sessions', 'recovered_sessions', 'cost_per_session',
  'latency_p50_ms', 'latency_p95_ms', 'latency_p99_ms']);

export async function runReport<N extends ReportName>(client: ClickHouseClient, name: N, params: ReportParams): Promise<ReportRows[N][]> {
  const { sql, params: used } = loadReport(name);
  const given: Record<string, unknown> = { ...params };
  const values: Record<string, unknown> = {};
  for (const p of used) {
    const v = given[p] ?? OPTIONAL[p];
    if (v === undefined) throw new Error(`report ${name}: parameter ${p} is required`);
    values[p] = p === 'from' || p === 'to' ? timeParam(v as TimeValue) : v;
  }
  const rs = await client.query({ query: sql, format: 'JSONEachRow', query_params: values, clickhouse_settings: { output_format_json_quote_64bit_integers: 0 } });
  const rows = await rs.json<Record<string, unknown>>();
  // 64-bit counters arrive as numbers (small here); make sure of it for every numeric column
  for (const r of rows) for (const k of Object.keys(r)) if (NUMERIC.has(k) && r[k] !== null && typeof r[k] === 'string') r[k] = Number(r[k]);
  return rows as unknown as ReportRows[N][];
}

const DAY_MS = 86_400_000;

/**
 * The model-reliability report over a long range, a few UTC days per query: its rows are per
 * model and UTC day, and a day's figures come from that day's LLM calls and the tool calls they
 * requested (read up to an hour past the query's end, as over the whole range), so the rows are
 * those of one query over the range. One query held every LLM call of the range in memory for
 * the tool calls' join to their requester: 25 s and 3.7 GB for 30 days of 11.5M calls (a review,
 * 2026-12-06), failing under a 1 GB memory limit. A tool call that starts more than an hour after
 * the LLM call that requested it, across a query's last midnight, is left out, as it is past the
 * end of a single query's range.
 */
export async function modelReliabilityByDays(
  client: ClickHouseClient,
  params: { from: Date | number; to: Date | number; model?: string; agent?: string },
  daysPerQuery = 3,
): Promise<ModelReliabilityRow[]> {
  const from = +params.from;
  const to = +params.to;
  const rows: ModelReliabilityRow[] = [];
  for (let start = from; start < to; ) {
    // up to the UTC midnight daysPerQuery days on, so that no day is split between two queries
    const end = Math.min(to, (Math.floor(start / DAY_MS) + daysPerQuery) * DAY_MS);
    rows.push(...(await runReport(client, 'model-reliability', { ...params, from: start, to: end })));
    start = end;
  }
  return rows;
}
