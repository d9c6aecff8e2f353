-- The deduplicated tool calls of the sessions with calls inserted in the window (since, until]
-- (and, when a pass is split in buckets, those with cityHash64(session_id) % buckets = bucket):
-- each session's whole history. The detector runner (collector/src/detect/run-detectors.ts)
-- materializes it first, as a table of its own, and queries/features/detector-calls.sql reads
-- that table: the features SELECT uses the calls four times (the keys, the nesting lookup's
-- traces and start, the LLM attribution), and the engine would repeat the FINAL read and the
-- session lookup for each (an incremental pass's copy measured 96 against 122 ms in one step).
WITH
    scope AS (
        SELECT DISTINCT session_id FROM agent_call_activity
        WHERE inserted_at > {since:DateTime64(3)} AND inserted_at <= {until:DateTime64(3)}
          AND cityHash64(session_id) % {buckets:UInt32} = {bucket:UInt32}
    )
SELECT session_id, ts, end_ts, duration_ns, trace_id, span_id, parent_span_id, service, agent, model, tool,
       args_hash, result_hash, has_result, status, error_type, error_message
FROM agent_tool_calls FINAL
WHERE session_id IN (SELECT session_id FROM scope)
  -- a call the in-process LoopGuard stopped before it ran is not part of the loop
  AND error_type != 'LoopDetectedError'
