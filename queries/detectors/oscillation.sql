-- oscillation: a cycle of 2..{oscillation_max_period} calls (A B A B, A B C A B C) repeated
-- {oscillation_min_cycles} or more times, where every call after the first cycle has the same
-- tool, arguments and outcome as the call one period earlier. A changing result (polling between
-- sleeps, tests re-run after different edits) breaks the cycle. Calls next to each other in the
-- cycle differ; a call may come back within a cycle of 4 as long as the cycle is not two of 2:
-- edit A, run tests (fail X), edit B, run tests (fail Y), again and again, flip-flops between two
-- fixes.
-- Wasted: every call after the first cycle.
-- Contract: see collector/src/detect/run-detectors.ts.
-- A call in a cycle differs from the one before it (a run of one repeated call, A A A A, also
-- repeats the call two back, but is not an oscillation).
-- loopwatch: when countIf((cycle2 OR cycle3 OR cycle4) AND NOT same_call_prev) > 0
WITH
    -- one row per call and period whose call repeats the one a period earlier
    -- (filtered before the ARRAY JOIN, which would otherwise build an array for every call)
    matched AS (
        SELECT *, period
        FROM (
            SELECT * FROM {calls:Identifier}
            -- a call in a cycle never repeats the call before it, and dropping
            -- those that do never joins or splits a cycle (see the when line)
            WHERE (cycle2 OR cycle3 OR cycle4) AND NOT same_call_prev
        )
        ARRAY JOIN arrayFilter(p -> p <= {oscillation_max_period:UInt32},
                               arrayConcat(if(cycle2, [2], []), if(cycle3, [3], []), if(cycle4, [4], []))) AS period
    ),
    -- consecutive matching calls form an island; the loop is the island plus the cycle before it
    islands AS (
        SELECT *, seq - row_number() OVER (PARTITION BY session_id, period ORDER BY seq) AS island
        FROM matched
    ),
    loops AS (
        SELECT
            session_id, period,
            toUInt64(min(seq) - period) AS first_seq,
            any(trace_id) AS trace_id,
            any(service) AS service,
            any(agent) AS agent,
            argMax(span_id, seq) AS last_span_id,
            max(end_ts) AS last_ts,
            groupUniqArray(tool) AS tools,
            count() AS wasted_calls,
            sum(tokens) AS wasted_tokens,
            sum(cost_usd) AS wasted_cost_usd,
            sum(time_ns) AS wasted_time_ns,
            anyIf(model, model != '') AS model
        FROM islands
        GROUP BY session_id, period, island
        -- (neighbours differ: the island's calls are those that differ from the one before, so a
        -- cycle of 2 or 3 is of distinct calls; one of 4 must not be a cycle of 2 twice)
        HAVING (period != 4 OR countIf(NOT cycle2) > 0) AND count() + period >= period * {oscillation_min_cycles:UInt32}
    ),
    -- the loop's first call: one period before the island's first call
    firsts AS (
        SELECT session_id, seq, span_id, parent_span_id, ts FROM {calls:Identifier}
        WHERE (session_id, seq) IN (SELECT session_id, first_seq FROM loops)
    )
SELECT
    l.session_id AS session_id,
    l.trace_id AS trace_id,
    f.parent_span_id AS parent_span_id,
    f.span_id AS first_span_id,
    l.last_span_id AS last_span_id,
    toString(f.ts) AS first_ts,
    toString(l.last_ts) AS last_ts,
    l.service AS service,
    l.agent AS agent,
    l.model AS model,
    arraySort(l.tools) AS tools,
    toUInt32(l.wasted_calls + l.period) AS repeats,
    l.wasted_calls AS wasted_calls,
    l.wasted_tokens AS wasted_tokens,
    l.wasted_cost_usd AS wasted_cost_usd,
    l.wasted_time_ns AS wasted_time_ns,
    if(l.wasted_calls + l.period >= 2 * l.period * {oscillation_min_cycles:UInt32}, 'critical', 'warning') AS severity,
    concat('The agent cycles through ', toString(l.period), ' calls (', arrayStringConcat(arraySort(l.tools), ', '), ') ',
           toString(intDiv(l.wasted_calls + l.period, l.period)), ' times with the same arguments and results.') AS message,
    toJSONString(map('period', l.period)) AS details
FROM loops AS l
INNER JOIN firsts AS f ON f.session_id = l.session_id AND f.seq = l.first_seq
