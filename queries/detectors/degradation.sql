-- degradation: a model-day significantly worse than the same model's trailing baseline (the
-- {degradation_baseline_days} UTC days before it, pooled; default 7). One finding per (model,
-- day), judged on a full pass for every day and then hourly for yesterday and today (see judged_from
-- below); it grows (new version) as the day goes on. Compared:
--   tool error rate  failed / tool calls requested by the model (the tool call's requesting LLM
--                    call: the session's latest LLM call started before it; read from the
--                    calls' kept features, agent_call_features, so calls the LoopGuard halted
--                    before they ran are not counted)
--   loop rate        sessions with a loop finding (other detectors, this pass's included) / sessions
--   LLM latency p50  median LLM call duration vs the mean of the baseline days' medians
-- A rate is worse when the day has enough data ({degradation_min_calls} calls, and
-- {degradation_min_sessions} sessions on each side for the loop rate), the baseline has
-- {degradation_min_baseline_days} days with data and {degradation_min_baseline_calls} calls, the
-- one-sided two-proportion z score is >= {degradation_min_z}, and the rate is both
-- {degradation_min_ratio} times and {degradation_min_increase} above the baseline's. Latency is
-- worse at {degradation_latency_ratio} times the baseline with {degradation_min_calls} LLM calls
-- on both sides. Defaults: DETECTOR_DEFAULTS (50, 20, 3, 100, 3, 1.5, 0.05, 2).
-- Identity: session_id 'model:<model>@<day>', agent and service empty, first_span_id a hash of (model, day); no trace, so
-- the loop span carries no trace id (alert rules key on loop.detector = 'degradation').
-- Wasted: the day's excess failed calls over the baseline rate.
-- Contract: see collector/src/detect/run-detectors.ts.
-- loopwatch: hourly
-- A pass that judged a model-day and did not report it withdraws its finding (the day got better):
-- loopwatch: judged {since:DateTime64(3)} < toDateTime64('1971-01-01 00:00:00', 3, 'UTC') OR (toStartOfHour({since:DateTime64(3)}, 'UTC') < toStartOfHour({until:DateTime64(3)}, 'UTC') AND toDateOrZero(arrayElement(splitByChar('@', session_id), -1)) >= toDate({until:DateTime64(3)}, 'UTC') - 1)
WITH
    -- Which days to judge: a full pass (since = epoch) every day with LLM calls; otherwise only
    -- when the pass window crosses an hour boundary (insertion time), yesterday and today. A
    -- model-day's figures need all its sessions and the baseline days before, so this detector is paid
    -- for once an hour, not on every incremental pass. The days judged are known from the
    -- parameters alone, so the calls are read once (judged days and their baselines together)
    -- and the model-days judged come from that aggregate: no separate read to find them.
    {since:DateTime64(3)} < toDateTime64('1971-01-01 00:00:00', 3, 'UTC') AS full_pass,
    toStartOfHour({since:DateTime64(3)}, 'UTC') < toStartOfHour({until:DateTime64(3)}, 'UTC') AS hour_crossed,
    -- UTC days, whatever the store's time zone
    if(full_pass, toDate('1971-01-01'), toDate({until:DateTime64(3)}, 'UTC') - 1) AS judged_from,
    toDate({until:DateTime64(3)}, 'UTC') + 1 AS judged_to,
    llm AS (
        SELECT session_id, ts, end_ts, duration_ns, model
        FROM agent_llm_calls FINAL
        WHERE (full_pass OR hour_crossed)
          AND ts >= toDateTime64(judged_from - {degradation_baseline_days:UInt32}, 3, 'UTC') AND ts < toDateTime64(judged_to, 3, 'UTC')
          AND model != ''
    ),
    -- tool calls with the model that requested them, as the detector passes keep them (the
    -- requesting LLM call's model is already joined there)
    tools AS (
        SELECT session_id, ts, end_ts, status, model
        FROM loopwatch_call_features
        WHERE (full_pass OR hour_crossed)
          AND ts >= toDateTime64(judged_from - {degradation_baseline_days:UInt32}, 3, 'UTC') AND ts < toDateTime64(judged_to, 3, 'UTC')
          AND model != ''
    ),
    -- sessions with a loop (redundant calls, info, are waste, not a loop), by 64-bit hash (two
    -- sessions colliding is negligible)
    looped AS (
        SELECT DISTINCT cityHash64(session_id) FROM agent_findings FINAL
        WHERE (full_pass OR hour_crossed) AND detector != 'degradation' AND severity != 'info'
    ),
    -- per model, day and session first: the loop test then runs once per session-day, not per call
    tool_sessions AS (
        SELECT model, toDate(ts, 'UTC') AS day, cityHash64(session_id) AS sh, count() AS n, countIf(status = 'error') AS e,
               max(end_ts) AS last_end
        FROM tools GROUP BY model, day, sh
    ),
    tool_daily AS (
        SELECT model, day, sum(n) AS n, sum(e) AS e, count() AS s, countIf(sh IN looped) AS ls, max(last_end) AS last_end
        FROM tool_sessions GROUP BY model, day
    ),
    llm_daily AS (
        SELECT model, toDate(ts, 'UTC') AS day, count() AS ln, quantileExact(0.5)(duration_ns) / 1e6 AS p50_ms, max(end_ts) AS llm_last_end
        FROM llm GROUP BY model, day
    ),
    -- every model-day with LLM calls or tool calls: a model used without tools (a chat) is judged
    -- on its latency (its tool and loop figures are 0: never worse)
    daily AS (
        SELECT model, day, n, e, s, ls, greatest(last_end, llm_last_end) AS last_end, ln, p50_ms
        FROM tool_daily FULL OUTER JOIN llm_daily USING (model, day)
    ),
    -- each model-day with its baseline, the days before it in a window frame: the daily figures
    -- computed once (a join of the days judged with the daily figures made the engine compute
    -- them twice: this detector over 1M calls took 287 against 206 ms)
    compared AS (
        SELECT model, day, n, e, s, ls, ln, p50_ms, last_end,
               count() OVER baseline AS base_days,
               sum(n) OVER baseline AS bn, sum(e) OVER baseline AS be,
               sum(s) OVER baseline AS bs, sum(ls) OVER baseline AS bls,
               sum(ln) OVER baseline AS bln, avgIf(p50_ms, ln > 0) OVER baseline AS bp50_ms
        FROM daily
        WINDOW baseline AS (PARTITION BY model ORDER BY day
                            RANGE BETWEEN {degradation_baseline_days:UInt32} PRECEDING AND 1 PRECEDING)
    ),
    scored AS (
        SELECT *,
               e / n AS rate, be / bn AS base_rate,
               (e / n - be / bn) / sqrt(greatest((e + be) / (n + bn) * (1 - (e + be) / (n + bn)) * (1 / n + 1 / bn), 1e-12)) AS z_err,
               ls / s AS loop_rate, bls / bs AS base_loop_rate,
               (ls / s - bls / bs) / sqrt(greatest((ls + bls) / (s + bs) * (1 - (ls + bls) / (s + bs)) * (1 / s + 1 / bs), 1e-12)) AS z_loop,
               base_days >= {degradation_min_baseline_days:UInt32} AND bn >= {degradation_min_baseline_calls:UInt32} AND n >= {degradation_min_calls:UInt32}
                   AND z_err >= {degradation_min_z:Float64} AND rate >= {degradation_min_ratio:Float64} * base_rate
                   AND rate >= base_rate + {degradation_min_increase:Float64} AS err_worse,
               base_days >= {degradation_min_baseline_days:UInt32} AND bs >= {degradation_min_sessions:UInt32} AND s >= {degradation_min_sessions:UInt32}
                   AND z_loop >= {degradation_min_z:Float64} AND loop_rate >= {degradation_min_ratio:Float64} * base_loop_rate
                   AND loop_rate >= base_loop_rate + {degradation_min_increase:Float64} AS loop_worse,
               base_days >= {degradation_min_baseline_days:UInt32} AND bln >= {degradation_min_calls:UInt32} AND ln >= {degradation_min_calls:UInt32}
                   AND bp50_ms > 0 AND p50_ms >= {degradation_latency_ratio:Float64} * bp50_ms AS latency_worse
        FROM compared
        -- the model-days judged: those with LLM calls (a day without has ln = 0)
        WHERE day >= judged_from AND ln > 0
    )
SELECT
    concat('model:', model, '@', toString(day)) AS session_id,
    '' AS trace_id,
    '' AS parent_span_id,
    lower(hex(substring(SHA256(concat('degradation|', model, '|', toString(day))), 1, 8))) AS first_span_id,
    lower(hex(substring(SHA256(concat('degradation|', model, '|', toString(day))), 1, 8))) AS last_span_id,
    -- the UTC day's start, written in the store's zone as every detector's times are
    toString(toTimeZone(toDateTime64(day, 9, 'UTC'), timezone())) AS first_ts,
    toString(last_end) AS last_ts,
    -- a model's day, whatever agents and services ran it: none named (one of them would be arbitrary)
    '' AS service,
    '' AS agent,
    model,
    arrayFilter(x -> x != '', [if(err_worse, 'tool_error_rate', ''), if(loop_worse, 'loop_rate', ''), if(latency_worse, 'latency_p50', '')]) AS tools,
    toUInt32(err_worse + loop_worse + latency_worse) AS repeats,
    toUInt32(if(n > 0 AND bn > 0, greatest(e - round(n * base_rate), 0), 0)) AS wasted_calls,
    0 AS wasted_tokens,
    0. AS wasted_cost_usd,
    0 AS wasted_time_ns,
    if(err_worse + loop_worse + latency_worse >= 2 OR (err_worse AND rate >= 3 * base_rate), 'critical', 'warning') AS severity,
    concat(model, ' on ', toString(day), ' is worse than its previous ', toString({degradation_baseline_days:UInt32}), ' days:',
           if(err_worse, concat(' tool error rate ', toString(round(100 * rate, 1)), '% vs ', toString(round(100 * base_rate, 1)), '% (z=', toString(round(z_err, 1)), ');'), ''),
           if(loop_worse, concat(' loop rate ', toString(round(100 * loop_rate, 1)), '% vs ', toString(round(100 * base_loop_rate, 1)), '% (z=', toString(round(z_loop, 1)), ');'), ''),
           if(latency_worse, concat(' LLM latency p50 ', toString(round(p50_ms)), ' ms vs ', toString(round(bp50_ms)), ' ms;'), '')) AS message,
    toJSONString(map(
        'day', toString(day), 'calls', toString(n), 'errors', toString(e), 'error_rate', toString(rate), 'baseline_error_rate', toString(base_rate),
        'z_error', toString(z_err), 'sessions', toString(s), 'loop_rate', toString(loop_rate), 'baseline_loop_rate', toString(base_loop_rate),
        'z_loop', toString(z_loop), 'latency_p50_ms', toString(p50_ms), 'baseline_latency_p50_ms', toString(bp50_ms), 'baseline_days', toString(base_days))) AS details
FROM scored
WHERE err_worse OR loop_worse OR latency_worse
