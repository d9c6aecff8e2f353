// Source of the Loopwatch Grafana dashboards: `npx tsx grafana/build-dashboards.ts` writes
// grafana/dashboards/*.json. Edit here, not in the JSON (tests/grafana checks they agree).
//
// Every panel carries its own SQL for the grafana-clickhouse-datasource plugin, with the
// plugin's macros: $__timeFilter(col), $__timeInterval(col), $__conditionalAll(cond, $var),
// template variables as ${var:singlequote}. Findings are read with FINAL (ReplacingMergeTree
// by version), typed call tables with FINAL too (a span that arrived twice counts once).
// A finding is placed in time by last_ts (when its waste was last accrued).
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const DATASOURCE = { type: 'grafana-clickhouse-datasource', uid: 'loopwatch-clickhouse' } as const;
/** The provisioned datasource's name (grafana/provisioning/datasources/clickhouse.yaml). */
export const DATASOURCE_NAME = 'Loopwatch ClickHouse';
const PLUGIN_VERSION = '4.0.0';

// ---------------------------------------------------------------------------------------
// Filters from the template variables (agent, model, service). `$__conditionalAll` turns a
// filter into 1=1 when "All" is selected. Written as plain strings: `${agent:singlequote}` is
// Grafana's syntax, not a template literal.
const cond = (expr: string, v: string) => '$__conditionalAll(' + expr + ' IN (${' + v + ':singlequote}), $' + v + ')';

/** Rows with agent, model, service columns (agent_llm_calls, agent_findings). */
const F_DIRECT = [cond('agent', 'agent'), cond('model', 'model'), cond('service', 'service')].join(' AND ');

/** Degradation findings: a model's day, whatever agents and services ran it (they name none). */
const F_MODEL = cond('model', 'model');

/** agent_tool_calls: tool spans rarely carry a model, so a session belongs to a model when
 * its tool calls say so or its LLM calls do. */
const F_TOOLS =
  [cond('agent', 'agent'), cond('service', 'service')].join(' AND ') +
  ' AND $__conditionalAll((model IN (${model:singlequote}) OR session_id IN (SELECT session_id FROM agent_llm_calls WHERE $__timeFilter(ts) AND model IN (${model:singlequote}))), $model)';

// ---------------------------------------------------------------------------------------
// Panel helpers

interface Target {
  refId: string;
  datasource: typeof DATASOURCE;
  editorType: 'sql';
  format: number;
  queryType: 'table' | 'timeseries';
  rawSql: string;
  pluginVersion: string;
}

type Json = Record<string, unknown>;

const FORMAT = { timeseries: 0, table: 1 } as const;

function target(sql: string, kind: 'table' | 'timeseries' = 'table', refId = 'A'): Target {
  return { refId, datasource: DATASOURCE, editorType: 'sql', format: FORMAT[kind], queryType: kind, rawSql: sql.trim(), pluginVersion: PLUGIN_VERSION };
}

interface PanelSpec {
  title: string;
  description?: string;
  type: 'stat' | 'timeseries' | 'table' | 'barchart' | 'piechart' | 'bargauge';
  sql: string;
  w: number;
  h: number;
  unit?: string;
  decimals?: number;
  overrides?: Json[];
  options?: Json;
  custom?: Json;
}

/** A link from a trace id cell to the plugin's trace view (the plugin's own "View trace"
 * link shape: a builder query in trace-id mode on the configured traces table). */
export function traceLink(title = 'Open trace in the trace view'): Json {
  return {
    title,
    url: '',
    targetBlank: false,
    internal: {
      datasourceUid: DATASOURCE.uid,
      datasourceName: DATASOURCE_NAME,
      query: {
        refId: 'Trace ID',
        datasource: DATASOURCE,
        editorType: 'builder',
        queryType: 'traces',
        format: 3,
        rawSql: '',
        pluginVersion: PLUGIN_VERSION,
        builderOptions: {
          database: 'default',
          table: 'otel_traces',
          queryType: 'traces',
          columns: [
            { name: 'Timestamp', hint: 'time' },
            { name: 'TraceId', hint: 'trace_id' },
            { name: 'SpanId', hint: 'trace_span_id' },
            { name: 'ParentSpanId', hint: 'trace_parent_span_id' },
            { name: 'ServiceName', hint: 'trace_service_name' },
            { name: 'SpanName', hint: 'trace_operation_name' },
            { name: 'Duration', hint: 'trace_duration_time' },
            { name: 'SpanAttributes', hint: 'trace_tags' },
            { name: 'ResourceAttributes', hint: 'trace_service_tags' },
            { name: 'StatusCode', hint: 'trace_status_code' },
            { name: 'StatusMessage', hint: 'trace_status_message' },
            { name: 'SpanKind', hint: 'trace_kind' },
          ],
          filters: [],
          orderBy: [],
          meta: {
            minimized: true,
            isTraceIdMode: true,
            traceId: '${__value.raw}',
            otelEnabled: true,
            otelVersion: 'latest',
            traceDurationUnit: 'nanoseconds',
            traceEventsColumnPrefix: 'Events',
            traceLinksColumnPrefix: 'Links',
          },
        },
      },
    },
  };
}

const traceIdOverride = (column = 'trace_id'): Json => ({
  matcher: { id: 'byName', options: column },
  properties: [{ id: 'links', value: [traceLink()] }],
});

const unitOverride = (column: string, unit: string, extra: Json[] = []): Json => ({
  matcher: { id: 'byName', options: column },
  properties: [{ id: 'unit', value: unit }, ...extra],
});

const rightAxis = (column: string, unit: string): Json => ({
  matcher: { id: 'byName', options: column },
  properties: [
    { id: 'unit', value: unit },
    { id: 'custom.axisPlacement', value: 'right' },
  ],
});

function layout(specs: PanelSpec[][]): Json[] {
  const panels: Json[] = [];
  let id = 1;
  let y = 0;
  for (const row of specs) {
    let x = 0;
    let rowH = 0;
    for (const p of row) {
      panels.push(panel(p, id++, { x, y, w: p.w, h: p.h }));
      x += p.w;
      rowH = Math.max(rowH, p.h);
    }
    y += rowH;
  }
  return panels;
}

function panel(p: PanelSpec, id: number, gridPos: Json): Json {
  const kind = p.type === 'timeseries' ? 'timeseries' : 'table';
  const defaults: Json = { ...(p.unit ? { unit: p.unit } : {}), ...(p.decimals !== undefined ? { decimals: p.decimals } : {}) };
  if (p.custom) defaults.custom = p.custom;
  if (p.type === 'timeseries') defaults.custom = { drawStyle: 'line', lineWidth: 1, fillOpacity: 10, showPoints: 'auto', spanNulls: true, ...(p.custom ?? {}) };
  if (p.type === 'table') defaults.custom = { align: 'auto', cellOptions: { type: 'auto' }, filterable: true, ...(p.custom ?? {}) };
  const options: Json =
    p.type === 'stat'
      ? { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: false }, colorMode: 'value', graphMode: 'none', textMode: 'auto', justifyMode: 'auto', orientation: 'auto' }
      : p.type === 'timeseries'
        ? { legend: { displayMode: 'list', placement: 'bottom', showLegend: true }, tooltip: { mode: 'multi', sort: 'desc' } }
        : p.type === 'table'
          ? { showHeader: true, cellHeight: 'sm', footer: { show: false, reducer: ['sum'], fields: '' } }
          : p.type === 'piechart'
            ? { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: true }, pieType: 'donut', legend: { displayMode: 'table', placement: 'right', showLegend: true, values: ['value'] } }
            : p.type === 'bargauge'
              ? { reduceOptions: { calcs: ['lastNotNull'], fields: '', values: true }, orientation: 'horizontal', displayMode: 'gradient', showUnfilled: true }
              : { orientation: 'horizontal', xTickLabelRotation: 0, showValue: 'auto', legend: { displayMode: 'list', placement: 'bottom', showLegend: true } };
  return {
    id,
    type: p.type,
    title: p.title,
    ...(p.description ? { description: p.description } : {}),
    gridPos,
    datasource: DATASOURCE,
    targets: [target(p.sql, kind)],
    fieldConfig: { defaults, overrides: p.overrides ?? [] },
    options: { ...options, ...(p.options ?? {}) },
  };
}

// ---------------------------------------------------------------------------------------
// Template variables (agent, model, service), from agent_tool_calls; model also from the
// LLM calls, because tool spans rarely carry the model that asked for them.

function queryVariable(name: string, label: string, sql: string): Json {
  return {
    name,
    label,
    type: 'query',
    datasource: DATASOURCE,
    query: sql,
    definition: sql,
    refresh: 2,
    multi: true,
    includeAll: true,
    current: { selected: true, text: ['All'], value: ['$__all'] },
    options: [],
    sort: 1,
    hide: 0,
    skipUrlSync: false,
  };
}

/** Values of a column seen in the range on tool calls or LLM calls (an agent whose calls are
 * all LLM calls, a planner, is a choice too). */
const seenValues = (col: string) =>
  `SELECT ${col} FROM (SELECT DISTINCT ${col} FROM agent_tool_calls WHERE $__timeFilter(ts) AND ${col} != '' UNION DISTINCT SELECT DISTINCT ${col} FROM agent_llm_calls WHERE $__timeFilter(ts) AND ${col} != '') ORDER BY ${col}`;

export const VARIABLES: Json[] = [
  queryVariable('agent', 'Agent', seenValues('agent')),
  queryVariable('model', 'Model', seenValues('model')),
  queryVariable('service', 'Service', seenValues('service')),
];

// ---------------------------------------------------------------------------------------
// Shared SQL. Definitions follow queries/reports/session-scorecard.sql and
// model-reliability.sql (Grafana needs the SQL inline, so it is repeated here):
// - a loop is a finding of any detector but degradation that is not info (redundant calls are
//   waste, not a loop), as the loop alert has it;
// - detectors overlap (a stuck run is also a repeat and redundant calls), so a session's waste
//   is, per measure and per cluster of its findings that overlap in time, the largest of the
//   per-detector sums, and the clusters (separate loops) add up;
// - LLM cost is the reported cost when > 0, else tokens x model_prices;
// - a tool call belongs to the model of the session's latest LLM call that started before it (a
//   streamed LLM call runs the tool calls it requests before it ends).

/**
 * The findings matching `where` (degradation apart) that make up each session's waste, `cf`
 * (lf's columns, one row per finding chosen). Detectors overlap: a stuck run is also a repeat and
 * redundant calls, a runaway's calls may hold a retry storm. The run detectors (repeat, stuck,
 * oscillation, retry_storm: a contiguous run of calls each) form clusters of findings that overlap
 * in time; a cluster counts by its largest detector (by wasted calls), separate clusters add up.
 * Any other detector (redundant calls, error_loop, runaway: calls spread over the session) counts
 * as a whole per session, together with the clusters outside its span of time. The session's
 * waste is the largest of these choices (the clusters alone, or one such detector with the
 * clusters outside it), so a finding added never lowers it. One choice per session, by wasted
 * calls, for every measure: waste by tool then adds up to waste by agent.
 */
const chosenFindings = (where: string) => `
  lf AS (
    SELECT *, if(is_run, sum(starts) OVER (PARTITION BY session_id, is_run ORDER BY first_ts, last_ts, finding_id ROWS UNBOUNDED PRECEDING), 0) AS cluster
    FROM (
      SELECT *, first_ts >= max(last_ts) OVER (PARTITION BY session_id, is_run ORDER BY first_ts, last_ts, finding_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS starts
      FROM (
        SELECT finding_id, session_id, detector, severity, agent, model, service, trace_id, tools, first_ts, last_ts,
               wasted_calls, wasted_tokens, wasted_cost_usd, wasted_time_ns,
               detector IN ('repeat', 'stuck', 'oscillation', 'retry_storm') AS is_run
        FROM agent_findings FINAL
        WHERE detector != 'degradation' AND ${where}
      )
    )
  ),
  runs AS (
    SELECT session_id, cluster, min(d_first) AS c_first, max(d_last) AS c_last, max(d_calls) AS c_calls, argMax(detector, d_calls) AS top
    FROM (SELECT session_id, cluster, detector, min(first_ts) AS d_first, max(last_ts) AS d_last, sum(wasted_calls) AS d_calls FROM lf WHERE cluster > 0 GROUP BY session_id, cluster, detector)
    GROUP BY session_id, cluster
  ),
  wide AS (
    SELECT session_id, detector, min(first_ts) AS w_first, max(last_ts) AS w_last, sum(wasted_calls) AS w_calls
    FROM lf WHERE cluster = 0 GROUP BY session_id, detector
  ),
  win AS (
    -- per session the choice with the most wasted calls ('' = the clusters alone; on a tie, them)
    -- and, for a detector, its span of time
    SELECT session_id, argMax((detector, w_first, w_last), (calls, detector = '')) AS choice,
           choice.1 AS winner, choice.2 AS win_first, choice.3 AS win_last
    FROM (
      SELECT session_id, '' AS detector, toDateTime64(0, 9) AS w_first, toDateTime64(0, 9) AS w_last, sum(c_calls) AS calls
      FROM runs GROUP BY session_id
      UNION ALL
      SELECT w.session_id AS session_id, w.detector AS detector, any(w.w_first) AS w_first, any(w.w_last) AS w_last,
             any(w.w_calls) + sumIf(r.c_calls, NOT (r.c_first < w.w_last AND r.c_last > w.w_first)) AS calls
      FROM wide AS w LEFT JOIN runs AS r ON r.session_id = w.session_id
      GROUP BY w.session_id, w.detector
    )
    GROUP BY session_id
  ),
  cf AS (
    SELECT f.* FROM lf AS f
    INNER JOIN win AS v ON v.session_id = f.session_id
    LEFT JOIN runs AS r ON r.session_id = f.session_id AND r.cluster = f.cluster
    WHERE if(f.cluster = 0, f.detector = v.winner,
             f.detector = r.top AND (v.winner = '' OR NOT (r.c_first < v.win_last AND r.c_last > v.win_first)))
  )`;

/** Per session (findings active in the range, degradation apart): findings, loops and waste. */
const SESSION_WASTE = `${chosenFindings(`$__timeFilter(last_ts) AND ${F_DIRECT}`)},
  sw AS (
    SELECT f.session_id AS session_id, f.agent AS agent, f.model AS model, f.service AS service, f.trace_id AS trace_id,
           f.last_ts AS last_ts, f.findings AS findings, f.loops AS loops, f.kinds AS kinds,
           w.wasted_calls AS wasted_calls, w.wasted_tokens AS wasted_tokens, w.wasted_cost_usd AS wasted_cost_usd, w.wasted_time_ns AS wasted_time_ns
    FROM (
      SELECT session_id, any(agent) AS agent, any(model) AS model, any(service) AS service, any(trace_id) AS trace_id,
             max(last_ts) AS last_ts, count() AS findings, countIf(severity != 'info') AS loops, arraySort(groupUniqArray(detector)) AS kinds
      FROM lf
      GROUP BY session_id
    ) AS f
    LEFT JOIN (
      SELECT session_id, sum(wasted_calls) AS wasted_calls, sum(wasted_tokens) AS wasted_tokens, sum(wasted_cost_usd) AS wasted_cost_usd, sum(wasted_time_ns) AS wasted_time_ns
      FROM cf
      GROUP BY session_id
    ) AS w ON w.session_id = f.session_id
  )`;

/** LLM calls in the range (with the variables' filters) and their price key (join loopwatch_model_key_prices on it). */
const LLM_CALLS = `
  llm AS (
    SELECT session_id, ts, end_ts, duration_ns, model, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, total_tokens,
           reported_cost_usd, status, loopwatch_model_key(model) AS model_key
    FROM agent_llm_calls FINAL
    WHERE $__timeFilter(ts) AND model != '' AND ${F_DIRECT}
  )`;

/** An LLM call's cost, in a query over `llm AS l LEFT JOIN loopwatch_model_key_prices AS pr` (queries/schema/020_operator_prices.sql). */
const LLM_COST = 'loopwatch_llm_cost(l.reported_cost_usd, l.input_tokens, l.cache_read_tokens, l.cache_creation_tokens, l.output_tokens, pr.price)';

// The sessions of the LLM calls the agent and service variables keep. With both All it keeps every
// session with a model call in the range, which the ASOF INNER JOIN below keeps anyway: left out
// then (the check read the LLM calls twice more, over a second at a week of 1M calls).
const IN_LLM_SESSIONS = ['agent', 'service'].map((v) => `$__conditionalAll(session_id IN (SELECT session_id FROM llm), $${v})`).join(' AND ');

/** Calls the tool ran: not those the in-process LoopGuard halted before they ran (no tool's failure).
 * They are calls (the model asked for them), counted as the Sessions scorecard counts them: in
 * the calls, not in the errors, nor in latencies. */
const RAN = "error_type != 'LoopDetectedError'";

/** The tool calls whose requesting LLM call is in the range, attributed to its model (needs
 * LLM_CALLS), as model-reliability.sql. The attribution reads the sessions' LLM calls of every
 * model, named or not, and the model variable filters what it attributes: filtered first, a call
 * another model requested went to the chosen model's latest call before it. */
const TOOLS_BY_MODEL = `
  tools AS (
    SELECT * FROM (
      SELECT t.session_id AS session_id, t.ts AS ts, t.tool AS tool, t.status AS status, l.model AS model, l.ts AS llm_ts
      FROM (
        SELECT session_id, ts, tool, status FROM agent_tool_calls FINAL
        WHERE ts >= $__fromTime AND ts <= $__toTime + INTERVAL 1 HOUR AND ${IN_LLM_SESSIONS}
          AND ${RAN}
      ) AS t
      ASOF INNER JOIN (
        SELECT session_id, ts, model FROM agent_llm_calls FINAL
        WHERE ts >= $__fromTime AND ts <= $__toTime + INTERVAL 1 HOUR AND ${IN_LLM_SESSIONS}
      ) AS l ON t.session_id = l.session_id AND t.ts >= l.ts
    )
    -- as model-reliability.sql: the tool calls whose requesting LLM call is in the range, of a named model
    WHERE llm_ts <= $__toTime AND model != '' AND ${cond('model', 'model')}
  )`;

/** One row per session with a tool or LLM call in the range: the scorecard of
 * queries/reports/session-scorecard.sql (whole history of those sessions), plus its trace. */
const SESSION_SCORECARD = `
WITH
  -- the 500 sessions shown, most recently active first (as the report's scope): only they are
  -- scored (a week may hold 100,000s; scoring all and keeping 500 took seconds and GBs)
  scope AS (
    SELECT session_id, max(ts) AS last_active FROM (
      SELECT session_id, ts FROM agent_tool_calls WHERE $__timeFilter(ts) AND ${F_TOOLS}
      UNION ALL
      SELECT session_id, ts FROM agent_llm_calls WHERE $__timeFilter(ts) AND ${F_DIRECT}
    )
    GROUP BY session_id
    ORDER BY last_active DESC
    LIMIT 500
  ),
  calls AS (
    SELECT session_id, ts, end_ts, span_id, trace_id, tool, args_hash, status, NOT (${RAN}) AS is_halted, agent, service,
           row_number() OVER (PARTITION BY session_id ORDER BY ts, span_id) AS seq
    FROM agent_tool_calls FINAL
    WHERE session_id IN (SELECT session_id FROM scope)
  ),
  marked AS (
    SELECT *,
           lagInFrame(tool, 1, '') OVER w = tool AND lagInFrame(args_hash, 1, 0) OVER w = args_hash
               AND lagInFrame(status, 1, '') OVER w = 'error' AND lagInFrame(toUInt8(is_halted), 1, 1) OVER w = 0 AND NOT is_halted AS is_retry
    FROM calls
    WINDOW w AS (PARTITION BY session_id ORDER BY seq ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
  ),
  per_session AS (
    SELECT session_id, any(agent) AS s_agent, any(service) AS s_service, argMin(trace_id, seq) AS s_trace,
           count() AS calls, countIf(status = 'error' AND NOT is_halted) AS errors, countIf(is_halted) AS halted, countIf(is_retry) AS retries,
           argMax(status, seq) AS last_status, max(ts) AS last_call_ts, min(ts) AS first_tool_ts, max(end_ts) AS last_tool_end
    FROM marked
    GROUP BY session_id
  ),
  recovery AS (
    SELECT session_id, countIf(first_error > 0) AS failed_tools, countIf(first_error > 0 AND last_ok > first_error) AS recovered_tools
    FROM (
      SELECT session_id, tool, minIf(seq, status = 'error' AND NOT is_halted) AS first_error, maxIf(seq, status = 'ok') AS last_ok
      FROM calls GROUP BY session_id, tool
    )
    GROUP BY session_id
  ),${chosenFindings('session_id IN (SELECT session_id FROM scope)')},
  findings AS (
    SELECT f.session_id AS session_id, f.loops AS loops, w.wasted_calls AS wasted_calls, w.wasted_cost AS wasted_cost,
           f.last_finding_end AS last_finding_end, f.kinds AS kinds
    FROM (
      SELECT session_id, countIf(severity != 'info') AS loops, maxIf(last_ts, severity != 'info') AS last_finding_end,
             arrayStringConcat(arraySort(groupUniqArray(detector)), ', ') AS kinds
      FROM lf
      GROUP BY session_id
    ) AS f
    LEFT JOIN (SELECT session_id, sum(wasted_calls) AS wasted_calls, sum(wasted_cost_usd) AS wasted_cost FROM cf GROUP BY session_id) AS w ON w.session_id = f.session_id
  ),
  llm AS (
    SELECT session_id, model, ts, end_ts, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, total_tokens, reported_cost_usd,
           loopwatch_model_key(model) AS model_key, agent, service, trace_id, status,
           (session_id, parent_span_id) IN (SELECT session_id, span_id FROM calls) AS inside
    FROM agent_llm_calls FINAL
    WHERE session_id IN (SELECT session_id FROM scope)
  ),
  llm_session AS (
    SELECT l.session_id AS session_id, count() AS llm_calls, sum(l.total_tokens) AS tokens,
           sum(${LLM_COST}) AS cost_usd,
           topKWeighted(1)(l.model, l.total_tokens)[1] AS model, min(l.ts) AS first_llm_ts, max(l.end_ts) AS last_llm_end,
           countIf(NOT l.inside) AS own_llm_calls, maxIf(l.end_ts, NOT l.inside) AS last_own_llm_end, toString(argMaxIf(l.status, l.end_ts, NOT l.inside)) AS last_own_status,
           any(l.agent) AS agent, any(l.service) AS service, argMin(l.trace_id, l.ts) AS trace_id
    FROM llm AS l LEFT JOIN loopwatch_model_key_prices AS pr ON l.model_key = pr.model_key
    GROUP BY l.session_id
  )
SELECT
  sc.session_id AS session_id,
  if(s.calls > 0, s.s_trace, l.trace_id) AS trace_id,
  if(s.calls > 0, s.s_agent, l.agent) AS agent,
  if(s.calls > 0, s.s_service, l.service) AS service,
  l.model AS model,
  multiIf(s.calls = 0, l.first_llm_ts, l.llm_calls > 0, least(s.first_tool_ts, l.first_llm_ts), s.first_tool_ts) AS started,
  round((toUnixTimestamp64Nano(greatest(s.last_tool_end, l.last_llm_end)) - toUnixTimestamp64Nano(started)) / 1e9, 3) AS wall_time_s,
  s.calls AS tool_calls,
  s.errors AS tool_errors,
  if(s.calls = 0, 0, round(s.errors / s.calls, 4)) AS error_rate,
  s.halted AS halted,
  s.retries AS retries,
  toUInt8(r.recovered_tools > 0) AS recovered,
  -- the last tool call succeeded, and so did the agent's last LLM call if it ended after it (a final answer that failed)
  toUInt8((s.calls = 0 OR toString(s.last_status) = 'ok')
          AND (l.own_llm_calls = 0 OR (s.calls > 0 AND s.last_tool_end >= l.last_own_llm_end) OR l.last_own_status = 'ok')
          AND NOT (f.loops > 0 AND f.last_finding_end >= if(s.calls > 0, s.last_call_ts, l.last_llm_end))) AS ended_cleanly,
  l.llm_calls AS llm_calls,
  l.tokens AS tokens,
  round(l.cost_usd, 6) AS cost_usd,
  f.loops AS loops,
  f.kinds AS loop_kinds,
  least(f.wasted_calls, s.calls) AS wasted_calls,
  round(f.wasted_cost, 6) AS wasted_cost_usd,
  if(s.calls = 0, 0, round(least(f.wasted_calls, s.calls) / s.calls, 4)) AS waste_ratio
FROM scope AS sc
LEFT JOIN per_session AS s ON s.session_id = sc.session_id
LEFT JOIN recovery AS r ON r.session_id = sc.session_id
LEFT JOIN findings AS f ON f.session_id = sc.session_id
LEFT JOIN llm_session AS l ON l.session_id = sc.session_id
ORDER BY sc.last_active DESC
LIMIT 500`;

// ---------------------------------------------------------------------------------------
// Dashboards

const links = [{ title: 'Loopwatch', type: 'dashboards', tags: ['loopwatch'], asDropdown: true, includeVars: true, keepTime: true, icon: 'external link' }];

function dashboard(uid: string, title: string, description: string, panels: Json[], extra: Json = {}): Json {
  return {
    uid,
    title,
    description,
    tags: ['loopwatch'],
    editable: true,
    graphTooltip: 1,
    timezone: 'utc',
    schemaVersion: 39,
    version: 1,
    refresh: '30s',
    time: (extra.time as Json | undefined) ?? { from: 'now-24h', to: 'now' },
    timepicker: {},
    fiscalYearStartMonth: 0,
    liveNow: false,
    links,
    templating: { list: VARIABLES },
    annotations: {
      list: [
        {
          builtIn: 1,
          datasource: { type: 'grafana', uid: '-- Grafana --' },
          enable: true,
          hide: true,
          iconColor: 'rgba(0, 211, 255, 1)',
          name: 'Annotations & Alerts',
          type: 'dashboard',
        },
        ...((extra.annotations as Json[] | undefined) ?? []),
      ],
    },
    panels,
  };
}

const overview = dashboard(
  'loopwatch-overview',
  'Loopwatch / Overview',
  'Sessions, tool calls, loop findings by kind, waste over time, the agents and tools that loop most.',
  layout([
    [
      {
        title: 'Sessions', type: 'stat', w: 4, h: 4, description: 'Sessions with a tool or an LLM call in the range.',
        sql: `SELECT uniqExact(session_id) AS sessions FROM (
  SELECT session_id FROM agent_tool_calls WHERE $__timeFilter(ts) AND ${F_TOOLS}
  UNION ALL
  SELECT session_id FROM agent_llm_calls WHERE $__timeFilter(ts) AND ${F_DIRECT}
)`,
      },
      { title: 'Tool calls', type: 'stat', w: 4, h: 4, sql: `SELECT count() AS tool_calls FROM agent_tool_calls FINAL WHERE ts >= $__fromTime AND ts <= $__toTime AND ${F_TOOLS}` },
      {
        title: 'Tool error rate', type: 'stat', w: 4, h: 4, unit: 'percentunit', decimals: 1,
        sql: `SELECT countIf(status = 'error' AND ${RAN}) / greatest(count(), 1) AS error_rate FROM agent_tool_calls FINAL WHERE $__timeFilter(ts) AND ${F_TOOLS}`,
      },
      {
        title: 'Loop findings', type: 'stat', w: 4, h: 4,
        description: 'Findings of every detector but degradation and redundant calls (info: waste, not a loop), as the loop alert counts them.',
        sql: `SELECT countIf(detector != 'degradation' AND severity != 'info') AS findings FROM agent_findings FINAL WHERE $__timeFilter(last_ts) AND ${F_DIRECT}`,
      },
      {
        title: 'Wasted tokens', type: 'stat', w: 4, h: 4, unit: 'short',
        sql: `WITH${SESSION_WASTE}
SELECT sum(wasted_tokens) AS wasted_tokens FROM sw`,
      },
      {
        title: 'Wasted cost', type: 'stat', w: 4, h: 4, unit: 'currencyUSD', decimals: 2,
        sql: `WITH${SESSION_WASTE}
SELECT sum(wasted_cost_usd) AS wasted_cost_usd FROM sw`,
      },
    ],
    [
      {
        title: 'Findings by kind over time', type: 'timeseries', w: 12, h: 8,
        custom: { drawStyle: 'bars', fillOpacity: 60, stacking: { mode: 'normal', group: 'A' } },
        sql: `
SELECT $__timeInterval(last_ts) AS time, detector, count() AS findings
FROM agent_findings FINAL
WHERE $__timeFilter(last_ts) AND detector != 'degradation' AND ${F_DIRECT}
GROUP BY time, detector
ORDER BY time`,
      },
      {
        title: 'Waste over time (tokens, cost)', type: 'timeseries', w: 12, h: 8, unit: 'short',
        overrides: [rightAxis('wasted_cost_usd', 'currencyUSD')],
        description: 'A session’s waste is placed at its last loop’s end; detectors on the same calls are not added up, separate loops are.',
        sql: `
WITH${SESSION_WASTE}
SELECT $__timeInterval(last_ts) AS time, sum(wasted_tokens) AS wasted_tokens, sum(wasted_cost_usd) AS wasted_cost_usd
FROM sw
GROUP BY time
ORDER BY time`,
      },
    ],
    [
      {
        title: 'Tool calls over time by status', type: 'timeseries', w: 12, h: 8,
        custom: { stacking: { mode: 'normal', group: 'A' } },
        sql: `
SELECT $__timeInterval(ts) AS time, if(${RAN}, toString(status), 'halted') AS status, count() AS calls
FROM agent_tool_calls FINAL
WHERE $__timeFilter(ts) AND ${F_TOOLS}
GROUP BY time, status
ORDER BY time`,
      },
      {
        title: 'Findings by kind', type: 'piechart', w: 12, h: 8,
        sql: `
SELECT detector AS kind, count() AS findings
FROM agent_findings FINAL
WHERE $__timeFilter(last_ts) AND detector != 'degradation' AND ${F_DIRECT}
GROUP BY kind
ORDER BY findings DESC`,
      },
    ],
    [
      {
        title: 'Top looping agents', type: 'table', w: 12, h: 8,
        overrides: [unitOverride('wasted_cost_usd', 'currencyUSD')],
        description: 'loops: loop findings (redundant calls apart); waste per session: per loop the largest detector’s (detectors overlap on the same calls), separate loops added up.',
        sql: `
WITH${SESSION_WASTE}
SELECT agent, sum(loops) AS loops, count() AS sessions, sum(wasted_calls) AS wasted_calls, sum(wasted_tokens) AS wasted_tokens,
       round(sum(wasted_cost_usd), 6) AS wasted_cost_usd
FROM sw
GROUP BY agent
ORDER BY loops DESC, wasted_cost_usd DESC
LIMIT 10`,
      },
      {
        title: 'Top looping tools', type: 'table', w: 12, h: 8,
        description: 'loops: loop findings naming the tool (redundant calls apart). Waste: for each measure, each loop’s largest detector (as in the session waste), a finding over several tools (an oscillation) split evenly between them.',
        overrides: [unitOverride('wasted_cost_usd', 'currencyUSD')],
        sql: `
WITH${SESSION_WASTE}
SELECT tool, countIf(severity != 'info') AS loops, uniqExact(session_id) AS sessions, groupUniqArray(agent) AS agents,
       round(sumIf(wasted_calls / length(tools), chosen), 1) AS wasted_calls,
       round(sumIf(wasted_cost_usd / length(tools), chosen), 6) AS wasted_cost_usd
FROM (SELECT *, (finding_id, detector) IN (SELECT finding_id, detector FROM cf) AS chosen FROM lf)
ARRAY JOIN tools AS tool
GROUP BY tool
ORDER BY loops DESC, wasted_cost_usd DESC
LIMIT 10`,
      },
    ],
  ]),
);

const sessions = dashboard(
  'loopwatch-sessions',
  'Loopwatch / Sessions',
  'One scorecard row per agent session; a trace id opens the session in the trace view.',
  layout([
    [
      {
        title: 'Sessions over time', type: 'timeseries', w: 24, h: 7,
        sql: `
SELECT $__timeInterval(started) AS time, count() AS sessions, countIf(looped) AS looping_sessions
FROM (
  -- sessions with a tool or an LLM call in the range, at their first
  SELECT session_id, min(ts) AS started,
         session_id IN (SELECT session_id FROM agent_findings FINAL WHERE detector != 'degradation' AND severity != 'info') AS looped
  FROM (
    SELECT session_id, ts FROM agent_tool_calls FINAL WHERE $__timeFilter(ts) AND ${F_TOOLS}
    UNION ALL
    SELECT session_id, ts FROM agent_llm_calls FINAL WHERE $__timeFilter(ts) AND ${F_DIRECT}
  )
  GROUP BY session_id
)
GROUP BY time
ORDER BY time`,
      },
    ],
    [
      {
        title: 'Session scorecard', type: 'table', w: 24, h: 14,
        description: 'waste_ratio = wasted calls / tool calls. Click a trace id to open the session in the trace view.',
        overrides: [
          traceIdOverride('trace_id'),
          unitOverride('cost_usd', 'currencyUSD'),
          unitOverride('wasted_cost_usd', 'currencyUSD'),
          unitOverride('error_rate', 'percentunit'),
          unitOverride('waste_ratio', 'percentunit', [{ id: 'custom.cellOptions', value: { type: 'color-background', mode: 'gradient' } }, { id: 'thresholds', value: { mode: 'absolute', steps: [{ color: 'green', value: null }, { color: 'orange', value: 0.1 }, { color: 'red', value: 0.3 }] } }]),
          unitOverride('wall_time_s', 's'),
        ],
        sql: SESSION_SCORECARD,
      },
    ],
    [
      {
        title: 'Loop spans (loopwatch.loop)', type: 'table', w: 24, h: 9,
        description: 'The loops found, each with the span it wrote into the looping session’s trace; click a trace id to see it in place.',
        overrides: [traceIdOverride('trace_id'), unitOverride('wasted_cost_usd', 'currencyUSD')],
        sql: `
-- each finding's latest figures (agent_findings): a loop span shows its finding as of the version
-- that wrote it, and a loop that stopped growing may have written none for its last versions
SELECT first_ts AS time, trace_id, service, agent, detector, severity, arrayStringConcat(tools, ',') AS tools,
       repeats, wasted_cost_usd, session_id, message
FROM agent_findings FINAL
-- a loop whose last call is in the range (as the other loop panels: by its end), also one
-- that began before it; loops of over a day start further back than this reads
WHERE first_ts <= $__toTime AND first_ts >= $__fromTime - INTERVAL 1 DAY AND last_ts >= $__fromTime
  AND detector != 'degradation' AND ${F_DIRECT}
ORDER BY time DESC
LIMIT 500`,
      },
    ],
  ]),
);

const loops = dashboard(
  'loopwatch-loops',
  'Loopwatch / Loops & waste',
  'Every loop finding, and the calls, tokens, money and time it wasted by agent, model and tool.',
  layout([
    [
      {
        title: 'Findings', type: 'table', w: 24, h: 12,
        overrides: [traceIdOverride('trace_id'), unitOverride('wasted_cost_usd', 'currencyUSD'), unitOverride('wasted_time_s', 's')],
        sql: `
SELECT last_ts AS time, detector, severity, agent, model, service, arrayStringConcat(tools, ', ') AS tools,
       repeats, wasted_calls, wasted_tokens, round(wasted_cost_usd, 6) AS wasted_cost_usd,
       round(wasted_time_ns / 1e9, 3) AS wasted_time_s, message, session_id, trace_id
FROM agent_findings FINAL
WHERE $__timeFilter(last_ts) AND detector != 'degradation' AND ${F_DIRECT}
ORDER BY last_ts DESC
LIMIT 1000`,
      },
    ],
    [
      {
        title: 'Waste by agent', type: 'table', w: 8, h: 9,
        overrides: [unitOverride('wasted_cost_usd', 'currencyUSD'), unitOverride('wasted_time_s', 's')],
        sql: `
WITH${SESSION_WASTE}
SELECT agent, sum(findings) AS findings, count() AS sessions, sum(wasted_calls) AS wasted_calls, sum(wasted_tokens) AS wasted_tokens,
       round(sum(wasted_cost_usd), 6) AS wasted_cost_usd, round(sum(wasted_time_ns) / 1e9, 3) AS wasted_time_s
FROM sw
GROUP BY agent
ORDER BY wasted_cost_usd DESC`,
      },
      {
        title: 'Waste by model', type: 'table', w: 8, h: 9,
        overrides: [unitOverride('wasted_cost_usd', 'currencyUSD'), unitOverride('wasted_time_s', 's')],
        sql: `
WITH${SESSION_WASTE}
SELECT model, sum(findings) AS findings, count() AS sessions, sum(wasted_calls) AS wasted_calls, sum(wasted_tokens) AS wasted_tokens,
       round(sum(wasted_cost_usd), 6) AS wasted_cost_usd, round(sum(wasted_time_ns) / 1e9, 3) AS wasted_time_s
FROM sw
GROUP BY model
ORDER BY wasted_cost_usd DESC`,
      },
      {
        title: 'Waste by tool', type: 'table', w: 8, h: 9,
        description: 'For each measure, the waste of each loop’s largest detector (so the column totals equal Waste by agent’s); a finding over several tools splits its waste evenly between them.',
        overrides: [unitOverride('wasted_cost_usd', 'currencyUSD')],
        sql: `
WITH${SESSION_WASTE}
SELECT tool, count() AS findings,
       round(sumIf(wasted_calls / length(tools), chosen), 1) AS wasted_calls,
       round(sumIf(wasted_tokens / length(tools), chosen)) AS wasted_tokens,
       round(sumIf(wasted_cost_usd / length(tools), chosen), 6) AS wasted_cost_usd
FROM (SELECT *, (finding_id, detector) IN (SELECT finding_id, detector FROM cf) AS chosen FROM lf)
ARRAY JOIN tools AS tool
GROUP BY tool
ORDER BY wasted_cost_usd DESC`,
      },
    ],
    [
      {
        title: 'Wasted cost by detector over time', type: 'timeseries', w: 12, h: 8, unit: 'currencyUSD',
        description: 'Each detector’s own findings: detectors overlap, so the series are not to be added up (nor stacked).',
        custom: { drawStyle: 'bars', fillOpacity: 60, stacking: { mode: 'none', group: 'A' } },
        sql: `
SELECT $__timeInterval(last_ts) AS time, detector, sum(wasted_cost_usd) AS wasted_cost_usd
FROM agent_findings FINAL
WHERE $__timeFilter(last_ts) AND detector != 'degradation' AND ${F_DIRECT}
GROUP BY time, detector
ORDER BY time`,
      },
      {
        title: 'Wasted calls by detector and severity', type: 'barchart', w: 12, h: 8,
        options: { stacking: 'normal' },
        sql: `
SELECT detector, sumIf(wasted_calls, severity = 'critical') AS critical, sumIf(wasted_calls, severity = 'warning') AS warning,
       sumIf(wasted_calls, severity NOT IN ('critical', 'warning')) AS other
FROM agent_findings FINAL
WHERE $__timeFilter(last_ts) AND detector != 'degradation' AND ${F_DIRECT}
GROUP BY detector
ORDER BY detector`,
      },
    ],
  ]),
);

// The per-tool series show the busiest tools of the range (with the tool variable's filter): with
// thousands of tools each panel drew one series per tool (9,600 series, 12 MB a panel in a review
// with 10,000 tools). The table lists every tool, the most called first, up to 1,000.
const TOP_TOOLS = `tool IN (SELECT tool FROM agent_tool_calls WHERE $__timeFilter(ts) AND ${F_TOOLS} GROUP BY tool ORDER BY count() DESC, tool LIMIT 10)`;

const tools = dashboard(
  'loopwatch-tools',
  'Loopwatch / Tools',
  'Calls, error rate and latency percentiles (p50, p95, p99) per tool.',
  layout([
    [
      {
        title: 'Tools', type: 'table', w: 24, h: 10,
        overrides: [unitOverride('error_rate', 'percentunit'), unitOverride('p50_ms', 'ms'), unitOverride('p95_ms', 'ms'), unitOverride('p99_ms', 'ms')],
        sql: `
SELECT tool, count() AS calls, countIf(status = 'error' AND ${RAN}) AS errors, round(errors / calls, 4) AS error_rate,
       uniqExact(session_id) AS sessions, round(calls / sessions, 2) AS calls_per_session,
       round(quantileExactIf(0.5)(duration_ns, ${RAN}) / 1e6, 3) AS p50_ms,
       round(quantileExactIf(0.95)(duration_ns, ${RAN}) / 1e6, 3) AS p95_ms,
       round(quantileExactIf(0.99)(duration_ns, ${RAN}) / 1e6, 3) AS p99_ms
FROM agent_tool_calls FINAL
WHERE $__timeFilter(ts) AND ${F_TOOLS}
GROUP BY tool
ORDER BY calls DESC
LIMIT 1000`,
      },
    ],
    [
      {
        title: 'Calls per tool (10 most called)', type: 'timeseries', w: 8, h: 8,
        sql: `
SELECT $__timeInterval(ts) AS time, tool, count() AS calls
FROM agent_tool_calls FINAL
WHERE $__timeFilter(ts) AND ${F_TOOLS} AND ${TOP_TOOLS}
GROUP BY time, tool
ORDER BY time`,
      },
      {
        title: 'Error rate per tool (10 most called)', type: 'timeseries', w: 8, h: 8, unit: 'percentunit',
        sql: `
SELECT $__timeInterval(ts) AS time, tool, countIf(status = 'error' AND ${RAN}) / count() AS error_rate
FROM agent_tool_calls FINAL
WHERE $__timeFilter(ts) AND ${F_TOOLS} AND ${TOP_TOOLS}
GROUP BY time, tool
ORDER BY time`,
      },
      {
        title: 'Latency p95 per tool (10 most called)', type: 'timeseries', w: 8, h: 8, unit: 'ms',
        sql: `
SELECT $__timeInterval(ts) AS time, tool, quantile(0.95)(duration_ns) / 1e6 AS p95_ms
FROM agent_tool_calls FINAL
WHERE $__timeFilter(ts) AND ${F_TOOLS} AND ${TOP_TOOLS}
GROUP BY time, tool
ORDER BY time`,
      },
    ],
    [
      {
        title: 'Top tool errors', type: 'table', w: 24, h: 8,
        sql: `
SELECT tool, error_type, any(error_message) AS example_message, count() AS errors,
       uniqExact(session_id) AS sessions, max(ts) AS last_seen
FROM agent_tool_calls FINAL
WHERE $__timeFilter(ts) AND status = 'error' AND ${F_TOOLS} AND ${RAN}
GROUP BY tool, error_type
ORDER BY errors DESC
LIMIT 50`,
      },
    ],
  ]),
);

const models = dashboard(
  'loopwatch-models',
  'Loopwatch / Models',
  'Per-model reliability (tool-call error rate, loop rate, recovery rate, cost per session, latency) and its daily trend, with degradation findings.',
  layout([
    [
      {
        title: 'Model reliability', type: 'table', w: 24, h: 9,
        description:
          'Per model over the range, as queries/reports/model-reliability.sql per day. A tool call belongs to the model whose LLM call requested it. loop_rate = sessions with a loop finding / sessions; recovery_rate = sessions where a failed tool later succeeded / sessions with a failed tool; cost = reported, else tokens x model_prices.',
        overrides: [
          unitOverride('tool_error_rate', 'percentunit'),
          unitOverride('loop_rate', 'percentunit'),
          unitOverride('recovery_rate', 'percentunit'),
          unitOverride('llm_error_rate', 'percentunit'),
          unitOverride('cost_per_session_usd', 'currencyUSD'),
          unitOverride('llm_p50_ms', 'ms'),
          unitOverride('llm_p95_ms', 'ms'),
          unitOverride('llm_p99_ms', 'ms'),
        ],
        sql: `
WITH
${LLM_CALLS},
  llm_model AS (
    SELECT l.model AS model, uniqExact(l.session_id) AS sessions, count() AS llm_calls, countIf(l.status = 'error') AS llm_errors,
           sum(l.total_tokens) AS tokens, sum(${LLM_COST}) AS cost_usd,
           quantilesExact(0.5, 0.95, 0.99)(l.duration_ns / 1e6) AS latency_ms
    FROM llm AS l LEFT JOIN loopwatch_model_key_prices AS pr ON l.model_key = pr.model_key
    GROUP BY model
  ),
${TOOLS_BY_MODEL},
  tool_slices AS (
    SELECT model, session_id, tool, count() AS calls, countIf(status = 'error') AS errors,
           minIf(ts, status = 'error') AS first_error, maxIf(ts, status = 'ok') AS last_ok
    FROM tools GROUP BY model, session_id, tool
  ),
  session_slices AS (
    SELECT model, session_id, sum(calls) AS session_calls, sum(errors) AS session_errors,
           max(errors > 0 AND last_ok > first_error) AS recovered
    FROM tool_slices GROUP BY model, session_id
  ),
  tool_model AS (
    SELECT model, sum(session_calls) AS tool_calls, sum(session_errors) AS tool_errors,
           countIf(session_errors > 0) AS error_sessions, countIf(session_errors > 0 AND recovered) AS recovered_sessions
    FROM session_slices GROUP BY model
  ),
  loop_model AS (
    SELECT model, uniqExact(session_id) AS loop_sessions
    FROM llm
    WHERE session_id IN (SELECT session_id FROM agent_findings FINAL WHERE detector != 'degradation' AND severity != 'info')
    GROUP BY model
  )
SELECT
  d.model AS model,
  d.sessions AS sessions,
  t.tool_calls AS tool_calls,
  round(if(t.tool_calls > 0, t.tool_errors / t.tool_calls, 0), 4) AS tool_error_rate,
  round(lp.loop_sessions / d.sessions, 4) AS loop_rate,
  if(t.error_sessions > 0, round(t.recovered_sessions / t.error_sessions, 4), NULL) AS recovery_rate,
  d.llm_calls AS llm_calls,
  round(d.llm_errors / d.llm_calls, 4) AS llm_error_rate,
  d.tokens AS tokens,
  round(d.cost_usd / d.sessions, 6) AS cost_per_session_usd,
  round(d.latency_ms[1], 1) AS llm_p50_ms,
  round(d.latency_ms[2], 1) AS llm_p95_ms,
  round(d.latency_ms[3], 1) AS llm_p99_ms
FROM llm_model AS d
LEFT JOIN tool_model AS t ON t.model = d.model
LEFT JOIN loop_model AS lp ON lp.model = d.model
ORDER BY sessions DESC, model`,
      },
    ],
    [
      {
        title: 'Tool-call error rate by model, daily', type: 'timeseries', w: 12, h: 8, unit: 'percentunit',
        sql: `
WITH
${LLM_CALLS},
${TOOLS_BY_MODEL}
SELECT toDateTime(toStartOfDay(llm_ts, 'UTC')) AS time, model, countIf(status = 'error') / count() AS tool_error_rate
FROM tools
GROUP BY time, model
ORDER BY time`,
      },
      {
        title: 'LLM latency p95 by model, daily', type: 'timeseries', w: 12, h: 8, unit: 'ms',
        sql: `
SELECT toDateTime(toStartOfDay(ts, 'UTC')) AS time, model, quantileExact(0.95)(duration_ns) / 1e6 AS p95_ms
FROM agent_llm_calls FINAL
WHERE $__timeFilter(ts) AND model != '' AND ${F_DIRECT}
GROUP BY time, model
ORDER BY time`,
      },
    ],
    [
      {
        title: 'Cost per session by model, daily', type: 'timeseries', w: 12, h: 8, unit: 'currencyUSD',
        sql: `
WITH
${LLM_CALLS}
SELECT toDateTime(toStartOfDay(l.ts, 'UTC')) AS time, l.model AS model, sum(${LLM_COST}) / uniqExact(l.session_id) AS cost_per_session_usd
FROM llm AS l LEFT JOIN loopwatch_model_key_prices AS pr ON l.model_key = pr.model_key
GROUP BY time, model
ORDER BY time`,
      },
      {
        title: 'Degradation findings', type: 'table', w: 12, h: 8,
        description: 'A model-day worse than the same model’s trailing 7 days (tool error rate, loop rate or latency), over all agents and services: only the model filter applies.',
        sql: `
SELECT detected_at AS time, model, severity, arrayStringConcat(tools, ', ') AS worse, message, details
FROM agent_findings FINAL
WHERE $__timeFilter(last_ts) AND detector = 'degradation' AND ${F_MODEL}
ORDER BY detected_at DESC
LIMIT 200`,
      },
    ],
  ]),
  {
    // daily figures and a 7-day baseline: a day's view would show one or two partial days
    time: { from: 'now-14d', to: 'now' },
    annotations: [
      {
        name: 'Degradation findings',
        datasource: DATASOURCE,
        enable: true,
        hide: false,
        iconColor: 'red',
        target: target(
          `SELECT detected_at AS time, concat(model, ': ', message) AS text, arrayStringConcat([detector, severity, model], ',') AS tags
FROM agent_findings FINAL
WHERE $__timeFilter(detected_at) AND detector = 'degradation' AND ${F_MODEL}
ORDER BY detected_at DESC
LIMIT 100`,
          'table',
          'Anno',
        ),
      },
    ],
  },
);

export const DASHBOARDS: Record<string, Json> = {
  'overview.json': overview,
  'sessions.json': sessions,
  'loops-and-waste.json': loops,
  'tools.json': tools,
  'models.json': models,
};

export const dashboardsDir = join(dirname(fileURLToPath(import.meta.url)), 'dashboards');

export function renderDashboard(d: Json): string {
  return JSON.stringify(d, null, 2) + '\n';
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  mkdirSync(dashboardsDir, { recursive: true });
  for (const [file, d] of Object.entries(DASHBOARDS)) writeFileSync(join(dashboardsDir, file), renderDashboard(d));
  process.stdout.write(`wrote ${Object.keys(DASHBOARDS).length} dashboards to ${dashboardsDir}\n`);
}
