-- One definition of an LLM call's cost for the detector pass, the reports and the dashboards:
-- which list price applies to a model id (loopwatch_model_key_prices: an exact match wins,
-- then the longest prefix) and what the call cost (loopwatch_llm_cost). Each of them used to
-- carry its own copy of both.
--
-- The price lookup needs the model ids to look up. Reading them from agent_llm_calls would scan
-- its model column on every query, so the distinct keys are kept as they arrive (a few rows:
-- one per model id ever seen).
CREATE TABLE IF NOT EXISTS loopwatch_model_keys
(
    model_key String
)
ENGINE = ReplacingMergeTree
ORDER BY model_key;

CREATE MATERIALIZED VIEW IF NOT EXISTS loopwatch_model_keys_mv TO loopwatch_model_keys AS
SELECT DISTINCT loopwatch_model_key(model) AS model_key FROM agent_llm_calls WHERE model != '';

-- Models stored before this migration.
INSERT INTO loopwatch_model_keys SELECT DISTINCT loopwatch_model_key(model) FROM agent_llm_calls WHERE model != '';

-- Per model key with a price: (input, output, cached input) USD per million tokens. Join it on
-- loopwatch_model_key(model); a model without a price gets the default tuple (0, 0, 0).
CREATE VIEW IF NOT EXISTS loopwatch_model_key_prices AS
SELECT k.model_key AS model_key,
       argMax(tuple(p.input_per_mtok, p.output_per_mtok, p.cached_input_per_mtok), tuple(p.match = 'exact', length(p.model))) AS price
FROM (SELECT DISTINCT model_key FROM loopwatch_model_keys) AS k
CROSS JOIN (SELECT * FROM model_prices FINAL) AS p
WHERE (p.match = 'exact' AND k.model_key = p.model) OR (p.match = 'prefix' AND startsWith(k.model_key, p.model))
GROUP BY k.model_key;

-- An LLM call's cost in USD: the reported cost when > 0, else its tokens at the price: input
-- other than cache reads at the input price, cache reads at the cached price (the input price
-- when there is none), output at the output price. instrumentation/src/cost.ts costUsd() is the
-- same formula.
CREATE FUNCTION IF NOT EXISTS loopwatch_llm_cost AS (reported, input_tokens, cache_read_tokens, output_tokens, price) ->
    if(reported > 0, reported,
       (greatest(toInt64(input_tokens) - toInt64(cache_read_tokens), 0) * tupleElement(price, 1)
        + cache_read_tokens * if(tupleElement(price, 3) > 0, tupleElement(price, 3), tupleElement(price, 1))
        + output_tokens * tupleElement(price, 2)) / 1e6);
