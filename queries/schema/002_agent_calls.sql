-- Typed agent tables, filled by materialized views from otel_traces. Normalization lives in
-- the database so that spans arriving through any OTLP pipeline (Loopwatch's collector or an
-- OpenTelemetry Collector's ClickHouse exporter) are analysed the same way.
-- Conventions mapped (see docs/conventions.md): OpenTelemetry GenAI semconv ('genai'),
-- OpenInference ('openinference'), Vercel AI SDK legacy ai.* spans ('ai_sdk').
-- (queries/schema/010_more_conventions.sql makes both views again, with OpenLLMetry / Traceloop too.)
--
-- Both tables are ReplacingMergeTree keyed by the span's identity, so a span that reaches the
-- table twice (an exporter retry that got past the collector's duplicate check) collapses;
-- readers that must be exact use FINAL or LIMIT 1 BY span_id.

-- Canonical form of a JSON object: keys sorted, nulls and empty objects dropped, '/' unescaped.
-- instrumentation/src/canonical.ts produces the same text, so hashes match across both.
CREATE FUNCTION IF NOT EXISTS loopwatch_canonical_json AS (s) ->
    if(length(s) < 65536 AND isValidJSON(s) AND JSONType(s) = 'Object',
       replaceAll(toJSONString(CAST(s, 'JSON')), '\\/', '/'),
       trimBoth(s));

-- 64-bit identity of a canonical text: the first 8 bytes of its SHA-256, little-endian.
CREATE FUNCTION IF NOT EXISTS loopwatch_hash64 AS (s) ->
    reinterpretAsUInt64(substring(SHA256(s), 1, 8));

-- A hash attribute sent by instrumentation (16 hex digits) wins; else hash the raw text.
CREATE FUNCTION IF NOT EXISTS loopwatch_value_hash AS (hash_attr, raw) ->
    if(length(hash_attr) = 16, reinterpretAsUInt64(unhex(hash_attr)), loopwatch_hash64(loopwatch_canonical_json(raw)));

-- Session: gen_ai.conversation.id, OpenInference session.id, or an AI SDK telemetry metadata
-- key (sessionId, session_id, conversationId); else the trace is the session.
CREATE FUNCTION IF NOT EXISTS loopwatch_session_id AS (a, trace_id) ->
    multiIf(a['gen_ai.conversation.id'] != '', a['gen_ai.conversation.id'],
            a['session.id'] != '', a['session.id'],
            a['ai.telemetry.metadata.sessionId'] != '', a['ai.telemetry.metadata.sessionId'],
            a['ai.telemetry.metadata.session_id'] != '', a['ai.telemetry.metadata.session_id'],
            a['ai.telemetry.metadata.conversationId'] != '', a['ai.telemetry.metadata.conversationId'],
            trace_id);

-- Agent: gen_ai.agent.name, OpenInference agent.name, AI SDK functionId; else the service.
CREATE FUNCTION IF NOT EXISTS loopwatch_agent AS (a, service) ->
    multiIf(a['gen_ai.agent.name'] != '', a['gen_ai.agent.name'],
            a['agent.name'] != '', a['agent.name'],
            a['ai.telemetry.functionId'] != '', a['ai.telemetry.functionId'],
            service);

CREATE TABLE IF NOT EXISTS agent_tool_calls
(
    ts DateTime64(9) CODEC(Delta, ZSTD(1)),
    end_ts DateTime64(9) CODEC(Delta, ZSTD(1)),
    duration_ns UInt64 CODEC(ZSTD(1)),
    session_id String CODEC(ZSTD(1)),
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    parent_span_id String CODEC(ZSTD(1)),
    service LowCardinality(String),
    agent LowCardinality(String),
    model LowCardinality(String),
    convention LowCardinality(String),
    tool LowCardinality(String),
    call_id String CODEC(ZSTD(1)),
    args_hash UInt64,
    result_hash UInt64,
    has_args UInt8,
    has_result UInt8,
    status LowCardinality(String),
    error_type LowCardinality(String),
    error_message String CODEC(ZSTD(1)),
    arguments String CODEC(ZSTD(3)),
    result String CODEC(ZSTD(3)),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (session_id, ts, span_id)
TTL toDateTime(ts) + toIntervalDay({{retention_days}})
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_tool_calls_mv TO agent_tool_calls AS
WITH
    SpanAttributes AS a,
    multiIf(
        a['gen_ai.operation.name'] = 'execute_tool', 'genai',
        a['openinference.span.kind'] = 'TOOL', 'openinference',
        SpanName = 'ai.toolCall' OR a['ai.operationId'] = 'ai.toolCall' OR startsWith(a['operation.name'], 'ai.toolCall'), 'ai_sdk',
        '') AS conv,
    multiIf(conv = 'genai', a['gen_ai.tool.call.arguments'],
            conv = 'openinference', a['input.value'],
            a['ai.toolCall.args']) AS args_raw,
    multiIf(conv = 'genai', a['gen_ai.tool.call.result'],
            conv = 'openinference', a['output.value'],
            if(a['ai.toolCall.result'] != '', a['ai.toolCall.result'], a['ai.toolCall.output'])) AS result_raw,
    StatusCode IN ('Error', 'STATUS_CODE_ERROR') AS failed,
    arrayElement(Events.Attributes, indexOf(Events.Name, 'exception')) AS exception_attrs
SELECT
    Timestamp AS ts,
    fromUnixTimestamp64Nano(toUnixTimestamp64Nano(Timestamp) + toInt64(Duration)) AS end_ts,
    Duration AS duration_ns,
    loopwatch_session_id(a, TraceId) AS session_id,
    TraceId AS trace_id,
    SpanId AS span_id,
    ParentSpanId AS parent_span_id,
    ServiceName AS service,
    loopwatch_agent(a, ServiceName) AS agent,
    multiIf(a['gen_ai.request.model'] != '', a['gen_ai.request.model'],
            a['gen_ai.response.model'] != '', a['gen_ai.response.model'],
            a['llm.model_name'] != '', a['llm.model_name'],
            a['ai.model.id']) AS model,
    conv AS convention,
    multiIf(conv = 'genai', if(a['gen_ai.tool.name'] != '', a['gen_ai.tool.name'], trimBoth(replaceOne(SpanName, 'execute_tool', ''))),
            conv = 'openinference', if(a['tool.name'] != '', a['tool.name'], SpanName),
            a['ai.toolCall.name']) AS tool,
    multiIf(conv = 'genai', a['gen_ai.tool.call.id'], conv = 'openinference', a['tool.id'], a['ai.toolCall.id']) AS call_id,
    loopwatch_value_hash(a['loopwatch.tool.args_hash'], args_raw) AS args_hash,
    loopwatch_value_hash(a['loopwatch.tool.result_hash'], result_raw) AS result_hash,
    (args_raw != '' OR length(a['loopwatch.tool.args_hash']) = 16) AS has_args,
    (result_raw != '' OR length(a['loopwatch.tool.result_hash']) = 16) AS has_result,
    if(failed, 'error', 'ok') AS status,
    if(failed, if(a['error.type'] != '', a['error.type'], if(exception_attrs['exception.type'] != '', exception_attrs['exception.type'], 'error')), '') AS error_type,
    if(failed, if(StatusMessage != '', StatusMessage, exception_attrs['exception.message']), '') AS error_message,
    substring(args_raw, 1, 8192) AS arguments,
    substring(result_raw, 1, 2048) AS result
FROM otel_traces
WHERE conv != '';

CREATE TABLE IF NOT EXISTS agent_llm_calls
(
    ts DateTime64(9) CODEC(Delta, ZSTD(1)),
    end_ts DateTime64(9) CODEC(Delta, ZSTD(1)),
    duration_ns UInt64 CODEC(ZSTD(1)),
    session_id String CODEC(ZSTD(1)),
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    parent_span_id String CODEC(ZSTD(1)),
    service LowCardinality(String),
    agent LowCardinality(String),
    convention LowCardinality(String),
    operation LowCardinality(String),
    provider LowCardinality(String),
    request_model LowCardinality(String),
    response_model LowCardinality(String),
    model LowCardinality(String),
    input_tokens UInt64,
    output_tokens UInt64,
    cache_read_tokens UInt64,
    cache_creation_tokens UInt64,
    total_tokens UInt64,
    reported_cost_usd Float64,
    status LowCardinality(String),
    error_type LowCardinality(String),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (session_id, ts, span_id)
TTL toDateTime(ts) + toIntervalDay({{retention_days}})
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1, non_replicated_deduplication_window = 10000;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_llm_calls_mv TO agent_llm_calls AS
WITH
    SpanAttributes AS a,
    multiIf(
        a['gen_ai.operation.name'] IN ('chat', 'generate_content', 'text_completion'), 'genai',
        a['openinference.span.kind'] = 'LLM', 'openinference',
        a['ai.operationId'] IN ('ai.generateText.doGenerate', 'ai.streamText.doStream', 'ai.generateObject.doGenerate', 'ai.streamObject.doStream'), 'ai_sdk',
        '') AS conv,
    (x -> toUInt64OrZero(x)) AS n,
    n(multiIf(a['gen_ai.usage.input_tokens'] != '', a['gen_ai.usage.input_tokens'],
              a['gen_ai.usage.prompt_tokens'] != '', a['gen_ai.usage.prompt_tokens'],
              a['llm.token_count.prompt'] != '', a['llm.token_count.prompt'],
              a['ai.usage.inputTokens'] != '', a['ai.usage.inputTokens'],
              a['ai.usage.promptTokens'])) AS tin,
    n(multiIf(a['gen_ai.usage.output_tokens'] != '', a['gen_ai.usage.output_tokens'],
              a['gen_ai.usage.completion_tokens'] != '', a['gen_ai.usage.completion_tokens'],
              a['llm.token_count.completion'] != '', a['llm.token_count.completion'],
              a['ai.usage.outputTokens'] != '', a['ai.usage.outputTokens'],
              a['ai.usage.completionTokens'])) AS tout,
    StatusCode IN ('Error', 'STATUS_CODE_ERROR') AS failed
SELECT
    Timestamp AS ts,
    fromUnixTimestamp64Nano(toUnixTimestamp64Nano(Timestamp) + toInt64(Duration)) AS end_ts,
    Duration AS duration_ns,
    loopwatch_session_id(a, TraceId) AS session_id,
    TraceId AS trace_id,
    SpanId AS span_id,
    ParentSpanId AS parent_span_id,
    ServiceName AS service,
    loopwatch_agent(a, ServiceName) AS agent,
    conv AS convention,
    multiIf(conv = 'genai', a['gen_ai.operation.name'], conv = 'openinference', 'chat', a['ai.operationId']) AS operation,
    multiIf(a['gen_ai.provider.name'] != '', a['gen_ai.provider.name'],
            a['gen_ai.system'] != '', a['gen_ai.system'],
            a['llm.provider'] != '', a['llm.provider'],
            a['llm.system'] != '', a['llm.system'],
            a['ai.model.provider']) AS provider,
    multiIf(a['gen_ai.request.model'] != '', a['gen_ai.request.model'],
            a['llm.model_name'] != '', a['llm.model_name'],
            a['ai.model.id']) AS request_model,
    multiIf(a['gen_ai.response.model'] != '', a['gen_ai.response.model'],
            a['ai.response.model']) AS response_model,
    if(response_model != '', response_model, request_model) AS model,
    tin AS input_tokens,
    tout AS output_tokens,
    n(multiIf(a['gen_ai.usage.cache_read.input_tokens'] != '', a['gen_ai.usage.cache_read.input_tokens'],
              a['llm.token_count.prompt_details.cache_read'] != '', a['llm.token_count.prompt_details.cache_read'],
              a['ai.usage.cachedInputTokens'])) AS cache_read_tokens,
    n(multiIf(a['gen_ai.usage.cache_creation.input_tokens'] != '', a['gen_ai.usage.cache_creation.input_tokens'],
              a['llm.token_count.prompt_details.cache_write'])) AS cache_creation_tokens,
    if(n(a['llm.token_count.total']) > 0, n(a['llm.token_count.total']), tin + tout) AS total_tokens,
    toFloat64OrZero(if(a['llm.cost.total'] != '', a['llm.cost.total'], a['loopwatch.cost_usd'])) AS reported_cost_usd,
    if(failed, 'error', 'ok') AS status,
    if(failed, if(a['error.type'] != '', a['error.type'], 'error'), '') AS error_type
FROM otel_traces
WHERE conv != '';
