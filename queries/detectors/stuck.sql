-- stuck: the same tool, arguments and successful result {stuck_min_run} or more times in a row:
-- the agent learns nothing new. Calls whose result is unknown (not captured) never match.
-- Wasted: every call of the run after the first.
-- Contract: see collector/src/detect/run-detectors.ts.
-- loopwatch: when {stuck_min_run:UInt32} <= 1 OR countIf(same_call_prev AND same_outcome_prev AND outcome_kind = 'R') > 0
WITH
    -- only calls with an identical neighbour (call and outcome) can be in a run of two or more
    paired AS (
        SELECT *, same_call_prev AND same_outcome_prev AS continues
        FROM {calls:Identifier}
        WHERE (same_call_prev AND same_outcome_prev) OR (same_call_next AND same_outcome_next) OR {stuck_min_run:UInt32} <= 1
    ),
    runs AS (
        SELECT *, sum(NOT continues) OVER (PARTITION BY session_id ORDER BY seq ROWS UNBOUNDED PRECEDING) AS run_id
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
    if(count() >= 2 * {stuck_min_run:UInt32}, 'critical', 'warning') AS severity,
    concat('Tool ', any(tool), ' returned the same result to the same arguments ', toString(count()),
           ' times in a row: the agent is stuck.') AS message,
    '{}' AS details
FROM runs
GROUP BY session_id, run_id
HAVING count() >= {stuck_min_run:UInt32} AND any(outcome_kind) = 'R'
