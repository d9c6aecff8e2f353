-- Cache writes have a price of their own: Anthropic bills a prompt-cache write at 1.25x the input
-- price (its 5-minute cache), and they were priced as ordinary input, so an agent that writes
-- its cache on every turn cost a fifth less than its bill. model_prices gets a cache-write price
-- (0 = the input price), the price tuple a fourth element, and loopwatch_llm_cost the call's
-- cache-write tokens (agent_llm_calls.cache_creation_tokens). instrumentation/src/cost.ts
-- costUsd() is the same formula.
ALTER TABLE model_prices ADD COLUMN IF NOT EXISTS cache_write_per_mtok Float64 DEFAULT 0;

CREATE OR REPLACE VIEW loopwatch_model_key_prices AS
SELECT k.model_key AS model_key,
       argMax(tuple(p.input_per_mtok, p.output_per_mtok, p.cached_input_per_mtok, p.cache_write_per_mtok), tuple(p.match = 'exact', length(p.model))) AS price
FROM (SELECT DISTINCT model_key FROM loopwatch_model_keys) AS k
CROSS JOIN (SELECT * FROM model_prices FINAL) AS p
WHERE (p.match = 'exact' AND k.model_key = p.model) OR (p.match = 'prefix' AND startsWith(k.model_key, p.model))
GROUP BY k.model_key;

-- An LLM call's cost in USD: the reported cost when > 0, else its tokens at the price: input
-- other than cache reads and writes at the input price, cache reads at the cached price and
-- cache writes at the cache-write price (each the input price when it has none), output at the
-- output price. A model without a price gets the default tuple (0, 0, 0, 0): no cost.
CREATE OR REPLACE FUNCTION loopwatch_llm_cost AS (reported, input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, price) ->
    if(reported > 0, reported,
       (greatest(toInt64(input_tokens) - toInt64(cache_read_tokens) - toInt64(cache_write_tokens), 0) * tupleElement(price, 1)
        + cache_read_tokens * if(tupleElement(price, 3) > 0, tupleElement(price, 3), tupleElement(price, 1))
        + cache_write_tokens * if(tupleElement(price, 4) > 0, tupleElement(price, 4), tupleElement(price, 1))
        + output_tokens * tupleElement(price, 2)) / 1e6);

-- Kept features hold the LLM shares priced without cache writes: dropped, the next pass
-- recomputes them (as in 011).
TRUNCATE TABLE IF EXISTS agent_call_features;

DELETE FROM loopwatch_detector_state WHERE detector = '_features';
