-- session-scorecard: one row per session active in [from, to) (any tool or LLM call started in
-- the range; the whole history of those sessions is scored), optionally one agent, service or
-- session. A session of LLM calls only (a chat, an agent that answered without tools) has no
-- tool figures; it ended cleanly when its last LLM call succeeded.
-- Parameters: {from:DateTime64(3)}, {to:DateTime64(3)}, {agent:String}, {service:String},
-- {session_id:String} ('' = any), {limit:UInt32}, {newest_first:UInt8} (1: the {limit} sessions
-- whose latest call in the range is latest, most recently active first: a session running for
-- days is at the top while it runs, not under those that started after it; 0: the {limit} whose
-- first call in the range is earliest, oldest first). Run with
-- queries/src/reports.ts runReport().
--   calls            tool calls (halted ones too)
--   errors           failed tool calls, not those the LoopGuard halted (no tool failed: the agent asked to continue a loop)
--   halted           calls the in-process LoopGuard halted before they ran (error_type LoopDetectedError): the
--                    model asked for a call that would continue a loop. The SQL detectors leave them out
--                    (they are in no finding's waste): a session that keeps asking after a halt shows here
--   retries          calls that repeat the session's previous call (same tool and arguments) after it failed
--   loops_entered    loop findings of the session (agent_findings, any detector but degradation; redundant calls
--                    are waste, not a loop: info findings apart, as the loop alert has it)
--   failed_tools     tools that failed at least once; recovered_tools: of those, the ones that later succeeded
--   recovered        1 when some failure was followed later by a success of the same tool
--   ended_cleanly    the last tool call succeeded, and the agent's last LLM call if it ended after it (not one
--                    made inside a tool call), and no loop was still open at the end (a finding reaching the
--                    last tool call)
--   files / commands distinct path-like arguments of read/write/edit tools (path, file_path, file, filename,
--                    target_file, or lists in paths / files; read from the text when the arguments were cut at
--                    the length limit and are no longer JSON), distinct commands of shell tools (command or
--                    cmd; a list such as ["bash", "-lc", "npm test"] joined with spaces) (from captured
--                    arguments: gen_ai.tool.call.arguments and equivalents)
--   tokens, cost_usd LLM calls of the session; cost = reported cost when > 0, else tokens x model_prices
--   wall_time_s      first call start to last call end (tool and LLM calls)
--   waste_ratio      wasted calls / calls; wasted calls: see the findings CTEs (overlapping detectors counted
--                    once, separate loops added up, a finding added never lowers it), at most calls
WITH
    scope AS (
        SELECT session_id, min(ts) AS first_active, max(ts) AS last_active
        FROM (
            SELECT session_id, ts, agent, service, 1 AS is_tool FROM agent_tool_calls
            WHERE ts >= {from:DateTime64(3)} AND ts < {to:DateTime64(3)}
            UNION ALL
            SELECT session_id, ts, agent, service, 0 AS is_tool FROM agent_llm_calls
            WHERE ts >= {from:DateTime64(3)} AND ts < {to:DateTime64(3)}
        )
        WHERE {session_id:String} = '' OR session_id = {session_id:String}
        GROUP BY session_id
        -- the agent and service shown are the tool calls' when there are any: filtered the same way
        HAVING ({agent:String} = '' OR countIf(agent = {agent:String} AND is_tool = 1) > 0
                OR (countIf(is_tool = 1) = 0 AND countIf(agent = {agent:String}) > 0))
           AND ({service:String} = '' OR countIf(service = {service:String} AND is_tool = 1) > 0
                OR (countIf(is_tool = 1) = 0 AND countIf(service = {service:String}) > 0))
        -- only the sessions to show are scored, either way (a week may hold 100,000s: scoring a
        -- month's 1.85M sessions before the limit took 116 s and 10 GB)
        ORDER BY if({newest_first:UInt8} = 1, -toUnixTimestamp64Nano(last_active), toUnixTimestamp64Nano(first_active)), session_id
        LIMIT {limit:UInt32}
    ),
    calls AS (
        SELECT session_id, ts, end_ts, span_id, tool, args_hash, status, error_type = 'LoopDetectedError' AS is_halted, arguments, agent, service,
               row_number() OVER (PARTITION BY session_id ORDER BY ts, span_id) AS seq
        FROM agent_tool_calls FINAL
        WHERE session_id IN (SELECT session_id FROM scope)
    ),
    marked AS (
        SELECT *,
               -- a halted call neither failed nor ran: it is no retry, nor a failure to retry
               lagInFrame(tool, 1, '') OVER w = tool AND lagInFrame(args_hash, 1, 0) OVER w = args_hash
                   AND lagInFrame(status, 1, '') OVER w = 'error' AND lagInFrame(toUInt8(is_halted), 1, 1) OVER w = 0 AND NOT is_halted AS is_retry,
               if(match(tool, '(?i)(read|write|edit|create|delete|patch|open|view|file)'),
                  arrayFilter(x -> x != '', if(isValidJSON(arguments),
                      arrayConcat([coalesce(nullIf(JSONExtractString(arguments, 'path'), ''), nullIf(JSONExtractString(arguments, 'file_path'), ''),
                                            nullIf(JSONExtractString(arguments, 'file'), ''), nullIf(JSONExtractString(arguments, 'filename'), ''),
                                            nullIf(JSONExtractString(arguments, 'target_file'), ''), '')],
                                  JSONExtract(arguments, 'paths', 'Array(String)'), JSONExtract(arguments, 'files', 'Array(String)')),
                      -- cut at the length limit (a large write's content): the first path-like member, from the text
                      [extract(arguments, '"(?:path|file_path|file|filename|target_file)"\\s*:\\s*"((?:[^"\\\\]|\\\\.)*)"')])),
                  []) AS files_of_call,
               multiIf(match(tool, '(?i)(shell|bash|terminal|exec|cmd|command|run_tests?)'),
                       coalesce(nullIf(arrayStringConcat(JSONExtract(arguments, 'command', 'Array(String)'), ' '), ''),
                                nullIf(JSONExtractString(arguments, 'command'), ''), nullIf(JSONExtractString(arguments, 'cmd'), ''), ''),
                       '') AS command
        FROM calls
        WINDOW w AS (PARTITION BY session_id ORDER BY seq ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)
    ),
    per_session AS (
        SELECT session_id,
               any(agent) AS agent,
               any(service) AS service,
               count() AS calls,
               countIf(status = 'error' AND NOT is_halted) AS errors,
               countIf(is_halted) AS halted,
               countIf(is_retry) AS retries,
               argMax(status, seq) AS last_status,
               max(ts) AS last_call_ts,
               min(ts) AS first_tool_ts,
               max(end_ts) AS last_tool_end,
               arraySort(groupUniqArrayArray(files_of_call)) AS files,
               arraySort(groupUniqArrayIf(command, command != '')) AS commands
        FROM marked
        GROUP BY session_id
    ),
    recovery AS (
        SELECT session_id, countIf(first_error > 0) AS failed_tools, countIf(first_error > 0 AND last_ok > first_error) AS recovered_tools
        FROM (
            SELECT session_id, tool, minIf(seq, status = 'error' AND NOT is_halted) AS first_error, maxIf(seq, status = 'ok') AS last_ok
            FROM calls GROUP BY session_id, tool
        )
        GROUP BY session_id
    ),
    -- loops: findings of any detector but degradation, redundant calls apart (info: waste, not a
    -- loop), as the loop alert counts them. Wasted calls: detectors overlap (a stuck run is also a
    -- repeat and redundant calls; a runaway's calls may hold a retry storm). The run detectors
    -- (repeat, stuck, oscillation, retry_storm: a contiguous run of calls each) form clusters of
    -- findings that overlap in time, each counted by its largest detector, separate clusters
    -- added up; any other detector (redundant calls, error_loop, runaway: calls spread over the
    -- session) counts whole, with the clusters outside its span of time. The session's waste is
    -- the largest of these choices, so a finding added never lowers it (grafana/build-dashboards.ts
    -- chosenFindings is the same).
    lf AS (
        SELECT *, if(is_run, sum(starts) OVER (PARTITION BY session_id, is_run ORDER BY first_ts, last_ts, finding_id ROWS UNBOUNDED PRECEDING), 0) AS cluster
        FROM (
            SELECT *, first_ts >= max(last_ts) OVER (PARTITION BY session_id, is_run ORDER BY first_ts, last_ts, finding_id
                                                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS starts
            FROM (
                SELECT finding_id, session_id, detector, severity, first_ts, last_ts, wasted_calls,
                       detector IN ('repeat', 'stuck', 'oscillation', 'retry_storm') AS is_run
                FROM agent_findings FINAL
                WHERE session_id IN (SELECT session_id FROM scope) AND detector != 'degradation'
            )
        )
    ),
    runs AS (
        SELECT session_id, cluster, min(d_first) AS c_first, max(d_last) AS c_last, max(d_calls) AS c_calls
        FROM (SELECT session_id, cluster, detector, min(first_ts) AS d_first, max(last_ts) AS d_last, sum(wasted_calls) AS d_calls
              FROM lf WHERE cluster > 0 GROUP BY session_id, cluster, detector)
        GROUP BY session_id, cluster
    ),
    wide AS (
        SELECT session_id, detector, min(first_ts) AS w_first, max(last_ts) AS w_last, sum(wasted_calls) AS w_calls
        FROM lf WHERE cluster = 0 GROUP BY session_id, detector
    ),
    waste AS (
        SELECT session_id, max(calls) AS wasted_calls
        FROM (
            SELECT session_id, sum(c_calls) AS calls FROM runs GROUP BY session_id
            UNION ALL
            SELECT w.session_id AS session_id, any(w.w_calls) + sumIf(r.c_calls, NOT (r.c_first < w.w_last AND r.c_last > w.w_first)) AS calls
            FROM wide AS w LEFT JOIN runs AS r ON r.session_id = w.session_id
            GROUP BY w.session_id, w.detector
        )
        GROUP BY session_id
    ),
    findings AS (
        SELECT f.session_id AS session_id, f.loops AS loops, f.last_finding_end AS last_finding_end, f.detectors AS detectors,
               w.wasted_calls AS wasted_calls
        FROM (
            SELECT session_id, countIf(severity != 'info') AS loops, maxIf(last_ts, severity != 'info') AS last_finding_end,
                   arraySort(groupUniqArray(detector)) AS detectors
            FROM lf
            GROUP BY session_id
        ) AS f
        LEFT JOIN waste AS w ON w.session_id = f.session_id
    ),
    llm AS (
        SELECT session_id, model, duration_ns, ts, end_ts, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, total_tokens,
               reported_cost_usd, loopwatch_model_key(model) AS model_key, agent, service, status,
               -- made inside a tool call (a summarizer the tool runs): not the agent's own turn
               (session_id, parent_span_id) IN (SELECT session_id, span_id FROM calls) AS inside
        FROM agent_llm_calls FINAL
        WHERE session_id IN (SELECT session_id FROM scope)
    ),
    llm_session AS (
        SELECT l.session_id AS session_id,
               count() AS llm_calls,
               sum(l.total_tokens) AS tokens,
               sum(loopwatch_llm_cost(l.reported_cost_usd, l.input_tokens, l.cache_read_tokens, l.cache_creation_tokens, l.output_tokens, pr.price)) AS cost_usd,
               topKWeighted(1)(l.model, l.total_tokens)[1] AS model,
               min(l.ts) AS first_llm_ts,
               max(l.end_ts) AS last_llm_end,
               -- the agent's own LLM calls (not those made inside a tool call): the last to end
               countIf(NOT l.inside) AS own_llm_calls,
               maxIf(l.end_ts, NOT l.inside) AS last_own_llm_end,
               argMaxIf(l.status, l.end_ts, NOT l.inside) AS last_own_status,
               any(l.agent) AS agent,
               any(l.service) AS service
        FROM llm AS l LEFT JOIN loopwatch_model_key_prices AS pr ON l.model_key = pr.model_key
        GROUP BY l.session_id
    )
SELECT
    sc.session_id AS session_id,
    if(s.calls > 0, s.agent, l.agent) AS agent,
    if(s.calls > 0, s.service, l.service) AS service,
    l.model AS model,
    -- ISO-8601 in UTC, as every time of the read API (toString alone is in the server's zone); the
    -- session's start named inside the expression (not a column) for the wall time and the order
    concat(replaceOne(toString((multiIf(s.calls = 0, l.first_llm_ts, l.llm_calls > 0, least(s.first_tool_ts, l.first_llm_ts), s.first_tool_ts) AS start_ts), 'UTC'), ' ', 'T'), 'Z') AS started_at,
    s.calls AS calls,
    l.llm_calls AS llm_calls,
    s.errors AS errors,
    s.halted AS halted,
    s.retries AS retries,
    f.loops AS loops_entered,
    f.detectors AS loop_kinds,
    r.failed_tools AS failed_tools,
    r.recovered_tools AS recovered_tools,
    toUInt8(r.recovered_tools > 0) AS recovered,
    -- the last tool call succeeded, and so did the agent's last LLM call if it ended after the last
    -- tool call (a final answer that failed, also a streamed one that ran the last tool call, is
    -- not a clean end; nor is one given after the last tool call failed)
    toUInt8((s.calls = 0 OR toString(s.last_status) = 'ok')
            AND (l.own_llm_calls = 0 OR (s.calls > 0 AND s.last_tool_end >= l.last_own_llm_end) OR toString(l.last_own_status) = 'ok')
            AND NOT (f.loops > 0 AND f.last_finding_end >= if(s.calls > 0, s.last_call_ts, l.last_llm_end))) AS ended_cleanly,
    length(s.files) AS files_touched,
    length(s.commands) AS commands_run,
    arraySlice(s.files, 1, 50) AS files,
    arraySlice(s.commands, 1, 50) AS commands,
    l.tokens AS tokens,
    round(l.cost_usd, 6) AS cost_usd,
    round((toUnixTimestamp64Nano(greatest(s.last_tool_end, l.last_llm_end)) - toUnixTimestamp64Nano(start_ts)) / 1e9, 3) AS wall_time_s,
    least(f.wasted_calls, s.calls) AS wasted_calls,
    if(s.calls = 0, 0, round(least(f.wasted_calls, s.calls) / s.calls, 4)) AS waste_ratio
FROM scope AS sc
LEFT JOIN per_session AS s ON s.session_id = sc.session_id
LEFT JOIN recovery AS r ON r.session_id = sc.session_id
LEFT JOIN findings AS f ON f.session_id = sc.session_id
LEFT JOIN llm_session AS l ON l.session_id = sc.session_id
ORDER BY if({newest_first:UInt8} = 1, -toUnixTimestamp64Nano(sc.last_active), toUnixTimestamp64Nano(sc.first_active)), sc.session_id
LIMIT {limit:UInt32}
