-- More instrumentations of other languages make calls (a review of the spans they emit, read in
-- their source, 2026-12-06; docs/conventions.md):
-- - pydantic-ai (Python) before its tool spans named the operation: `execute_tool {tool}` or
--   `running tool` spans with gen_ai.tool.name made no tool call; its version 2 puts arguments
--   and result on tool_arguments / tool_response; its LLM spans' operation.cost is their cost.
-- - Google ADK (Python): tool arguments and result on gcp.vertex.agent.tool_call_args /
--   tool_response (its tool calls all had the empty arguments: no loop could be told), the
--   session on gcp.vertex.agent.session_id (its LLM calls fell in the trace's session, its tool
--   calls in the conversation).
-- - Semantic Kernel (.NET): LLM spans of operation chat.completions / text.completions made no
--   LLM call.
-- - Cache tokens by their other names: OpenLLMetry's gen_ai.usage.cache_read_input_tokens (its
--   cache reads were priced at the full input price) and cache_creation_input_tokens, the AI SDK
--   6's inputTokenDetails, gen_ai.usage.cache_write.input_tokens.
-- The views are made again, as in 010 (spans inserted by another collector between the DROP and
-- the CREATE make no calls; the embedded store migrates before it ingests). Calls stored before
-- are not made again.
CREATE OR REPLACE FUNCTION loopwatch_session_id AS (a, trace_id) ->
    multiIf(a['gen_ai.conversation.id'] != '', a['gen_ai.conversation.id'],
            a['session.id'] != '', a['session.id'],
            a['ai.telemetry.metadata.sessionId'] != '', a['ai.telemetry.metadata.sessionId'],
            a['ai.telemetry.metadata.session_id'] != '', a['ai.telemetry.metadata.session_id'],
            a['ai.telemetry.metadata.conversationId'] != '', a['ai.telemetry.metadata.conversationId'],
            a['traceloop.association.properties.session_id'] != '', a['traceloop.association.properties.session_id'],
            a['gcp.vertex.agent.session_id'] != '', a['gcp.vertex.agent.session_id'],
            trace_id);

DROP VIEW IF EXISTS agent_tool_calls_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_tool_calls_mv TO agent_tool_calls AS
WITH
    SpanAttributes AS a,
    multiIf(
        a['gen_ai.operation.name'] = 'execute_tool', 'genai',
        -- pydantic-ai's tool spans before they named the operation: `execute_tool {tool}`, or
        -- `running tool` (its instrumentation version 2), with gen_ai.tool.name
        a['gen_ai.operation.name'] = '' AND a['gen_ai.tool.name'] != '' AND (startsWith(SpanName, 'execute_tool ') OR SpanName = 'running tool'), 'genai',
        a['openinference.span.kind'] = 'TOOL', 'openinference',
        SpanName = 'ai.toolCall' OR a['ai.operationId'] = 'ai.toolCall' OR startsWith(a['operation.name'], 'ai.toolCall'), 'ai_sdk',
        a['traceloop.span.kind'] = 'tool', 'traceloop',
        '') AS conv,
    -- LangSmith's export puts a tool run's input and output on gen_ai.prompt / gen_ai.completion;
    -- pydantic-ai's version 2 on tool_arguments / tool_response, Google ADK on gcp.vertex.agent.*
    multiIf(conv = 'genai', multiIf(a['gen_ai.tool.call.arguments'] != '', a['gen_ai.tool.call.arguments'],
                                    a['langsmith.span.kind'] != '', a['gen_ai.prompt'],
                                    a['tool_arguments'] != '', a['tool_arguments'],
                                    a['gcp.vertex.agent.tool_call_args']),
            conv = 'openinference', a['input.value'],
            conv = 'traceloop', a['traceloop.entity.input'],
            a['ai.toolCall.args']) AS args_raw,
    multiIf(conv = 'genai', multiIf(a['gen_ai.tool.call.result'] != '', a['gen_ai.tool.call.result'],
                                    a['langsmith.span.kind'] != '', a['gen_ai.completion'],
                                    a['tool_response'] != '', a['tool_response'],
                                    a['gcp.vertex.agent.tool_response']),
            conv = 'openinference', a['output.value'],
            conv = 'traceloop', a['traceloop.entity.output'],
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
            conv = 'traceloop', if(a['traceloop.entity.name'] != '', a['traceloop.entity.name'], replaceRegexpOne(SpanName, '\\.tool$', '')),
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

DROP VIEW IF EXISTS agent_llm_calls_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_llm_calls_mv TO agent_llm_calls AS
WITH
    SpanAttributes AS a,
    multiIf(
        -- chat.completions and text.completions: Semantic Kernel's names (.NET)
        a['gen_ai.operation.name'] IN ('chat', 'generate_content', 'text_completion', 'chat.completions', 'text.completions'), 'genai',
        a['openinference.span.kind'] = 'LLM', 'openinference',
        a['ai.operationId'] IN ('ai.generateText.doGenerate', 'ai.streamText.doStream', 'ai.generateObject.doGenerate', 'ai.streamObject.doStream'), 'ai_sdk',
        -- GenAI spans from before gen_ai.operation.name, and OpenLLMetry's (llm.request.type): a
        -- provider and token usage, and nothing else saying what the span is (not an AI SDK or
        -- OpenInference span, whose own kinds are above; not an embedding)
        a['gen_ai.operation.name'] = '' AND a['ai.operationId'] = '' AND a['openinference.span.kind'] = '' AND a['traceloop.span.kind'] = ''
            AND (a['gen_ai.system'] != '' OR a['gen_ai.provider.name'] != '')
            AND (a['gen_ai.usage.input_tokens'] != '' OR a['gen_ai.usage.prompt_tokens'] != '' OR a['llm.usage.total_tokens'] != '')
            AND a['llm.request.type'] IN ('', 'chat', 'completion') AND NOT startsWith(SpanName, 'embeddings'),
            if(a['llm.request.type'] != '', 'traceloop', 'genai'),
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
    conv AS convention,
    multiIf(conv = 'genai', multiIf(a['gen_ai.operation.name'] IN ('', 'chat.completions'), 'chat', a['gen_ai.operation.name'] = 'text.completions', 'text_completion', a['gen_ai.operation.name']),
            conv = 'openinference', 'chat',
            conv = 'traceloop', if(a['llm.request.type'] = 'completion', 'text_completion', 'chat'), a['ai.operationId']) AS operation,
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
    -- cache tokens by their other names too: OpenLLMetry's (gen_ai.usage.cache_read_input_tokens:
    -- its cache reads were priced as input), the AI SDK 6's, Anthropic's cache writes
    n(multiIf(a['gen_ai.usage.cache_read.input_tokens'] != '', a['gen_ai.usage.cache_read.input_tokens'],
              a['gen_ai.usage.cache_read_input_tokens'] != '', a['gen_ai.usage.cache_read_input_tokens'],
              a['llm.token_count.prompt_details.cache_read'] != '', a['llm.token_count.prompt_details.cache_read'],
              a['ai.usage.cachedInputTokens'] != '', a['ai.usage.cachedInputTokens'],
              a['ai.usage.inputTokenDetails.cacheReadTokens'])) AS cache_read_tokens,
    n(multiIf(a['gen_ai.usage.cache_creation.input_tokens'] != '', a['gen_ai.usage.cache_creation.input_tokens'],
              a['gen_ai.usage.cache_creation_input_tokens'] != '', a['gen_ai.usage.cache_creation_input_tokens'],
              a['gen_ai.usage.cache_write.input_tokens'] != '', a['gen_ai.usage.cache_write.input_tokens'],
              a['llm.token_count.prompt_details.cache_write'] != '', a['llm.token_count.prompt_details.cache_write'],
              a['ai.usage.inputTokenDetails.cacheWriteTokens'])) AS cache_creation_tokens,
    if(n(a['llm.token_count.total']) > 0, n(a['llm.token_count.total']), tin + tout) AS total_tokens,
    -- operation.cost: pydantic-ai's (Logfire's) cost of the call
    toFloat64OrZero(multiIf(a['llm.cost.total'] != '', a['llm.cost.total'], a['operation.cost'] != '', a['operation.cost'], a['loopwatch.cost_usd'])) AS reported_cost_usd,
    if(failed, 'error', 'ok') AS status,
    -- as for tool calls: error.type, else the exception event's type (a rate limit's RateLimitError)
    if(failed, if(a['error.type'] != '', a['error.type'], if(exception_attrs['exception.type'] != '', exception_attrs['exception.type'], 'error')), '') AS error_type
FROM otel_traces
WHERE conv != '';
