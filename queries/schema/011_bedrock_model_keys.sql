-- Bedrock's cross-region inference profiles prefix the model id with a geography of more than
-- two letters too (global., apac., us-gov.): loopwatch_model_key (004) dropped only `xx.`, so
-- global.anthropic.claude-sonnet-4-5-… had no price and its calls cost $0, in the detectors'
-- waste and budgets as in the reports. instrumentation/src/cost.ts modelKey is the same rule.
CREATE OR REPLACE FUNCTION loopwatch_model_key AS (m) ->
    replaceRegexpOne(lowerUTF8(arrayElement(splitByChar('/', m), -1)), '^([a-z][a-z-]*\\.)?anthropic\\.', '');

-- The keys of the models stored before: the price lookup lists the keys it knows.
INSERT INTO loopwatch_model_keys SELECT DISTINCT loopwatch_model_key(model) FROM agent_llm_calls WHERE model != '';

-- Kept features hold the LLM shares priced by the old keys: dropped, the next pass recomputes them (see 005).
TRUNCATE TABLE IF EXISTS agent_call_features;

DELETE FROM loopwatch_detector_state WHERE detector = '_features';
