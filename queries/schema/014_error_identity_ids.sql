-- Error identity ignores more of what varies between occurrences of one error (a review found
-- an agent retrying a failing call forever unflagged, by SQL and by the guard, because each
-- message carried another id): ids (a word of letters, digits and underscores that goes from
-- letters to digits or back three times or more: base62 request ids such as req_8KzQ3vHtPlMn0,
-- Python's temporary directories such as tmpk3j9_xq2; names such as HTTP_401_UNAUTHORIZED or
-- ERR_HTTP2_STREAM_CANCEL stay), durations written with a space or in words (734 ms,
-- 5 minutes), and process ids (pid 812). queries/src/detector-defaults.ts
-- normalizeErrorMessage is the same function (the in-process guard's).
-- The kept per-call features hold error keys of the old rule: they are dropped, and the next
-- detector pass recomputes them (see 005).
CREATE OR REPLACE FUNCTION loopwatch_error_norm AS (msg) ->
    leftUTF8(trimBoth(replaceRegexpAll(replaceRegexpAll(lowerUTF8(msg), '[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}|\\b(?:[a-z_]+[0-9]+[a-z_]+[0-9]+|[0-9]+[a-z_]+[0-9]+[a-z_]+)[a-z0-9_]*\\b|[0-9a-f]{8,}|\\b(?:line|col|column|row|offset|position|pos|pid)[ =:]?[0-9]+|[0-9]+(?:\\.[0-9]+)? ?(?:ms|us|ns|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)\\b|[0-9]+(?:[.:/-][0-9]+)+|[0-9]{4,}', '#'), '[ \t\r\n]+', ' ')), 200);

TRUNCATE TABLE IF EXISTS agent_call_features;

DELETE FROM loopwatch_detector_state WHERE detector = '_features';
