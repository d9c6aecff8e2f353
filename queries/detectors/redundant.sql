-- redundant (waste): the same call (tool + arguments) returning the same successful result
-- {redundant_min_calls} or more times in a session, consecutive or not: every call after the
-- first could have reused the first one's result. Unknown results never match, and neither do
-- empty results: a call that returns nothing (sleep, a write) is an action, not a read.
-- Wasted: every identical call after the first.
-- Contract: see collector/src/detect/run-detectors.ts.
-- loopwatch: when max(occurrence) >= greatest({redundant_min_calls:UInt32}, 1)
WITH
    -- the (session, call, result) triples seen often enough: each has exactly one call whose
    -- occurrence (the kept features' count of the same call and result so far) is the threshold,
    -- so the wide aggregates run on the few calls that repeat, found without counting every triple
    repeated AS (
        SELECT session_id, call_key, outcome FROM {calls:Identifier}
        WHERE occurrence = greatest({redundant_min_calls:UInt32}, 1)
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
WHERE occurrence > 0
  -- the outcome alone first: a cheap test of one number, which most calls fail
  AND outcome IN (SELECT outcome FROM repeated)
  AND (session_id, call_key, outcome) IN (SELECT session_id, call_key, outcome FROM repeated)
GROUP BY session_id, call_key, outcome
HAVING count() >= {redundant_min_calls:UInt32}
