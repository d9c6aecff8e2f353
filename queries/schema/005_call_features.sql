-- The per-call features every detector reads are defined in
-- queries/features/detector-calls.sql (until 006 also as the view loopwatch_detector_calls).

-- The per-call features of queries/features/detector-calls.sql, kept: every detector
-- pass writes the rows of the sessions it examined here (their whole history, recomputed, as a
-- higher version), so a full pass reads what earlier passes computed instead of recomputing
-- every session's history with a sort and the LLM join. Columns: those of that SELECT, in its
-- order, plus the version. A row changes when its session gets a call that changes it (a
-- neighbour flag, an LLM call's share, a late call that moves seq): readers use FINAL, through
-- loopwatch_call_features. A change of that SELECT's columns or their meaning
-- must also empty this table and delete the '_features' row of loopwatch_detector_state: the
-- next pass then recomputes and keeps every session once.
CREATE TABLE IF NOT EXISTS agent_call_features
(
    session_id String CODEC(ZSTD(1)),
    seq UInt64 CODEC(Delta, ZSTD(1)),
    ts DateTime64(9) CODEC(Delta, ZSTD(1)),
    end_ts DateTime64(9) CODEC(Delta, ZSTD(1)),
    duration_ns UInt64 CODEC(ZSTD(1)),
    trace_id String CODEC(ZSTD(1)),
    span_id String CODEC(ZSTD(1)),
    parent_span_id String CODEC(ZSTD(1)),
    service LowCardinality(String),
    agent LowCardinality(String),
    model LowCardinality(String),
    tool LowCardinality(String),
    status LowCardinality(String),
    error_type LowCardinality(String),
    error_message String CODEC(ZSTD(1)),
    has_result UInt8,
    result_empty UInt8,
    call_key UInt64,
    outcome_kind LowCardinality(String),
    outcome UInt64,
    error_key UInt64,
    same_call_prev UInt8,
    same_call_next UInt8,
    same_outcome_prev UInt8,
    same_outcome_next UInt8,
    fail_run_prev UInt8,
    fail_run_next UInt8,
    cycle2 UInt8,
    cycle3 UInt8,
    cycle4 UInt8,
    has_children UInt8,
    tokens Float64,
    cost_usd Float64,
    time_ns Float64,
    -- microseconds of the pass that wrote the row (the store's clock): the newest wins
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toDate(ts)
ORDER BY (session_id, span_id)
TTL toDateTime(ts) + toIntervalDay({{retention_days}})
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;

-- What the detectors read on a full pass (bound as {calls:Identifier}, restricted to a range
-- of sessions when the pass is split).
CREATE VIEW IF NOT EXISTS loopwatch_call_features AS
SELECT * EXCEPT (version) FROM agent_call_features FINAL;
