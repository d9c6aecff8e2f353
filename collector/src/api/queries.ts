// SQL of the read API (bound parameters only). Times come out as ISO-8601 text in UTC (with the
// nanoseconds the spans have), hashes as the 16 hex digits instrumentation sends.
const iso = (col: string) => `concat(replaceOne(toString(${col}, 'UTC'), ' ', 'T'), 'Z')`;
const hex64 = (col: string) => `lower(leftPad(hex(byteSwap(${col})), 16, '0'))`;

export interface CallRow {
  kind: 'tool' | 'llm';
  ts: string;
  end_ts: string;
  duration_ms: number;
  trace_id: string;
  span_id: string;
  parent_span_id: string;
  agent: string;
  service: string;
  /** Tool name, or model for an LLM call. */
  name: string;
  call_id: string;
  args_hash: string;
  result_hash: string;
  status: string;
  error_type: string;
  error_message: string;
  arguments: string;
  result: string;
  provider: string;
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_creation_tokens: number;
  total_tokens: number;
  cost_usd: number;
}

export interface FindingRow {
  finding_id: string;
  detector: string;
  severity: string;
  detected_at: string;
  session_id: string;
  trace_id: string;
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
  wasted_time_ms: number;
  message: string;
}

const callsUnion = `
    SELECT 'tool' AS kind, ts AS t, span_id AS sid, ${iso('ts')} AS ts, ${iso('end_ts')} AS end_ts, round(duration_ns / 1e6, 3) AS duration_ms,
           trace_id, span_id, parent_span_id, agent, service, tool AS name, call_id,
           ${hex64('args_hash')} AS args_hash, if(has_result = 1, ${hex64('result_hash')}, '') AS result_hash, status, error_type, error_message, arguments, result,
           '' AS provider, toUInt64(0) AS input_tokens, toUInt64(0) AS output_tokens, toUInt64(0) AS cache_read_tokens, toUInt64(0) AS cache_creation_tokens, toUInt64(0) AS total_tokens,
           toFloat64(0) AS cost_usd
    FROM agent_tool_calls FINAL WHERE session_id = {session:String}
    UNION ALL
    SELECT 'llm' AS kind, ts AS t, span_id AS sid, ${iso('ts')} AS ts, ${iso('end_ts')} AS end_ts, round(duration_ns / 1e6, 3) AS duration_ms,
           trace_id, span_id, parent_span_id, agent, service, model AS name, '' AS call_id,
           '' AS args_hash, '' AS result_hash, status, error_type, '' AS error_message, '' AS arguments, '' AS result,
           provider, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, total_tokens, reported_cost_usd AS cost_usd
    FROM agent_llm_calls FINAL WHERE session_id = {session:String}`;

// Paged by offset, or after a call (its ts and span id: a cursor): a session still receiving
// calls shifts offsets (a late span that starts inside an earlier page repeated one call and
// dropped another from an export), never the calls after a cursor. t is the ts text (the alias
// ts is the ISO text, nanoseconds always: it sorts as the times do), compared as text.
export const sessionCallsQuery = `
SELECT * EXCEPT (t, sid) FROM (${callsUnion})
WHERE {after_span:String} = '' OR (t, sid) > ({after_ts:String}, {after_span:String})
ORDER BY t, sid
LIMIT {limit:UInt32} OFFSET {offset:UInt32}`;

export const sessionCallCountQuery = `
SELECT (SELECT count() FROM agent_tool_calls FINAL WHERE session_id = {session:String})
     + (SELECT count() FROM agent_llm_calls FINAL WHERE session_id = {session:String}) AS n`;

export const findingsQuery = `
SELECT finding_id, detector, severity, ${iso('detected_at')} AS detected_at, session_id, trace_id, agent, model, tools,
       first_span_id, last_span_id, ${iso('first_ts')} AS first_ts, ${iso('last_ts')} AS last_ts,
       repeats, wasted_calls, wasted_tokens, wasted_cost_usd, round(wasted_time_ns / 1e6, 3) AS wasted_time_ms, message
FROM agent_findings FINAL
WHERE ({session:String} = '' OR agent_findings.session_id = {session:String})
  AND ({detector:String} = '' OR agent_findings.detector = {detector:String})
  AND agent_findings.last_ts >= {since:DateTime64(3)}
ORDER BY agent_findings.detected_at DESC, agent_findings.first_ts DESC
LIMIT {limit:UInt32}`;
