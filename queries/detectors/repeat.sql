-- repeat: the same tool with the same arguments {repeat_min_run} or more times in a row in a
-- session, while the run learns little: at most {repeat_max_new_ratio} of its calls return
-- distinct outcomes (polling that keeps seeing a changing answer is progress, not a loop).
-- Wasted: every call of the run after the first.
-- Contract: see collector/src/detect/run-detectors.ts.
-- loopwatch: when {repeat_min_run:UInt32} <= 1 OR countIf(same_call_prev) > 0
WITH
    -- only calls with an identical neighbour can be in a run of two or more
    paired AS (
        SELECT * FROM {calls:Identifier}
        WHERE same_call_prev OR same_call_next OR {repeat_min_run:UInt32} <= 1
    ),
    runs AS (
        SELECT *, sum(NOT same_call_prev) OVER (PARTITION BY session_id ORDER BY seq ROWS UNBOUNDED PRECEDING) AS run_id
        FROM paired
    )
SELECT
    session_id,
    argMin(trace_id, seq) AS trace_id,
    argMin(parent_span_id, seq) AS parent_span_id,
    argMin(span_id, seq) AS first_span_id,
    argMax(span_id, seq) AS last_span_id,
    toString(min(ts)) AS first_ts,
    toString(max(end_ts)) AS last_ts,
    any(service) AS service,
    any(agent) AS agent,
    anyIf(model, model != '') AS model,
    [any(tool)] AS tools,
    count() AS repeats,
    count() - 1 AS wasted_calls,
    sum(tokens) - argMin(tokens, seq) AS wasted_tokens,
    sum(cost_usd) - argMin(cost_usd, seq) AS wasted_cost_usd,
    sum(time_ns) - argMin(time_ns, seq) AS wasted_time_ns,
    if(count() >= 2 * {repeat_min_run:UInt32}, 'critical', 'warning') AS severity,
    concat('Tool ', any(tool), ' was called ', toString(count()), ' times in a row with the same arguments (',
           toString(uniqExact(outcome)), if(uniqExact(outcome) = 1, ' distinct outcome).', ' distinct outcomes).')) AS message,
    toJSONString(map('distinct_outcomes', uniqExact(outcome), 'failed', countIf(status = 'error'))) AS details
FROM runs
GROUP BY session_id, run_id
HAVING count() >= {repeat_min_run:UInt32} AND uniqExact(outcome) <= count() * {repeat_max_new_ratio:Float64}
