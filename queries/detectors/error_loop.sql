-- error_loop (impossible task): the same error, identified by tool + error type + normalized
-- message (loopwatch_error_norm: ids, times and long numbers ignored), {error_loop_min_count} or
-- more times in a session, with other calls in between at least once (the agent tried something
-- else and came back to the same wall; an uninterrupted burst of failures is a retry_storm).
-- Failures that the same call (tool and arguments), tried again, got past do not count: a passing
-- error (a 503, a timeout) is not a wall, also when the retry came after a backoff or after the
-- other calls of its turn, and neither is a problem the agent fixed (`npm test` failing alike
-- after each edit, then passing): a later call of the same call succeeded.
-- Wasted: every occurrence after the first.
-- Contract: see collector/src/detect/run-detectors.ts.
-- loopwatch: when countIf(status = 'error') >= {error_loop_min_count:UInt32}
WITH
    -- errors that fail often enough, before the failures got past are taken out (a narrow count
    -- of one 64-bit hash per failure: a collision only lets an error through to the exact count)
    recurring AS (
        SELECT cityHash64(session_id, error_key) AS h FROM {calls:Identifier}
        WHERE status = 'error' GROUP BY h HAVING count() >= {error_loop_min_count:UInt32}
    ),
    -- the failures not got past: no later call of the same call (tool and arguments) succeeded.
    -- The later calls of each failed call key are read only for the keys of those errors.
    counted AS (
        SELECT * FROM (
            SELECT *, max(status != 'error') OVER (PARTITION BY session_id, call_key ORDER BY seq
                                                   ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS got_past
            FROM {calls:Identifier}
            WHERE call_key IN (SELECT call_key FROM {calls:Identifier} WHERE status = 'error' AND cityHash64(session_id, error_key) IN (SELECT h FROM recurring))
        )
        -- (a failure of another error on one of those keys is grouped apart and left out by the count)
        WHERE status = 'error' AND got_past = 0
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
    'critical' AS severity,
    concat('Tool ', any(tool), ' hit the same error ', toString(count()), ' times in this session (',
           any(error_type), ': ', leftUTF8(argMin(error_message, seq), 120), '): the task may be impossible as attempted.') AS message,
    toJSONString(map('error_key', concat(any(tool), '|', any(error_type), '|', loopwatch_error_norm(argMin(error_message, seq))), 'distinct_args', toString(uniqExact(call_key)))) AS details
FROM counted
GROUP BY session_id, error_key
HAVING count() >= {error_loop_min_count:UInt32} AND max(seq) - min(seq) + 1 > count()
