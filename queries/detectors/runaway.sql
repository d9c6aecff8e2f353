-- runaway: one finding per session that either stops making progress (a run of
-- {runaway_no_progress_run} or more calls in a row, none of which returns a result the session
-- had not seen from that tool, or is an action that returns nothing not made before; failed
-- calls are never progress, unknown results always are) or
-- blows a budget: calls {budget_max_calls}, tokens {budget_max_tokens}, cost {budget_max_cost_usd},
-- wall time {budget_max_wall_time_s} s (first call's start to this call's end, less the pauses
-- longer than {budget_idle_gap_s} s between calls and their turns' LLM calls: a person's turn or a
-- conversation resumed hours later has not been running all that time; a long LLM call has),
-- nesting depth of tool calls inside tool calls {budget_max_tool_depth} (followed through
-- parent_span_id, across non-tool spans). 0 disables
-- a budget. Anchored on the session's first call so it stays one finding as the session grows;
-- details.trigger_span_id is where it first crossed. Wasted: calls in no-progress runs and calls
-- past a budget. Tokens and cost are those attributed to tool calls (see queries/features/detector-calls.sql).
-- Contract: see collector/src/detect/run-detectors.ts. The `when` lines are per session (seq is
-- the call's position in its session; the last line is the candidates test below, less depth):
-- a pass with many small sessions does not run this for their total.
-- loopwatch: when {budget_max_calls:UInt32} > 0 AND max(seq) > {budget_max_calls:UInt32}
-- loopwatch: when {budget_max_tool_depth:UInt32} > 0 AND countIf(has_children) >= {budget_max_tool_depth:UInt32}
-- loopwatch: when (SELECT count() FROM (SELECT session_id FROM {calls:Identifier} GROUP BY session_id HAVING ({budget_max_tokens:Float64} > 0 AND sum(tokens) > {budget_max_tokens:Float64}) OR ({budget_max_cost_usd:Float64} > 0 AND sum(cost_usd) > {budget_max_cost_usd:Float64}) OR ({budget_max_wall_time_s:Float64} > 0 AND (toUnixTimestamp64Nano(max(end_ts)) - toUnixTimestamp64Nano(min(ts))) / 1e9 > {budget_max_wall_time_s:Float64}) OR countIf(outcome_kind != 'U') - uniqExactIf(cityHash64(tool, outcome), outcome_kind = 'R') >= {runaway_no_progress_run:UInt32})) > 0
WITH RECURSIVE
    -- traces where a chain deeper than the budget is possible: a chain of depth d has d - 1 tool
    -- calls that other spans hang under
    deep_traces AS (
        SELECT trace_id FROM {calls:Identifier}
        WHERE {budget_max_tool_depth:UInt32} > 0 AND has_children
        GROUP BY trace_id
        HAVING count() >= {budget_max_tool_depth:UInt32}
    ),
    -- sessions that can run away: over a budget in total, with at least a run's worth of calls
    -- that returned nothing new, or in a deep trace; everything below looks only at these.
    -- Sessions and results are keyed by 64-bit hash (a collision only keeps a session in). The
    -- no-progress test counts distinct results per session, so it runs only on sessions with a
    -- run's worth of calls (seq numbers a session's calls 1, 2, ...).
    candidates AS (
        SELECT cityHash64(session_id) AS sh FROM {calls:Identifier}
        GROUP BY sh
        HAVING ({budget_max_calls:UInt32} > 0 AND count() > {budget_max_calls:UInt32})
            OR ({budget_max_tokens:Float64} > 0 AND sum(tokens) > {budget_max_tokens:Float64})
            OR ({budget_max_cost_usd:Float64} > 0 AND sum(cost_usd) > {budget_max_cost_usd:Float64})
            OR ({budget_max_wall_time_s:Float64} > 0
                AND (toUnixTimestamp64Nano(max(end_ts)) - toUnixTimestamp64Nano(min(ts))) / 1e9 > {budget_max_wall_time_s:Float64})
            OR max(trace_id IN (SELECT trace_id FROM deep_traces))
        UNION ALL
        SELECT cityHash64(session_id) AS sh FROM {calls:Identifier}
        WHERE session_id IN (SELECT session_id FROM {calls:Identifier} WHERE seq = {runaway_no_progress_run:UInt32})
        GROUP BY sh
        HAVING countIf(outcome_kind != 'U') - uniqExactIf(cityHash64(tool, outcome), outcome_kind = 'R') >= {runaway_no_progress_run:UInt32}
    ),
    c AS (SELECT * FROM {calls:Identifier} WHERE cityHash64(session_id) IN (SELECT sh FROM candidates)),
    -- depth walk over the raw spans of the deep traces (cheap inputs: not the view)
    scoped AS (
        SELECT span_id, parent_span_id, trace_id FROM {calls:Identifier}
        WHERE trace_id IN (SELECT trace_id FROM deep_traces)
    ),
    spans AS (
        SELECT SpanId AS span_id, any(ParentSpanId) AS parent_span_id, toUInt32(SpanId IN (SELECT span_id FROM scoped)) AS is_tool
        FROM otel_traces
        WHERE TraceId IN (SELECT trace_id FROM deep_traces) AND SpanName != 'loopwatch.loop'
        GROUP BY SpanId
    ),
    -- walk up from every tool call; each tool span passed adds one level. Up to 64 steps, and on
    -- while the chain is within the budget (a budget over 64 can fire: deeper chains report a
    -- depth of at least what 64 steps found), at most 32 steps a level of the budget (an agent
    -- framework's spans between two levels) and 9,000 in all (the runner allows the engine
    -- 10,000 recursion steps, its default of 1,000 failed the whole detector). Spans whose
    -- parents form a cycle never reach a root: a walk ends when it comes back to the span it
    -- passed at its last power-of-two step (`mark`, Brent's cycle test), within about twice the
    -- cycle and its lead-in, not at the cap (walked to the cap on every pass, one bad trace made
    -- a pass 10x slower)
    walk AS (
        SELECT span_id AS leaf, parent_span_id AS cur, toUInt32(1) AS depth, toUInt32(0) AS steps, '' AS mark
        FROM scoped
        WHERE parent_span_id != ''
        UNION ALL
        SELECT w.leaf AS leaf, s.parent_span_id AS cur, w.depth + s.is_tool AS depth, w.steps + 1 AS steps,
               if(bitAnd(w.steps + 1, w.steps) = 0, w.cur, w.mark) AS mark
        FROM walk AS w INNER JOIN spans AS s ON s.span_id = w.cur
        WHERE w.cur != '' AND w.cur != w.mark AND (w.steps < 64 OR w.depth <= {budget_max_tool_depth:UInt32}) AND w.steps < least(greatest(64, 32 * {budget_max_tool_depth:UInt32}), 9000)
    ),
    depths AS (SELECT leaf, max(depth) AS depth FROM walk GROUP BY leaf),
    firsts AS (
        -- new: a result the tool had not returned in the session, or an action (a call that returns
        -- nothing) not made before: 25 writes of different files are progress, the same write
        -- again is not
        SELECT *, outcome_kind = 'U'
                  OR (outcome_kind = 'R' AND (row_number() OVER (PARTITION BY session_id, tool, outcome ORDER BY seq) = 1
                                              OR (result_empty AND row_number() OVER (PARTITION BY session_id, call_key, result_empty ORDER BY seq) = 1))) AS is_new,
               -- the latest end of the calls before (for the gaps the wall time leaves out)
               max(end_ts) OVER (PARTITION BY session_id ORDER BY seq ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_end,
               -- the session's first call anchors the finding
               first_value(tuple(span_id, parent_span_id, trace_id)) OVER (PARTITION BY session_id ORDER BY seq
                   ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS anchor,
               anyIf(model, model != '') OVER (PARTITION BY session_id) AS any_model
        FROM c
    ),
    -- the pauses before each call longer than the idle gap: from the calls before to its turn's
    -- LLM calls, between those (a chat: the answer, the person's reply, the next planning call),
    -- and from them to the call (without a turn: from the calls before to the call). The LLM
    -- calls ran: a long one is not a pause.
    paused AS (
        SELECT *,
               toUnixTimestamp64Nano(turn_start) > 0 AS has_turn,
               if(has_turn, toUnixTimestamp64Nano(turn_start), toUnixTimestamp64Nano(ts)) - toUnixTimestamp64Nano(prev_end) AS before_turn_ns,
               if(has_turn, toUnixTimestamp64Nano(ts) - greatest(toUnixTimestamp64Nano(prev_end), toUnixTimestamp64Nano(turn_end)), 0) AS after_turn_ns,
               arraySum(arrayFilter(d -> d > {budget_idle_gap_s:Float64} * 1e9,
                                    arrayMap(p -> p.2 - greatest(p.1, toUnixTimestamp64Nano(prev_end)), turn_pauses))) AS within_turn_ns,
               if(before_turn_ns > {budget_idle_gap_s:Float64} * 1e9, before_turn_ns, 0)
                 + if(after_turn_ns > {budget_idle_gap_s:Float64} * 1e9, after_turn_ns, 0) + within_turn_ns AS idle_ns
        FROM firsts
    ),
    cumulative AS (
        SELECT f.*, d.depth AS depth,
               sum(is_new) OVER (PARTITION BY session_id ORDER BY seq ROWS UNBOUNDED PRECEDING) AS grp,
               sum(tokens) OVER (PARTITION BY session_id ORDER BY seq ROWS UNBOUNDED PRECEDING) AS cum_tokens,
               sum(cost_usd) OVER (PARTITION BY session_id ORDER BY seq ROWS UNBOUNDED PRECEDING) AS cum_cost,
               sum(if(seq > 1 AND {budget_idle_gap_s:Float64} > 0, idle_ns, 0))
                   OVER (PARTITION BY session_id ORDER BY seq ROWS UNBOUNDED PRECEDING) AS cum_idle_ns,
               min(ts) OVER (PARTITION BY session_id) AS session_start
        FROM paused AS f LEFT JOIN depths AS d ON d.leaf = f.span_id
    ),
    flagged AS (
        SELECT *,
               (toUnixTimestamp64Nano(end_ts) - toUnixTimestamp64Nano(session_start) - cum_idle_ns) / 1e9 AS wall_s,
               NOT is_new AND countIf(NOT is_new) OVER (PARTITION BY session_id, grp) >= {runaway_no_progress_run:UInt32} AS no_progress,
               arrayFilter(x -> x != '', [
                   if(no_progress, 'no_progress', ''),
                   if({budget_max_calls:UInt32} > 0 AND seq > {budget_max_calls:UInt32}, 'calls', ''),
                   -- over the budget, not at it: sums of shares and prices are not exact (twenty
                   -- calls of 0.1 USD sum to 2.0000000000000004)
                   if({budget_max_tokens:Float64} > 0 AND cum_tokens > {budget_max_tokens:Float64} * (1 + 1e-9), 'tokens', ''),
                   if({budget_max_cost_usd:Float64} > 0 AND cum_cost > {budget_max_cost_usd:Float64} * (1 + 1e-9), 'cost', ''),
                   if({budget_max_wall_time_s:Float64} > 0 AND wall_s > {budget_max_wall_time_s:Float64}, 'wall_time', ''),
                   if({budget_max_tool_depth:UInt32} > 0 AND depth > {budget_max_tool_depth:UInt32}, 'depth', '')
               ]) AS reasons
        FROM cumulative
    )
SELECT
    w.session_id AS session_id,
    tupleElement(any(w.anchor), 3) AS trace_id,
    tupleElement(any(w.anchor), 2) AS parent_span_id,
    tupleElement(any(w.anchor), 1) AS first_span_id,
    argMax(w.span_id, w.seq) AS last_span_id,
    toString(min(w.ts)) AS first_ts,
    toString(max(w.end_ts)) AS last_ts,
    any(w.service) AS service,
    any(w.agent) AS agent,
    if(anyIf(w.model, w.model != '') != '', anyIf(w.model, w.model != ''), any(w.any_model)) AS model,
    arraySort(groupUniqArray(w.tool)) AS tools,
    toUInt32(count()) AS repeats,
    toUInt32(count()) AS wasted_calls,
    sum(w.tokens) AS wasted_tokens,
    sum(w.cost_usd) AS wasted_cost_usd,
    sum(w.time_ns) AS wasted_time_ns,
    'critical' AS severity,
    concat('Runaway session: ', arrayStringConcat(arraySort(groupUniqArrayArray(w.reasons)), ', '), ' (',
           toString(count()), ' calls wasted since ', toString(min(w.ts)),
           -- how much of each blown budget the session used (the LoopGuard's message says the same);
           -- an alias inside the expression, so not a column of the result
           if(empty((arrayStringConcat(arrayFilter(x -> x != '', [
               if(has(groupUniqArrayArray(w.reasons), 'calls'), concat(toString(max(w.seq)), ' calls of ', toString({budget_max_calls:UInt32})), ''),
               if(has(groupUniqArrayArray(w.reasons), 'cost'), concat('$', toString(round(max(w.cum_cost), 4)), ' of $', toString({budget_max_cost_usd:Float64})), ''),
               if(has(groupUniqArrayArray(w.reasons), 'depth'), concat('tool depth ', toString(max(w.depth)), ' of ', toString({budget_max_tool_depth:UInt32})), ''),
               if(has(groupUniqArrayArray(w.reasons), 'tokens'), concat(toString(round(max(w.cum_tokens))), ' tokens of ', toString({budget_max_tokens:Float64})), ''),
               if(has(groupUniqArrayArray(w.reasons), 'wall_time'),
                  concat(toString(round(max(w.wall_s))), ' s of ', toString({budget_max_wall_time_s:Float64}), ' s'), '')
           ]), ', ') AS used)), '', concat('; used ', used)), ').') AS message,
    toJSONString(map('reasons', arrayStringConcat(arraySort(groupUniqArrayArray(w.reasons)), ','),
                     'trigger_span_id', argMin(w.span_id, w.seq),
                     'max_tool_depth', toString(max(w.depth)),
                     'session_calls', toString(max(w.seq)),
                     'session_tokens', toString(round(max(w.cum_tokens))),
                     'session_cost_usd', toString(round(max(w.cum_cost), 6)))) AS details
FROM flagged AS w
WHERE length(w.reasons) > 0
GROUP BY w.session_id
