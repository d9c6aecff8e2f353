-- Findings of the loop and waste detectors (queries/detectors/*.sql), one row per finding
-- version. A finding's identity is (session_id, detector, first_span_id): a loop that grows
-- between detector passes is the same finding with a higher version, so re-running the
-- detectors never duplicates a finding (ReplacingMergeTree; readers use FINAL).
CREATE TABLE IF NOT EXISTS agent_findings
(
    finding_id String,
    version UInt64,
    detector LowCardinality(String),
    severity LowCardinality(String),
    detected_at DateTime64(3),
    session_id String,
    trace_id String,
    service LowCardinality(String),
    agent LowCardinality(String),
    model LowCardinality(String),
    tools Array(LowCardinality(String)),
    first_span_id String,
    last_span_id String,
    first_ts DateTime64(9),
    last_ts DateTime64(9),
    repeats UInt32,
    wasted_calls UInt32,
    wasted_tokens UInt64,
    wasted_cost_usd Float64,
    wasted_time_ns UInt64,
    message String,
    details String CODEC(ZSTD(3))
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(first_ts)
ORDER BY (session_id, detector, first_span_id)
TTL toDateTime(first_ts) + toIntervalDay({{retention_days}})
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1;
