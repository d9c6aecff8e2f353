-- An LLM call's input and cache tokens as each source means them (a review billed the same
-- calls against their providers' answers; docs/conventions.md). agent_llm_calls keeps the
-- GenAI conventions' meaning: input_tokens is the call's whole input, cache reads and writes
-- among it (loopwatch_llm_cost prices input less the cache at the input price); a source whose
-- input count leaves the cache out has it added. Before, every source was read as including it,
-- and input less the cache was cut at 0:
-- - The AI SDK before 6 (ai@4, ai@5): its input count is the provider's own. @ai-sdk/anthropic's
--   is Anthropic's input_tokens, the cache left out; OpenAI's prompt_tokens / input_tokens include
--   the cache reads. Its doGenerate spans carry no cache count at all (only ai.usage.promptTokens /
--   completionTokens, gen_ai.usage.input_tokens / output_tokens); doStream's carry
--   ai.usage.cachedInputTokens (reads); cache writes are only in ai.response.providerMetadata (a
--   JSON string: anthropic.cacheCreationInputTokens, and from @ai-sdk/anthropic 2.0's later
--   versions Anthropic's whole usage as anthropic.usage). A v5 Anthropic call of 50 uncached
--   input tokens, 20,000 read and 3,000 written was 450 tokens and $0.00615 for a $0.0234 bill.
--   Told apart from 6 and later by what the span carries: those spans have
--   ai.usage.inputTokenDetails.* (their ai.usage.inputTokens is the whole input) and are read as
--   before; the others are read as the provider means them: Anthropic's usage in the provider
--   metadata when there (its input_tokens, cache_read_input_tokens, cache_creation_input_tokens,
--   the same for any AI SDK version), else, for a provider named anthropic (ai.model.provider
--   'anthropic.messages', 'vertex.anthropic.messages', ...) whose metadata is there (Anthropic's
--   entry: cacheCreationInputTokens, the earlier @ai-sdk/anthropic 2.0 versions and ai@4), the
--   input count with the cache added. The AI SDK 4 and 5 record the metadata whether outputs are
--   recorded or not; the AI SDK 6's generateObject and streamObject spans have no inputTokenDetails
--   either, and no metadata when outputs are not recorded: their input count is the whole input
--   (a regression review: a streamObject span without them counted its cache reads twice, 3.5x
--   the bill), and Anthropic's usage in the metadata, when there, gives the same figure. Loopwatch's
--   aiSdkTelemetry() stamps the reads a v5 doGenerate span lacks (ai.usage.cachedInputTokens,
--   from the model's answer): OpenAI's non-streaming cache reads are in no attribute otherwise.
-- - Strands Agents (gen_ai.system 'strands-agents'): its writes as
--   gen_ai.usage.cache_write_input_tokens (a name not read before; others use it too). Its input
--   count is its model provider's: Bedrock Converse's leaves the cache out, LiteLLM's prompt_tokens
--   include it (a regression review: a rule for Strands counted LiteLLM's cache twice), so only
--   the rule for any source below applies (an agent's cached prompt is most often larger than its
--   new input, which that rule then tells apart).
-- - Any source: cache reads and writes more than the input count cannot be among it: the input
--   is taken as leaving them out (the call's input = input + reads + writes), not cut at 0.
-- - Google ADK: output_tokens is Gemini's candidates_token_count, without thoughts_token_count,
--   which is billed as output: added from the response's usage_metadata
--   (gcp.vertex.agent.llm_response, a JSON string), whose cached_content_token_count (among
--   prompt_token_count, the input count) are the cache reads.
-- The view is made again, as in 015 (spans inserted by another collector between the DROP and the
-- CREATE make no calls; the embedded store migrates before it ingests). Calls stored before are
-- not made again.
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
    -- the AI SDK's spans before 6 (no inputTokenDetails): their provider metadata, and
    -- Anthropic's own usage in it
    conv = 'ai_sdk' AND a['ai.usage.inputTokenDetails.noCacheTokens'] = '' AND a['ai.usage.inputTokenDetails.cacheReadTokens'] = ''
        AND a['ai.usage.inputTokenDetails.cacheWriteTokens'] = '' AS sdk_legacy,
    if(sdk_legacy, a['ai.response.providerMetadata'], '') AS pm,
    JSONHas(pm, 'anthropic', 'usage', 'input_tokens') AS pm_usage,
    -- Google ADK's response usage
    if(conv = 'genai', JSONExtractRaw(a['gcp.vertex.agent.llm_response'], 'usage_metadata'), '') AS adk,
    n(multiIf(a['gen_ai.usage.input_tokens'] != '', a['gen_ai.usage.input_tokens'],
              a['gen_ai.usage.prompt_tokens'] != '', a['gen_ai.usage.prompt_tokens'],
              a['llm.token_count.prompt'] != '', a['llm.token_count.prompt'],
              a['ai.usage.inputTokens'] != '', a['ai.usage.inputTokens'],
              a['ai.usage.promptTokens'])) AS tin_reported,
    n(multiIf(a['gen_ai.usage.output_tokens'] != '', a['gen_ai.usage.output_tokens'],
              a['gen_ai.usage.completion_tokens'] != '', a['gen_ai.usage.completion_tokens'],
              a['llm.token_count.completion'] != '', a['llm.token_count.completion'],
              a['ai.usage.outputTokens'] != '', a['ai.usage.outputTokens'],
              a['ai.usage.completionTokens'])) AS tout_reported,
    -- cache tokens by their other names too: OpenLLMetry's, the AI SDK's, Strands'
    -- (cache_write_input_tokens), the AI SDK 4's and 5's provider metadata, ADK's usage_metadata
    multiIf(pm_usage, JSONExtractUInt(pm, 'anthropic', 'usage', 'cache_read_input_tokens'),
            a['gen_ai.usage.cache_read.input_tokens'] != '', n(a['gen_ai.usage.cache_read.input_tokens']),
            a['gen_ai.usage.cache_read_input_tokens'] != '', n(a['gen_ai.usage.cache_read_input_tokens']),
            a['llm.token_count.prompt_details.cache_read'] != '', n(a['llm.token_count.prompt_details.cache_read']),
            a['ai.usage.cachedInputTokens'] != '', n(a['ai.usage.cachedInputTokens']),
            a['ai.usage.inputTokenDetails.cacheReadTokens'] != '', n(a['ai.usage.inputTokenDetails.cacheReadTokens']),
            JSONHas(pm, 'anthropic', 'cacheReadInputTokens'), JSONExtractUInt(pm, 'anthropic', 'cacheReadInputTokens'),
            JSONHas(pm, 'openai', 'cachedPromptTokens'), JSONExtractUInt(pm, 'openai', 'cachedPromptTokens'),
            JSONExtractUInt(adk, 'cached_content_token_count')) AS cread,
    multiIf(pm_usage, JSONExtractUInt(pm, 'anthropic', 'usage', 'cache_creation_input_tokens'),
            a['gen_ai.usage.cache_creation.input_tokens'] != '', n(a['gen_ai.usage.cache_creation.input_tokens']),
            a['gen_ai.usage.cache_creation_input_tokens'] != '', n(a['gen_ai.usage.cache_creation_input_tokens']),
            a['gen_ai.usage.cache_write.input_tokens'] != '', n(a['gen_ai.usage.cache_write.input_tokens']),
            a['gen_ai.usage.cache_write_input_tokens'] != '', n(a['gen_ai.usage.cache_write_input_tokens']),
            a['llm.token_count.prompt_details.cache_write'] != '', n(a['llm.token_count.prompt_details.cache_write']),
            a['ai.usage.inputTokenDetails.cacheWriteTokens'] != '', n(a['ai.usage.inputTokenDetails.cacheWriteTokens']),
            JSONExtractUInt(pm, 'anthropic', 'cacheCreationInputTokens')) AS cwrite,
    if(pm_usage, JSONExtractUInt(pm, 'anthropic', 'usage', 'input_tokens'), if(tin_reported > 0, tin_reported, JSONExtractUInt(adk, 'prompt_token_count'))) AS tin_own,
    -- the input count leaves the cache out: Anthropic's usage; the AI SDK 4's and 5's Anthropic
    -- providers (their metadata there); any count smaller than its cache reads and writes
    (pm_usage OR (sdk_legacy AND positionCaseInsensitive(a['ai.model.provider'], 'anthropic') > 0 AND JSONHas(pm, 'anthropic'))
        OR cread + cwrite > tin_own) AS cache_apart,
    if(cache_apart, tin_own + cread + cwrite, tin_own) AS tin,
    -- ADK: Gemini's thoughts are output (its output count is candidates_token_count without them)
    if(JSONHas(adk, 'candidates_token_count') AND (tout_reported = 0 OR tout_reported = JSONExtractUInt(adk, 'candidates_token_count')),
       JSONExtractUInt(adk, 'candidates_token_count') + JSONExtractUInt(adk, 'thoughts_token_count'), tout_reported) AS tout,
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
    cread AS cache_read_tokens,
    cwrite AS cache_creation_tokens,
    if(n(a['llm.token_count.total']) > 0, n(a['llm.token_count.total']), tin + tout) AS total_tokens,
    -- operation.cost: pydantic-ai's (Logfire's) cost of the call
    toFloat64OrZero(multiIf(a['llm.cost.total'] != '', a['llm.cost.total'], a['operation.cost'] != '', a['operation.cost'], a['loopwatch.cost_usd'])) AS reported_cost_usd,
    if(failed, 'error', 'ok') AS status,
    -- as for tool calls: error.type, else the exception event's type (a rate limit's RateLimitError)
    if(failed, if(a['error.type'] != '', a['error.type'], if(exception_attrs['exception.type'] != '', exception_attrs['exception.type'], 'error')), '') AS error_type
FROM otel_traces
WHERE conv != '';

-- Kept features hold the LLM shares priced from the old counts: dropped, the next pass
-- recomputes them (as in 016).
TRUNCATE TABLE IF EXISTS agent_call_features;

DELETE FROM loopwatch_detector_state WHERE detector = '_features';
