-- A tool call keeps the first 8,192 bytes of its arguments and 2,048 of its result, and the view
-- cut them with substring, which counts bytes: a character of two to four bytes (an accented
-- letter, CJK text, an emoji) across the limit was split, and the stored value ended in half a
-- character, not valid UTF-8. The cut now ends on a whole character: loopwatch_utf8_left(s, n)
-- keeps the longest prefix of s of at most n bytes that does not end inside a character (the
-- character across the limit is left out whole, not replaced by U+FFFD); a value within the limit
-- is kept as it is. It reads bytes, it does not decode: a value that was not valid UTF-8 is not
-- repaired, and is still cut without an error and never over n bytes. The hashes
-- are of the whole values, as before. The other cuts of text in queries/ count characters
-- (leftUTF8: the error identity, error_loop's message) and split none.
-- The view is made again, as in 015 and 017. Calls stored before are not made again. The engine
-- writes a SQL function out into a view that calls it when the view is made: a later change to
-- loopwatch_utf8_left reaches the view only with the view made again after it.
CREATE OR REPLACE FUNCTION loopwatch_utf8_left AS (s, n) ->
    if(length(s) <= n, s,
       -- n less the bytes of the character across the cut that are before it: none when the byte
       -- after the cut starts a character (is not a continuation byte, 10xxxxxx), else back to
       -- the byte that does, at most 3 (a character is at most 4 bytes; more continuation bytes
       -- in a row are not UTF-8: cut at n)
       substring(s, 1, greatest(n - multiIf(bitAnd(reinterpretAsUInt8(substring(s, n + 1, 1)), 0xC0) != 0x80, 0,
                                            bitAnd(reinterpretAsUInt8(substring(s, n, 1)), 0xC0) != 0x80, 1,
                                            bitAnd(reinterpretAsUInt8(substring(s, n - 1, 1)), 0xC0) != 0x80, 2,
                                            bitAnd(reinterpretAsUInt8(substring(s, n - 2, 1)), 0xC0) != 0x80, 3,
                                            0), 0)));

DROP VIEW IF EXISTS agent_tool_calls_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_tool_calls_mv TO agent_tool_calls AS
WITH
    SpanAttributes AS a,
    multiIf(
        -- an MCP server's side of a call: not a call (see 017)
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
    loopwatch_utf8_left(args_raw, 8192) AS arguments,
    loopwatch_utf8_left(result_raw, 2048) AS result
FROM otel_traces
WHERE conv != '';

