-- Error identity keeps small numbers. loopwatch_error_norm (004) replaced every number by '#',
-- so "5 tests failed" and "1 tests failed", or status codes 401 and 404, were one error and an
-- agent that was getting somewhere was reported as an error loop. Now only what varies between
-- occurrences of one error becomes '#': UUIDs and hex ids of 8+ digits, positions (line 12, col
-- 5: an edit moves them), durations (30s, 12ms), numbers joined by . : / - (addresses, times,
-- dates, versions, file.ts:12:5) and numbers of 4+ digits (ids, ports, timestamps). queries/src/detector-defaults.ts normalizeErrorMessage is the same function
-- (the in-process guard's).
-- The per-call features (queries/features/detector-calls.sql) also charge a tool call to the
-- latest LLM call that *started* before it (a streamed LLM call ends after the tool calls it
-- requested, which were charged to the turn before), and charge an LLM call made inside a tool
-- call to that tool call (the summarizer a tool runs did not request the next tool call).
-- The kept per-call features hold error keys and LLM shares of the old rules: they are dropped,
-- and the next detector pass recomputes them (see 005).
CREATE OR REPLACE FUNCTION loopwatch_error_norm AS (msg) ->
    leftUTF8(trimBoth(replaceRegexpAll(replaceRegexpAll(lowerUTF8(msg), '[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}|[0-9a-f]{8,}|\\b(?:line|col|column|row|offset|position|pos) ?[0-9]+|[0-9]+(?:\\.[0-9]+)?(?:ms|us|ns|s|m|h)\\b|[0-9]+(?:[.:/-][0-9]+)+|[0-9]{4,}', '#'), '[ \t\r\n]+', ' ')), 200);

TRUNCATE TABLE IF EXISTS agent_call_features;

DELETE FROM loopwatch_detector_state WHERE detector = '_features';
