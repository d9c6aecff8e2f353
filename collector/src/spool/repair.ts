// Repair of a segment that may have been inserted in part. The engine's insert deduplication
// records a block's token before it commits the block's part, so a collector killed between the
// two (or an INSERT that failed there) leaves a table that drops the segment's replay as a
// duplicate without holding its rows (docs/data-safety.md, "Interrupted INSERTs"). For such a
// segment the loader calls repairSegment after the replay: every span missing from otel_traces is
// inserted again under a fresh token (the views run for them again; a typed table that already
// had them collapses the repeat under FINAL), and a table fed by a view from otel_traces that
// lost its part while otel_traces kept the spans gets its rows from its own view's SELECT over
// those spans. Tables without a deduplication window (agent_call_activity, loopwatch_model_keys)
// need nothing: the replay's views write them again.
import { randomUUID } from 'node:crypto';
import type { ClickHouseClient } from '@clickhouse/client';
import { SPAN_COLUMNS } from '../ingest/span-rows.js';
import { queryRows } from '../store/client.js';

const TRACE_ID = SPAN_COLUMNS.indexOf('TraceId');
const SPAN_ID = SPAN_COLUMNS.indexOf('SpanId');

/**
 * What counts as a row missing from a derived table: `span`, a row per span (keyed by trace and
 * span id); `range`, a time range per trace that must cover each span's (min/max over its rows).
 */
type MissingRule = 'span' | 'range';

/** The deduplicating tables fed from otel_traces by a view, with the view's name (queries/schema/001, 002). */
const DERIVED = [
  { table: 'agent_tool_calls', view: 'agent_tool_calls_mv', missing: 'span' },
  { table: 'agent_llm_calls', view: 'agent_llm_calls_mv', missing: 'span' },
  { table: 'otel_traces_trace_id_ts', view: 'otel_traces_trace_id_ts_mv', missing: 'range' },
] as const satisfies readonly { table: string; view: string; missing: MissingRule }[];
type DerivedTable = (typeof DERIVED)[number]['table'];

/** The source of a view's SELECT as the engine prints it (`FROM default.otel_traces`), found once. */
const SOURCE = /\bFROM\s+(?:`?[A-Za-z_][A-Za-z0-9_]*`?\.)?`?otel_traces`?(?![A-Za-z0-9_])/g;

export interface RepairResult {
  /** Spans inserted again into otel_traces. */
  traces: number;
  /** Rows inserted into each table fed by a view. */
  derived: Partial<Record<DerivedTable, number>>;
}

interface NarrowedView {
  table: DerivedTable;
  missing: MissingRule;
  select: string;
  columns: string;
}

/** Per client: each derived table's view SELECT narrowed to given spans, and its columns (read once). */
const narrowedViews = new WeakMap<ClickHouseClient, Promise<NarrowedView[]>>();

function derivedViews(client: ClickHouseClient): Promise<NarrowedView[]> {
  let p = narrowedViews.get(client);
  if (!p) {
    p = (async () => {
      const views = await queryRows<{ name: string; as_select: string }>(
        client,
        `SELECT name, as_select FROM system.tables WHERE database = currentDatabase() AND name IN {names:Array(String)}`,
        { names: DERIVED.map((t) => t.view) },
      );
      const out: NarrowedView[] = [];
      for (const { table, view, missing } of DERIVED) {
        const select = views.find((v) => v.name === view)?.as_select ?? '';
        if ((select.match(SOURCE) ?? []).length !== 1) throw new Error(`cannot repair ${table}: the SELECT of ${view} does not read otel_traces exactly once`);
        const narrowed = select.replace(SOURCE, `FROM (SELECT * FROM otel_traces WHERE ${SPANS}) AS otel_traces`);
        const columns = (await queryRows<{ name: string }>(client, `DESCRIBE (${narrowed})`, { traces: [], ids: [] })).map((c) => `\`${c.name}\``).join(', ');
        out.push({ table, missing, select: narrowed, columns });
      }
      return out;
    })();
    p.catch(() => narrowedViews.delete(client));
    narrowedViews.set(client, p);
  }
  return p;
}

// the segment's spans: by trace id first (otel_traces skips granules by its trace id index). The
// ids are a set built from the array (IN a subquery), not an IN list: a literal list of 44,000 span
// ids took the engine 7 s where 43,000 took 0.1 s (one segment holds up to ~100k spans).
const IDS = (column: string, param: 'traces' | 'ids') => `${column} IN (SELECT arrayJoin({${param}:Array(String)}))`;
const SPANS = `${IDS('TraceId', 'traces')} AND ${IDS('SpanId', 'ids')}`;

/** The rows of a view's narrowed SELECT its table lacks. */
function missingRows({ table, missing, select, columns }: NarrowedView): string {
  if (missing === 'range') {
    // otel_traces_trace_id_ts: a trace's range is the min/max over its rows (one per insert
    // block), so a row is missing when the rows there do not span it. Without one, Grafana's trace
    // lookup finds no time range and shows nothing of the trace. (Compared as stored: whole seconds.)
    return `SELECT TraceId, Start, End FROM (SELECT TraceId, toDateTime(Start) AS Start, toDateTime(End) AS End FROM (${select})) AS n
            LEFT JOIN (SELECT TraceId, min(Start) AS s, max(End) AS e FROM ${table} WHERE ${IDS('TraceId', 'traces')} GROUP BY TraceId) AS c ON n.TraceId = c.TraceId
            WHERE c.TraceId = '' OR c.s > n.Start OR c.e < n.End`;
  }
  return `SELECT ${columns} FROM (${select})
          WHERE (trace_id, span_id) NOT IN (SELECT trace_id, span_id FROM ${table} WHERE ${IDS('trace_id', 'traces')} AND ${IDS('span_id', 'ids')})`;
}

/** Checks that every row of `lines` (JSONCompactEachRow in SPAN_COLUMNS order) is in each table, and inserts what is missing. */
export async function repairSegment(
  client: ClickHouseClient,
  lines: Buffer[],
  token: string,
  /** The loader's INSERT of span rows into otel_traces under a token. */
  insertSpans: (rows: Buffer[], token: string) => Promise<void>,
): Promise<RepairResult> {
  const byKey = new Map<string, Buffer>();
  const traces = new Set<string>();
  const ids = new Set<string>();
  for (const line of lines) {
    let row: unknown[];
    try {
      row = JSON.parse(line.toString('utf8')) as unknown[];
    } catch {
      continue; // not a row the store could have taken
    }
    const trace = String(row[TRACE_ID]), span = String(row[SPAN_ID]);
    byKey.set(`${trace}/${span}`, line);
    traces.add(trace);
    ids.add(span);
  }
  const result: RepairResult = { traces: 0, derived: {} };
  if (byKey.size === 0) return result;
  const params = { traces: [...traces], ids: [...ids] };

  // One query for the common case, where nothing is missing: the spans otel_traces has, and how
  // many rows each derived table lacks (a query costs more in fixed overhead than in reading).
  const views = await derivedViews(client);
  const counts = views.map((v, i) => `(SELECT count() FROM (${missingRows(v)})) AS m${i}`).join(', ');
  const check = async (spans: boolean) =>
    (
      await queryRows<Record<string, string | string[]>>(
        client,
        `SELECT ${spans ? `(SELECT groupArray(concat(TraceId, '/', SpanId)) FROM otel_traces WHERE ${SPANS}) AS present, ` : ''}${counts}`,
        params,
      )
    )[0]!;
  let state = await check(true);
  for (const k of state.present as string[]) byKey.delete(k);
  if (byKey.size > 0) {
    await insertSpans([...byKey.values()], `${token}.repair-${randomUUID()}`);
    result.traces = byKey.size;
    state = await check(false); // the views ran for the spans inserted: what is still missing
  }

  for (const [i, view] of views.entries()) {
    const n = Number(state[`m${i}`]);
    if (n === 0) continue;
    // new to the table (checked above), so no deduplication: a repeat would collapse under FINAL anyway
    await client.command({ query: `INSERT INTO ${view.table} (${view.columns}) ${missingRows(view)}`, query_params: params, clickhouse_settings: { insert_deduplicate: 0 } });
    result.derived[view.table] = n;
  }
  return result;
}
