-- The per-call features every detector reads, from the deduplicated calls of the pass's
-- sessions ({session_calls:Identifier}: queries/features/session-calls.sql, materialized first).
-- A detector pass (collector/src/detect/run-detectors.ts) materializes this SELECT once, as a
-- table of its own, and each detector then scans the copy: the FINAL read, the LLM join and the
-- one sort by call order are paid once per pass, not once per detector. It is a file the runner
-- reads rather than a parameterized view: the same SQL behind a view (loopwatch_detector_calls,
-- schema 005 until 006) cost 40-60 ms more per pass in the engine's planning, a fifth of an
-- incremental pass.
-- Columns, one row per tool call (deduplicated), each session's whole history:
--   seq       position in the session (by start time, then span id)
--   call_key  tool + arguments hash: what "the same call" means
--   outcome_kind, outcome  what the call returned: 'R' + result hash, 'E' + error identity (type,
--             normalized message), or 'U' + span id when the result is unknown (not captured): an
--             unknown result never equals another, so it never counts as "nothing new"
--   result_empty  the call succeeded and returned nothing (an action, not a read)
--   error_key     tool + error type + normalized message (0 for a successful call)
--   same_call_prev/next, same_outcome_prev/next  the neighbouring call (seq -+ 1) has the same
--             call_key / outcome: runs of repeats are found from these without another sort
--   fail_run_prev/next  this call and its neighbour both failed, on the same tool
--   cycle2..cycle4  same call_key and outcome as the call 2..4 places earlier (oscillation)
--   has_children  some span in the trace has this call as its parent (nesting depth)
--   tokens, cost_usd, time_ns  the share of the turn that requested it (the session's latest
--             LLM call started at or before the call started, with the LLM calls since the tool
--             call before: planning, reflection; split evenly among the calls that LLM call
--             requested) plus what the LLM calls it made itself spent (children of its span: a
--             summarizer the tool runs did not request the next tool call; a tool call of the LLM
--             call's own session), and for time, the call's own duration. A call made by another
--             tool call of its session (its parent span: a build running compile and link) was
--             not requested by the model: no share. By start, not end: a streamed LLM call runs
--             the tool calls it requests before it ends. Cost: reported_cost_usd when > 0, else
--             tokens x model_prices (loopwatch_llm_cost, queries/schema/020_operator_prices.sql).
--   turn_start, turn_end  when the LLM calls of the call's turn ran (first start, last end; 1970
--             without a turn): the runaway wall time counts them as running, not as a pause
--   turn_pauses   the pauses between them: (from, to) in ns since the epoch for each LLM call of
--             the turn that started after the ones before it had ended (a chat: the answer, the
--             person's reply, the next planning call; added by queries/schema/013_turn_pauses.sql)
--   occurrence  for a call with a non-empty result ('R'), how many calls of the session so far
--             (this one included) made the same call and got the same result; 0 otherwise. The
--             redundant detector then reads the few calls that repeat instead of counting every
--             (session, call, result) of the pass (added by queries/schema/009_call_occurrence.sql).
WITH
    calls AS (SELECT * FROM {session_calls:Identifier}),
    -- spans of kind SERVER right under a call: the far side of a tool the call reached over the
    -- network (an MCP server's `tools/call`, which schema 017 does not count as a call). An LLM
    -- call under one is the tool's own work, made inside that call; read from the calls' traces
    -- as `parents` below is.
    served AS (
        SELECT SpanId AS span_id, any(ParentSpanId) AS call_span_id FROM otel_traces
        WHERE TraceId IN (SELECT DISTINCT trace_id FROM calls)
          AND Timestamp >= (SELECT min(ts) - INTERVAL 1 HOUR FROM calls)
          AND SpanKind IN ('Server', 'SPAN_KIND_SERVER') AND ParentSpanId IN (SELECT span_id FROM calls)
        GROUP BY SpanId
    ),
    llm AS (
        SELECT l.session_id AS session_id, l.span_id AS span_id, if(s.span_id != '', s.call_span_id, l.parent_span_id) AS parent_span_id,
               l.ts AS ts, l.duration_ns AS duration_ns, l.model AS model, l.input_tokens AS input_tokens, l.output_tokens AS output_tokens,
               l.cache_read_tokens AS cache_read_tokens, l.cache_creation_tokens AS cache_creation_tokens,
               l.total_tokens AS total_tokens, l.reported_cost_usd AS reported_cost_usd, loopwatch_model_key(l.model) AS model_key,
               -- made inside a tool call of its own session (a sub-agent's session under another
               -- session's call keeps its LLM calls: the same features whatever the pass holds)
               (l.session_id, if(s.span_id != '', s.call_span_id, l.parent_span_id)) IN (SELECT session_id, span_id FROM calls) AS inside
        FROM (SELECT * FROM agent_llm_calls FINAL WHERE session_id IN (SELECT DISTINCT session_id FROM calls)) AS l
        LEFT JOIN served AS s ON s.span_id = l.parent_span_id
    ),
    -- the view loopwatch_model_key_prices (queries/schema/020_operator_prices.sql), inlined: behind the
    -- view the copy of an incremental pass measured 77 against 69 ms (planning); the reports and
    -- dashboards use the view. tests/detectors/sql-detectors.test.ts checks that both price alike.
    prices AS (
        SELECT k.model_key AS model_key,
               argMax(tuple(p.input_per_mtok, p.output_per_mtok, p.cached_input_per_mtok, p.cache_write_per_mtok, p.overridden), tuple(p.match = 'exact', length(p.model))) AS price
        FROM (SELECT DISTINCT model_key FROM loopwatch_model_keys) AS k CROSS JOIN (SELECT * FROM model_prices FINAL) AS p
        WHERE (p.match = 'exact' AND k.model_key = p.model) OR (p.match = 'prefix' AND startsWith(k.model_key, p.model))
        GROUP BY k.model_key
    ),
    llm_cost AS (
        SELECT l.session_id AS session_id, l.span_id AS span_id, l.parent_span_id AS parent_span_id, l.inside AS inside,
               l.ts AS ts, l.duration_ns AS duration_ns, l.model AS model, l.total_tokens AS total_tokens,
               loopwatch_llm_cost(l.reported_cost_usd, l.input_tokens, l.cache_read_tokens, l.cache_creation_tokens, l.output_tokens, pr.price) AS cost_usd
        FROM llm AS l LEFT JOIN prices AS pr ON l.model_key = pr.model_key
    ),
    -- the spans that are some span's parent, for has_children: those of the calls' traces (the
    -- trace id's bloom filter skips the other granules), from an hour before their first call
    -- (children start after their parent; an hour of clock skew allowed). Reading every
    -- parent of the last hour instead grows with the whole store's ingest rate: with 2M spans of
    -- other traces in that hour an incremental pass took 0.7-1.4 s instead of 0.1-0.25 s.
    parents AS (
        SELECT DISTINCT ParentSpanId AS span_id FROM otel_traces
        WHERE TraceId IN (SELECT DISTINCT trace_id FROM calls)
          AND Timestamp >= (SELECT min(ts) - INTERVAL 1 HOUR FROM calls)
    ),
    -- the calls the model requested: not those another tool call of the session made (its span
    -- their parent). Of the session, so that a call's features do not depend on which other
    -- sessions a pass holds (a sub-agent's session under another session's call).
    top AS (
        SELECT session_id, ts, span_id FROM calls
        WHERE (session_id, parent_span_id) NOT IN (SELECT session_id, span_id FROM calls)
    ),
    keyed AS (
        SELECT session_id, ts, end_ts, duration_ns, trace_id, span_id, parent_span_id, service, agent, model, tool,
               CAST(status, 'String') AS status, error_type, error_message, has_result,
               has_result = 1 AND result_hash = loopwatch_hash64('') AS result_empty,
               cityHash64(tool, args_hash) AS call_key,
               multiIf(status = 'error', 'E', has_result = 1, 'R', 'U') AS outcome_kind,
               multiIf(status = 'error', cityHash64('E', error_type, loopwatch_error_norm(error_message)),
                       has_result = 1, cityHash64('R', result_hash),
                       cityHash64('U', span_id)) AS outcome,
               if(status = 'error', cityHash64(tool, error_type, loopwatch_error_norm(error_message)), 0) AS error_key,
               span_id IN (SELECT span_id FROM parents) AS has_children
        FROM calls
    ),
    windowed AS (
        SELECT *,
            row_number() OVER w AS seq,
            lagInFrame(call_key, 1, 0) OVER w AS k1, leadInFrame(call_key, 1, 0) OVER w AS kn,
            lagInFrame(outcome, 1, 0) OVER w AS o1, leadInFrame(outcome, 1, 0) OVER w AS on,
            lagInFrame(tool, 1, '') OVER w AS t1, leadInFrame(tool, 1, '') OVER w AS tn,
            lagInFrame(status, 1, '') OVER w AS s1, leadInFrame(status, 1, '') OVER w AS sn,
            lagInFrame(call_key, 2, 0) OVER w AS k2, lagInFrame(outcome, 2, 0) OVER w AS o2,
            lagInFrame(call_key, 3, 0) OVER w AS k3, lagInFrame(outcome, 3, 0) OVER w AS o3,
            lagInFrame(call_key, 4, 0) OVER w AS k4, lagInFrame(outcome, 4, 0) OVER w AS o4,
            row_number() OVER (PARTITION BY session_id, call_key, outcome ORDER BY ts, span_id) AS nth_same
        FROM keyed
        WINDOW w AS (PARTITION BY session_id ORDER BY ts, span_id ROWS BETWEEN 4 PRECEDING AND 1 FOLLOWING)
    ),
    -- A turn: the LLM calls from one tool call to the next (planning, reflection, then the call
    -- that asks for tools) are all what it cost to get to the next tool calls, not only the
    -- latest: an agent that plans at length before each step spends most of its tokens there.
    -- Each LLM call (not made inside a tool call) belongs to the first tool call that started at
    -- or after it (turn_ts; none after the session's last tool call: its final answer). A tool
    -- call's turn is the latest that began at or before it started: the turn of the latest LLM
    -- call before it, which requested it; the calls of a turn share its sums.
    turn_llm AS (
        SELECT l.*, c.ts AS turn_ts
        FROM (SELECT * FROM llm_cost WHERE NOT inside) AS l
        ASOF INNER JOIN top AS c ON l.session_id = c.session_id AND l.ts <= c.ts
    ),
    turns AS (
        SELECT g.session_id AS session_id, g.turn_ts AS turn_ts, argMax(g.model, g.ts) AS model,
               sum(g.total_tokens) AS tokens, sum(g.cost_usd) AS cost_usd, sum(g.duration_ns) AS duration_ns,
               min(g.ts) AS turn_start, max(g.ts + toIntervalNanosecond(g.duration_ns)) AS turn_end,
               -- a pause before each LLM call that started after the turn's earlier ones had all
               -- ended: (their latest end, its start); one window, not a pairwise walk (a turn
               -- can hold thousands of LLM calls: a chat without tools)
               groupArrayIf((g.prior_end, toUnixTimestamp64Nano(g.ts)), g.prior_end > 0 AND toUnixTimestamp64Nano(g.ts) > g.prior_end) AS turn_pauses
        FROM (
            SELECT *, max(toUnixTimestamp64Nano(ts) + toInt64(duration_ns))
                          OVER (PARTITION BY session_id, turn_ts ORDER BY ts, span_id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prior_end
            FROM turn_llm
        ) AS g
        GROUP BY g.session_id, g.turn_ts
    ),
    requested AS (
        SELECT c.span_id AS span_id, t.model AS llm_model, t.tokens AS llm_tokens, t.cost_usd AS llm_cost_usd,
               t.duration_ns AS llm_duration_ns, count() OVER (PARTITION BY c.session_id, t.turn_ts) AS llm_share,
               t.turn_start AS turn_start, t.turn_end AS turn_end, t.turn_pauses AS turn_pauses
        FROM top AS c
        ASOF INNER JOIN turns AS t ON c.session_id = t.session_id AND c.ts >= t.turn_ts
    ),
    -- what the LLM calls a tool call made itself spent (their time is within its duration)
    spent_inside AS (
        SELECT parent_span_id AS span_id, sum(total_tokens) AS tokens, sum(cost_usd) AS cost_usd
        FROM llm_cost WHERE inside GROUP BY parent_span_id
    )
SELECT
    w.session_id AS session_id, w.seq AS seq, w.ts AS ts, w.end_ts AS end_ts, w.duration_ns AS duration_ns,
    w.trace_id AS trace_id, w.span_id AS span_id, w.parent_span_id AS parent_span_id, w.service AS service,
    w.agent AS agent, if(w.model != '', w.model, r.llm_model) AS model, w.tool AS tool,
    w.status AS status, w.error_type AS error_type, w.error_message AS error_message, w.has_result AS has_result,
    w.result_empty AS result_empty, w.call_key AS call_key, w.outcome_kind AS outcome_kind, w.outcome AS outcome,
    w.error_key AS error_key,
    w.seq > 1 AND w.call_key = w.k1 AS same_call_prev,
    w.kn != 0 AND w.call_key = w.kn AS same_call_next,
    w.seq > 1 AND w.outcome = w.o1 AS same_outcome_prev,
    w.on != 0 AND w.outcome = w.on AS same_outcome_next,
    w.status = 'error' AND w.s1 = 'error' AND w.tool = w.t1 AS fail_run_prev,
    w.status = 'error' AND w.sn = 'error' AND w.tool = w.tn AS fail_run_next,
    w.seq > 2 AND w.call_key = w.k2 AND w.outcome = w.o2 AS cycle2,
    w.seq > 3 AND w.call_key = w.k3 AND w.outcome = w.o3 AS cycle3,
    w.seq > 4 AND w.call_key = w.k4 AND w.outcome = w.o4 AS cycle4,
    w.has_children AS has_children,
    if(r.llm_share = 0, 0., r.llm_tokens / r.llm_share) + i.tokens AS tokens,
    if(r.llm_share = 0, 0., r.llm_cost_usd / r.llm_share) + i.cost_usd AS cost_usd,
    w.duration_ns + if(r.llm_share = 0, 0., r.llm_duration_ns / r.llm_share) AS time_ns,
    if(w.outcome_kind = 'R' AND NOT w.result_empty, w.nth_same, 0) AS occurrence,
    r.turn_start AS turn_start,
    r.turn_end AS turn_end,
    r.turn_pauses AS turn_pauses
FROM windowed AS w
ANY LEFT JOIN requested AS r ON r.span_id = w.span_id
ANY LEFT JOIN spent_inside AS i ON i.span_id = w.span_id
