-- retry_storm: the same tool failing {retry_storm_min_run} or more times in a row, whatever the
-- arguments, tried again: some call of the run started after another one had ended. One step's
-- parallel calls failing together (five fetches at once with the network down) are not retries
-- of each other; the same step failing again, batch after batch, is. A retry that succeeds
-- before the threshold ends the run and is not flagged.
-- Wasted: every failed call of the run after the first.
-- Contract: see collector/src/detect/run-detectors.ts.
-- loopwatch: when countIf(status = 'error') > 0 AND ({retry_storm_min_run:UInt32} <= 1 OR countIf(fail_run_prev) > 0)
WITH
    -- only failures next to another failure of the same tool can be in a run of two or more
    paired AS (
        SELECT * FROM {calls:Identifier}
        WHERE status = 'error' AND (fail_run_prev OR fail_run_next OR {retry_storm_min_run:UInt32} <= 1)
    ),
    runs AS (
        SELECT *, sum(NOT fail_run_prev) OVER (PARTITION BY session_id ORDER BY seq ROWS UNBOUNDED PRECEDING) AS run_id
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
    if(count() >= 2 * {retry_storm_min_run:UInt32}, 'critical', 'warning') AS severity,
    concat('Tool ', any(tool), ' failed ', toString(count()), ' times in a row (',
           if(uniqExact(call_key) = 1, 'the same arguments', concat(toString(uniqExact(call_key)), ' distinct argument sets')),
           '; last error: ', argMax(error_type, seq), ').') AS message,
    toJSONString(map('distinct_args', toString(uniqExact(call_key)), 'last_error', argMax(error_message, seq))) AS details
FROM runs
GROUP BY session_id, run_id
-- tried again: a call started after another had ended (strictly: the same call cannot, and calls
-- of no duration, or timed by a clock in milliseconds, at one instant are a batch)
HAVING count() >= {retry_storm_min_run:UInt32} AND max(ts) > min(end_ts)
