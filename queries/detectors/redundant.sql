-- redundant (waste): the same call (tool + arguments) returning the same successful result
-- {redundant_min_calls} or more times in a session, consecutive or not: every call after the
-- first could have reused the first one's result. Unknown results never match, and neither do
-- empty results: a call that returns nothing (sleep, a write) is an action, not a read.
-- Wasted: every identical call after the first.
-- Contract: see collector/src/detect/run-detectors.ts.
-- loopwatch: when {redundant_min_calls:UInt32} <= 1 OR uniqExactIf((session_id, call_key, outcome), outcome_kind = 'R' AND NOT result_empty) < countIf(outcome_kind = 'R' AND NOT result_empty)
WITH
    -- the (session, call, result) triples seen often enough: a narrow count of one 64-bit hash
    -- per call first (a collision only lets a triple through to the exact count below), so the
    -- wide aggregates run on the few calls that repeat
    repeated AS (
        SELECT cityHash64(session_id, call_key, outcome) AS h FROM {calls:Identifier}
        WHERE outcome_kind = 'R' AND NOT result_empty
        GROUP BY h
        HAVING count() >= {redundant_min_calls:UInt32}
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
    'info' AS severity,
    concat('Tool ', any(tool), ' was called ', toString(count()), ' times with the same arguments and got the same result: ',
           toString(count() - 1), ' redundant calls.') AS message,
    '{}' AS details
FROM {calls:Identifier}
WHERE outcome_kind = 'R' AND NOT result_empty
  AND cityHash64(session_id, call_key, outcome) IN (SELECT h FROM repeated)
GROUP BY session_id, call_key, outcome
HAVING count() >= {redundant_min_calls:UInt32}
