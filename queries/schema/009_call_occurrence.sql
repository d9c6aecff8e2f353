-- The kept features get `occurrence` (queries/features/detector-calls.sql): for a call with a
-- non-empty result, how many calls of its session so far made the same call and got the same
-- result. The redundant detector reads it instead of counting every (session, call, result) of
-- a pass: over 1M calls 79 against 257 ms, it was the largest loop detector of a full pass.
-- The column goes before `version`: a pass writes the features SELECT's columns in order,
-- followed by the version. The features of earlier passes lack it, so they are dropped and the
-- next pass recomputes every session once (as 008 did).
ALTER TABLE agent_call_features ADD COLUMN IF NOT EXISTS occurrence UInt32 AFTER time_ns;

-- the view's columns are fixed when it is made: made again with the new one
CREATE OR REPLACE VIEW loopwatch_call_features AS
SELECT * EXCEPT (version) FROM agent_call_features FINAL;

TRUNCATE TABLE IF EXISTS agent_call_features;

DELETE FROM loopwatch_detector_state WHERE detector = '_features';
