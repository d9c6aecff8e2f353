-- The server side of an MCP tool call is not a second call of the agent's. An MCP server traced
-- to the OpenTelemetry MCP conventions records each `tools/call` it serves as a span of kind
-- SERVER named `tools/call {tool}`, with gen_ai.operation.name = execute_tool and
-- mcp.method.name = tools/call, the child (through the propagated trace context) of the agent's
-- own span of the call. Both made a tool call: in the agent's process every call was counted
-- twice in its session (a failing call retried three times was a retry storm of six, with an
-- oscillation between the two halves), and from a server process each call made a session of
-- its own, named after its trace (the server knows no session), with the loops found again
-- there under the server's name. The agent's span is the call; the server's is the tool's own
-- work, left to the trace view. A server traced alone (its clients not traced) makes no calls:
-- trace the agent's side (instrumentMcpClient). The view is made again, as in 015.
DROP VIEW IF EXISTS agent_tool_calls_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_tool_calls_mv TO agent_tool_calls AS
WITH
    SpanAttributes AS a,
    multiIf(
        -- an MCP server's side of a call: not a call (see above)
        SpanKind IN ('Server', 'SPAN_KIND_SERVER') AND a['mcp.method.name'] = 'tools/call', '',
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

