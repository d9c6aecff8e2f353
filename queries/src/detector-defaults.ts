// The one definition of the loop and waste detectors' thresholds and budgets. The SQL runner
// (collector/src/detect/run-detectors.ts) binds each as a query parameter named in snake_case
// (repeatMinRun -> {repeat_min_run:UInt32}); the in-process LoopGuard reads the same object.
// Calibration: a call that returns something new is progress, so polling whose answer changes,
// pagination and reading different files never count; the run lengths leave room for a retry
// policy of up to 3 attempts and for an occasional re-read.

export interface DetectorParams {
  /** repeat: same tool + arguments this many times in a row... */
  repeatMinRun: number;
  /** ...while at most this fraction of the run's outcomes were distinct (polling that sees changes is progress). */
  repeatMaxNewRatio: number;
  /** stuck: same tool + arguments + successful result this many times in a row. */
  stuckMinRun: number;
  /** oscillation: a cycle of 2..oscillationMaxPeriod distinct calls repeated this many times, same result per position. */
  oscillationMinCycles: number;
  oscillationMaxPeriod: number;
  /** retry_storm: the same tool failing this many times in a row, whatever the arguments. */
  retryStormMinRun: number;
  /** error_loop: the same error (tool, type, normalized message) this many times in a session. */
  errorLoopMinCount: number;
  /** redundant: the same call with the same result this many times in a session (first + redundant copies). */
  redundantMinCalls: number;
  /** runaway: this many calls in a row that return nothing new in the session. */
  runawayNoProgressRun: number;
  /** runaway budgets per session (0 disables one). */
  budgetMaxCalls: number;
  budgetMaxTokens: number;
  budgetMaxCostUsd: number;
  budgetMaxWallTimeS: number;
  /** Tool calls nested inside tool calls (parent_span_id chain), deepest allowed. */
  budgetMaxToolDepth: number;
  /** Incremental runs re-read sessions active this long before the watermark (late inserts). */
  watermarkOverlapS: number;
}

export const DETECTOR_DEFAULTS: Readonly<DetectorParams> = Object.freeze({
  repeatMinRun: 5,
  repeatMaxNewRatio: 0.5,
  stuckMinRun: 3,
  oscillationMinCycles: 3,
  oscillationMaxPeriod: 4,
  retryStormMinRun: 5,
  errorLoopMinCount: 4,
  redundantMinCalls: 3,
  runawayNoProgressRun: 20,
  budgetMaxCalls: 500,
  budgetMaxTokens: 5_000_000,
  budgetMaxCostUsd: 10,
  budgetMaxWallTimeS: 2 * 3600,
  budgetMaxToolDepth: 5,
  watermarkOverlapS: 10,
});

/** ClickHouse parameter type of each setting, for `{name:Type}` placeholders. */
export const DETECTOR_PARAM_TYPES: Readonly<Record<keyof DetectorParams, 'UInt32' | 'Float64'>> = Object.freeze({
  repeatMinRun: 'UInt32',
  repeatMaxNewRatio: 'Float64',
  stuckMinRun: 'UInt32',
  oscillationMinCycles: 'UInt32',
  oscillationMaxPeriod: 'UInt32',
  retryStormMinRun: 'UInt32',
  errorLoopMinCount: 'UInt32',
  redundantMinCalls: 'UInt32',
  runawayNoProgressRun: 'UInt32',
  budgetMaxCalls: 'UInt32',
  budgetMaxTokens: 'Float64',
  budgetMaxCostUsd: 'Float64',
  budgetMaxWallTimeS: 'Float64',
  budgetMaxToolDepth: 'UInt32',
  watermarkOverlapS: 'UInt32',
});

/** repeatMinRun -> repeat_min_run: the query parameter name of a setting. */
export function sqlParamName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Defaults with overrides applied (undefined overrides ignored). */
export function resolveDetectorParams(overrides: Partial<DetectorParams> = {}): DetectorParams {
  const out: DetectorParams = { ...DETECTOR_DEFAULTS };
  for (const [k, v] of Object.entries(overrides)) {
    if (v !== undefined && k in out) (out as unknown as Record<string, number>)[k] = v;
  }
  return out;
}

/**
 * Normalized error message, identical to the SQL side (queries/schema/004_detectors.sql,
 * loopwatch_error_norm): lower case, numbers and long hex ids replaced by '#', whitespace
 * collapsed, cut at 200 characters. Ids and counters in a message must not make errors differ.
 */
export function normalizeErrorMessage(message: string): string {
  const norm = message.toLowerCase().replace(/[0-9a-f]{8,}|[0-9]+/g, '#').replace(/[ \t\r\n]+/g, ' ').trim();
  return Array.from(norm).slice(0, 200).join('');
}
