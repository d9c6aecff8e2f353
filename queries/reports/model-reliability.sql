-- model-reliability: one row per model and UTC day in [from, to), optionally one model or agent.
-- Parameters: {from:DateTime64(3)}, {to:DateTime64(3)}, {model:String}, {agent:String} ('' = any).
-- Run with queries/src/reports.ts runReport().
-- A tool call belongs to the model of the LLM call that requested it (the session's latest LLM
-- call started at or before the tool call started: a streamed LLM call runs the tool calls it
-- requests before it ends), and to that LLM call's day (a tool call just past midnight requested
-- before it counts with its request, in a range that holds its request); a session to every model
-- it called that day. Days are UTC days, whatever the store's time zone. LLM calls that name no
-- model are left out, as the dashboards and degradation leave them out.
--   sessions           sessions with LLM calls of the model that day
--   tool_error_rate    failed tool calls / tool calls requested by the model (calls the
--                      LoopGuard halted before they ran left out)
--   loop_rate          sessions with a loop finding (any detector but degradation, redundant calls apart) / sessions
--   recovery_rate      of the sessions whose calls (by this model) failed, those where the failed
--                      tool later succeeded; NULL when nothing failed
--   cost_per_session   LLM cost (reported when > 0, else tokens x model_prices) / sessions
--   latency_*_ms       LLM call duration quantiles (exact)
WITH
    llm AS (
        SELECT session_id, ts, end_ts, duration_ns, model, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, total_tokens,
               reported_cost_usd, status, loopwatch_model_key(model) AS model_key
        FROM agent_llm_calls FINAL
        WHERE ts >= {from:DateTime64(3)} AND ts < {to:DateTime64(3)} AND model != ''
          AND ({model:String} = '' OR model = {model:String})
          AND ({agent:String} = '' OR agent = {agent:String})
    ),
    llm_day AS (
        SELECT l.model AS model, toDate(l.ts, 'UTC') AS day,
               uniqExact(l.session_id) AS sessions,
               count() AS llm_calls,
               countIf(l.status = 'error') AS llm_errors,
               sum(l.total_tokens) AS tokens,
               sum(loopwatch_llm_cost(l.reported_cost_usd, l.input_tokens, l.cache_read_tokens, l.cache_creation_tokens, l.output_tokens, pr.price)) AS cost_usd,
               quantilesExact(0.5, 0.95, 0.99)(l.duration_ns / 1e6) AS latency_ms
        FROM llm AS l LEFT JOIN loopwatch_model_key_prices AS pr ON l.model_key = pr.model_key
        GROUP BY model, day
    ),
    -- the tool calls whose requesting LLM call is in the range: it is found among the session's LLM
    -- calls of every model, named or not (then kept if its model is the one asked for, and named: a
    -- tool call another model requested is not this model's). Read an hour past the range's end: a
    -- tool call requested in the range may start after it (its requester's successors read too, so
    -- that a later call is not taken for its requester). A call before the range was not requested in it.
    tools AS (
        SELECT t.session_id AS session_id, t.ts AS ts, t.tool AS tool, t.status AS status, l.model AS model, l.day AS day
        FROM (
            SELECT session_id, ts, tool, status FROM agent_tool_calls FINAL
            WHERE ts >= {from:DateTime64(3)} AND ts < {to:DateTime64(3)} + INTERVAL 1 HOUR
              AND ({agent:String} = '' OR agent = {agent:String})
              -- a call the LoopGuard halted before it ran is no tool's failure (degradation leaves it out too)
              AND error_type != 'LoopDetectedError'
        ) AS t
        ASOF INNER JOIN (
            SELECT session_id, ts, model, toDate(ts, 'UTC') AS day FROM agent_llm_calls FINAL
            WHERE ts >= {from:DateTime64(3)} AND ts < {to:DateTime64(3)} + INTERVAL 1 HOUR
              AND ({agent:String} = '' OR agent = {agent:String})
        ) AS l ON t.session_id = l.session_id AND t.ts >= l.ts
        WHERE l.ts < {to:DateTime64(3)} AND l.model != '' AND ({model:String} = '' OR l.model = {model:String})
    ),
    -- per session, model, day and tool: did it fail, and did it succeed after its first failure
    tool_slices AS (
        SELECT model, day, session_id, tool, count() AS calls, countIf(status = 'error') AS errors,
               minIf(ts, status = 'error') AS first_error, maxIf(ts, status = 'ok') AS last_ok
        FROM tools GROUP BY model, day, session_id, tool
    ),
    session_slices AS (
        SELECT model, day, session_id, sum(calls) AS session_calls, sum(errors) AS session_errors,
               max(errors > 0 AND last_ok > first_error) AS recovered
        FROM tool_slices GROUP BY model, day, session_id
    ),
    tool_day AS (
        SELECT model, day, sum(session_calls) AS tool_calls, sum(session_errors) AS tool_errors,
               countIf(session_errors > 0) AS error_sessions, countIf(session_errors > 0 AND recovered) AS recovered_sessions
        FROM session_slices GROUP BY model, day
    ),
    loop_day AS (
        SELECT m.model AS model, m.day AS day, count() AS loop_sessions
        FROM (SELECT DISTINCT model, toDate(ts, 'UTC') AS day, session_id FROM llm) AS m
        WHERE m.session_id IN (
            SELECT session_id FROM agent_findings FINAL
            WHERE detector != 'degradation' AND severity != 'info' AND session_id IN (SELECT session_id FROM llm)
        )
        GROUP BY model, day
    )
SELECT
    d.day AS day,
    d.model AS model,
    d.sessions AS sessions,
    d.llm_calls AS llm_calls,
    d.llm_errors AS llm_errors,
    t.tool_calls AS tool_calls,
    t.tool_errors AS tool_errors,
    round(if(t.tool_calls > 0, t.tool_errors / t.tool_calls, 0), 4) AS tool_error_rate,
    lp.loop_sessions AS loop_sessions,
    round(lp.loop_sessions / d.sessions, 4) AS loop_rate,
    t.error_sessions AS error_sessions,
    t.recovered_sessions AS recovered_sessions,
    if(t.error_sessions > 0, round(t.recovered_sessions / t.error_sessions, 4), NULL) AS recovery_rate,
    d.tokens AS tokens,
    round(d.cost_usd, 6) AS cost_usd,
    round(d.cost_usd / d.sessions, 6) AS cost_per_session,
    round(d.latency_ms[1], 1) AS latency_p50_ms,
    round(d.latency_ms[2], 1) AS latency_p95_ms,
    round(d.latency_ms[3], 1) AS latency_p99_ms
FROM llm_day AS d
LEFT JOIN tool_day AS t ON t.model = d.model AND t.day = d.day
LEFT JOIN loop_day AS lp ON lp.model = d.model AND lp.day = d.day
ORDER BY day, model
