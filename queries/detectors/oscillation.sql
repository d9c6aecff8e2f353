-- oscillation: a cycle of 2..{oscillation_max_period} distinct calls (A B A B, A B C A B C)
-- repeated {oscillation_min_cycles} or more times, where every call after the first cycle has
-- the same tool, arguments and outcome as the call one period earlier. A changing result
-- (polling between sleeps, tests re-run after different edits) breaks the cycle.
-- Wasted: every call after the first cycle.
-- Contract: see collector/src/detect/run-detectors.ts.
WITH
    c AS (SELECT * FROM loopwatch_detector_calls(since = {since:DateTime64(3)}, until = {until:DateTime64(3)})),
    lagged AS (
        SELECT *,
               seq > 2 AND call_key = lagInFrame(call_key, 2, '') OVER w AND outcome = lagInFrame(outcome, 2, '') OVER w AS m2,
               seq > 3 AND call_key = lagInFrame(call_key, 3, '') OVER w AND outcome = lagInFrame(outcome, 3, '') OVER w AS m3,
               seq > 4 AND call_key = lagInFrame(call_key, 4, '') OVER w AND outcome = lagInFrame(outcome, 4, '') OVER w AS m4,
               -- the call one period back: the loop's first call when this row starts an island
               tuple(lagInFrame(span_id, 2, '') OVER w, lagInFrame(parent_span_id, 2, '') OVER w, lagInFrame(ts, 2) OVER w) AS b2,
               tuple(lagInFrame(span_id, 3, '') OVER w, lagInFrame(parent_span_id, 3, '') OVER w, lagInFrame(ts, 3) OVER w) AS b3,
               tuple(lagInFrame(span_id, 4, '') OVER w, lagInFrame(parent_span_id, 4, '') OVER w, lagInFrame(ts, 4) OVER w) AS b4
        FROM c
        WINDOW w AS (PARTITION BY session_id ORDER BY seq ROWS BETWEEN 4 PRECEDING AND CURRENT ROW)
    ),
    -- one row per call and period whose call repeats the one a period earlier
    matched AS (
        SELECT *, tupleElement(pm, 1) AS period, tupleElement(pm, 3) AS back
        FROM lagged
        ARRAY JOIN [(2, m2, b2), (3, m3, b3), (4, m4, b4)] AS pm
        WHERE tupleElement(pm, 2) AND tupleElement(pm, 1) <= {oscillation_max_period:UInt32}
    ),
    -- consecutive matching calls form an island; the loop is the island plus the cycle before it
    islands AS (
        SELECT *, seq - row_number() OVER (PARTITION BY session_id, period ORDER BY seq) AS island
        FROM matched
    ),
    loops AS (
        SELECT
            session_id, period,
            argMin(back, seq) AS first,
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
        HAVING uniqExact(call_key) = period AND count() + period >= period * {oscillation_min_cycles:UInt32}
    )
SELECT
    l.session_id AS session_id,
    l.trace_id AS trace_id,
    tupleElement(l.first, 2) AS parent_span_id,
    tupleElement(l.first, 1) AS first_span_id,
    l.last_span_id AS last_span_id,
    toString(tupleElement(l.first, 3)) AS first_ts,
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
