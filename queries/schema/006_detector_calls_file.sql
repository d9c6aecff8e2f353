-- The per-call features SELECT moved from the parameterized view loopwatch_detector_calls (005)
-- to queries/features/detector-calls.sql, which the detector runner executes directly: behind the
-- view the same SQL cost 40-60 ms more per pass in the engine's planning. A store migrated
-- before this version still has the view; nothing reads it any more.
DROP VIEW IF EXISTS loopwatch_detector_calls;
