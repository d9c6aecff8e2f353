-- Prices the operator sets win, and Claude ids written with dots find their price.
--
-- A span's reported cost was final whatever the price table said, and Loopwatch's own
-- instrumentation reports one for every call of a priced model (loopwatch.cost_usd, from the
-- agent's table): an operator's LOOPWATCH_MODEL_PRICES on the collector (a negotiated or Azure
-- price) changed nothing for instrumented agents, while spans without a cost got it, so one call
-- cost two prices under one collector. model_prices now marks the operator's entries
-- (collector/src/detect/prices.ts), the price tuple carries the mark as a fifth element, and
-- loopwatch_llm_cost prices a call of such a model at its tokens, not at the reported cost.
-- instrumentation/src/cost.ts callCost() is the same rule.
ALTER TABLE model_prices ADD COLUMN IF NOT EXISTS overridden UInt8 DEFAULT 0;

CREATE OR REPLACE VIEW loopwatch_model_key_prices AS
SELECT k.model_key AS model_key,
       argMax(tuple(p.input_per_mtok, p.output_per_mtok, p.cached_input_per_mtok, p.cache_write_per_mtok, p.overridden),
              tuple(p.match = 'exact', length(p.model))) AS price
FROM (SELECT DISTINCT model_key FROM loopwatch_model_keys) AS k
CROSS JOIN (SELECT * FROM model_prices FINAL) AS p
WHERE (p.match = 'exact' AND k.model_key = p.model) OR (p.match = 'prefix' AND startsWith(k.model_key, p.model))
GROUP BY k.model_key;

-- An LLM call's cost in USD: the reported cost when > 0 and the operator set no price for the
-- model, else its tokens at the price (as 016: input other than cache reads and writes at the
-- input price, cache reads at the cached price, cache writes at the cache-write price, each the
-- input price when it has none, output at the output price). A model without a price gets the
-- default tuple (0, 0, 0, 0, 0): the reported cost, else none.
CREATE OR REPLACE FUNCTION loopwatch_llm_cost AS (reported, input_tokens, cache_read_tokens, cache_write_tokens, output_tokens, price) ->
    if(reported > 0 AND tupleElement(price, 5) = 0, reported,
       (greatest(toInt64(input_tokens) - toInt64(cache_read_tokens) - toInt64(cache_write_tokens), 0) * tupleElement(price, 1)
        + cache_read_tokens * if(tupleElement(price, 3) > 0, tupleElement(price, 3), tupleElement(price, 1))
        + cache_write_tokens * if(tupleElement(price, 4) > 0, tupleElement(price, 4), tupleElement(price, 1))
        + output_tokens * tupleElement(price, 2)) / 1e6);

-- Claude ids written with dots (OpenRouter's anthropic/claude-opus-4.5, claude-3.5-sonnet) are
-- Anthropic's dashed ids (claude-opus-4-5, claude-3-5-sonnet): claude-opus-4.5 was priced as the
-- claude-opus-4 prefix (3x its price) and claude-3.5-sonnet not at all. Only Claude ids: others
-- keep their dots (gpt-4.1, gemini-2.5-pro), where dashes would meet other models' prefixes
-- (gpt-4-1106-preview). instrumentation/src/cost.ts modelKey is the same rule.
CREATE OR REPLACE FUNCTION loopwatch_claude_dashes AS (k) ->
    if(startsWith(k, 'claude-'), replaceRegexpAll(k, '([0-9])\\.([0-9])', '\\1-\\2'), k);

CREATE OR REPLACE FUNCTION loopwatch_model_key AS (m) ->
    loopwatch_claude_dashes(replaceRegexpOne(lowerUTF8(arrayElement(splitByChar('/', m), -1)), '^([a-z][a-z-]*\\.)?anthropic\\.', ''));

-- The keys of the models stored before, by the new rule (the view that registers keys as calls
-- arrive is made again at start: it calls loopwatch_model_key, see migrate.ts calledFunctions).
INSERT INTO loopwatch_model_keys SELECT DISTINCT loopwatch_model_key(model) FROM agent_llm_calls WHERE model != '';

-- Kept features hold the LLM shares priced by the old rule: dropped, the next pass recomputes them (as in 016).
TRUNCATE TABLE IF EXISTS agent_call_features;

DELETE FROM loopwatch_detector_state WHERE detector = '_features';
