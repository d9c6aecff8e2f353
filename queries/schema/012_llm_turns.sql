-- The per-call features (queries/features/detector-calls.sql) charge a tool call with its whole
-- turn: every LLM call since the tool call before it (planning, reflection), not only the latest
-- one, which left an agent that plans at length before each step far under its token and cost
-- budgets. The kept features hold the old shares: dropped, the next pass recomputes them (see 005).
-- When the turn's LLM calls ran (turn_start, turn_end): the runaway wall time leaves out pauses
-- between calls, and a long LLM call (a reasoning model's 12 minutes) is not a pause.
ALTER TABLE agent_call_features ADD COLUMN IF NOT EXISTS turn_start DateTime64(9) AFTER occurrence, ADD COLUMN IF NOT EXISTS turn_end DateTime64(9) AFTER turn_start;

CREATE OR REPLACE VIEW loopwatch_call_features AS
SELECT * EXCEPT (version) FROM agent_call_features FINAL;

TRUNCATE TABLE IF EXISTS agent_call_features;

DELETE FROM loopwatch_detector_state WHERE detector = '_features';
