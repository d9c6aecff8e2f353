-- The per-call features (queries/features/detector-calls.sql) charge a tool call with its whole
-- turn: every LLM call since the tool call before it (planning, reflection), not only the latest
-- one, which left an agent that plans at length before each step far under its token and cost
-- budgets. The kept features hold the old shares: dropped, the next pass recomputes them (see 005).
TRUNCATE TABLE IF EXISTS agent_call_features;

DELETE FROM loopwatch_detector_state WHERE detector = '_features';
