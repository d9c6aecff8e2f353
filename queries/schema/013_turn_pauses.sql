-- The kept features get `turn_pauses` (queries/features/detector-calls.sql): the pauses between
-- the LLM calls of a call's turn. A turn is every LLM call since the tool call before, so in a
-- chat the answer, the person's reply 20 minutes later and the next planning call were one turn,
-- and the runaway wall time counted the reply's 20 minutes as running: any chat blew the budget.
-- The turn shares also change: a call another tool call of its session made gets none. The
-- kept features hold the old values: dropped, the next pass recomputes them (see 005).
-- turn_start and turn_end first: 012 gained them after its first version, and a store that
-- applied that version lacked the column this one goes after (the upgrade failed on every start).
ALTER TABLE agent_call_features ADD COLUMN IF NOT EXISTS turn_start DateTime64(9) AFTER occurrence, ADD COLUMN IF NOT EXISTS turn_end DateTime64(9) AFTER turn_start;
ALTER TABLE agent_call_features ADD COLUMN IF NOT EXISTS turn_pauses Array(Tuple(Int64, Int64)) AFTER turn_end;

CREATE OR REPLACE VIEW loopwatch_call_features AS
SELECT * EXCEPT (version) FROM agent_call_features FINAL;

TRUNCATE TABLE IF EXISTS agent_call_features;

DELETE FROM loopwatch_detector_state WHERE detector = '_features';
