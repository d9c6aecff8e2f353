-- Support for the loop and waste detectors (queries/detectors/*.sql, run by
-- collector/src/detect/run-detectors.ts): activity log for incremental runs, per-detector
-- watermarks and model prices.

-- Which sessions received calls when (insertion time, not span time): an incremental detector
-- pass reads the sessions active since its watermark and then their whole history. Filled by
-- views on the typed tables, so loop spans (no convention, never in those tables) do not feed it.
CREATE TABLE IF NOT EXISTS agent_call_activity
(
    inserted_at DateTime64(3) CODEC(Delta, ZSTD(1)),
    session_id String CODEC(ZSTD(1))
)
ENGINE = MergeTree
PARTITION BY toDate(inserted_at)
ORDER BY (inserted_at, session_id)
TTL toDateTime(inserted_at) + toIntervalDay({{retention_days}})
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_call_activity_tools_mv TO agent_call_activity AS
SELECT now64(3) AS inserted_at, session_id FROM agent_tool_calls GROUP BY session_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS agent_call_activity_llm_mv TO agent_call_activity AS
SELECT now64(3) AS inserted_at, session_id FROM agent_llm_calls GROUP BY session_id;

-- Sessions stored before this migration count as active now (one first full pass).
INSERT INTO agent_call_activity SELECT now64(3), session_id FROM agent_tool_calls GROUP BY session_id;

-- Per-detector watermark: the insertion time up to which sessions have been examined.
CREATE TABLE IF NOT EXISTS loopwatch_detector_state
(
    detector String,
    watermark DateTime64(3),
    updated_at DateTime64(3) DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY detector;

-- Model list prices (USD per million tokens), loaded at collector start from
-- queries/prices/model-prices.json merged with LOOPWATCH_MODEL_PRICES. match: 'exact' or
-- 'prefix' (a dated or suffixed model id matches its family); the longest match wins.
CREATE TABLE IF NOT EXISTS model_prices
(
    model String,
    match LowCardinality(String),
    input_per_mtok Float64,
    output_per_mtok Float64,
    cached_input_per_mtok Float64
)
ENGINE = ReplacingMergeTree
ORDER BY (model, match);

-- Price lookup key of a model id: lower case, provider path dropped (openai/gpt-4o,
-- models/gemini-2.5-pro), Bedrock's [region.]anthropic. prefix dropped.
CREATE FUNCTION IF NOT EXISTS loopwatch_model_key AS (m) ->
    replaceRegexpOne(lowerUTF8(arrayElement(splitByChar('/', m), -1)), '^([a-z]{2}\\.)?anthropic\\.', '');

-- Error identity across a session (replaced in 008, which keeps small numbers).
CREATE FUNCTION IF NOT EXISTS loopwatch_error_norm AS (msg) ->
    leftUTF8(trimBoth(replaceRegexpAll(replaceRegexpAll(lowerUTF8(msg), '[0-9a-f]{8,}|[0-9]+', '#'), '[ \t\r\n]+', ' ')), 200);

-- The per-call features every detector reads are defined in queries/features/detector-calls.sql
-- (a store migrated before 005 got a first version as a view from here; 006 drops it).
