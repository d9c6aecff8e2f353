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
  /** Gaps between calls longer than this (s) are not wall time: the conversation was resumed later (0: all count). */
  budgetIdleGapS: number;
  /** Tool calls nested inside tool calls (parent_span_id chain), deepest allowed. */
  budgetMaxToolDepth: number;
  /** Incremental runs re-read sessions active this long before the watermark (late inserts). */
  watermarkOverlapS: number;
  /** degradation: a model-day is compared with this many UTC days before it, pooled. */
  degradationBaselineDays: number;
  /** ...of which at least this many have data... */
  degradationMinBaselineDays: number;
  /** ...and at least this many tool calls (rates) in all. */
  degradationMinBaselineCalls: number;
  /** The day needs this many tool calls (error rate) and LLM calls (latency; the baseline too). */
  degradationMinCalls: number;
  /** Sessions needed on each side for the loop rate. */
  degradationMinSessions: number;
  /** A rate is worse at a one-sided two-proportion z score of at least this... */
  degradationMinZ: number;
  /** ...when it is also at least this many times the baseline rate... */
  degradationMinRatio: number;
  /** ...and at least this much above it (0.05 = 5 points). */
  degradationMinIncrease: number;
  /** LLM latency p50 is worse at this many times the mean of the baseline days' medians. */
  degradationLatencyRatio: number;
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
  // a pause this long between calls is a person's turn (a chat thread), or a conversation resumed: not running time
  budgetIdleGapS: 600,
  budgetMaxToolDepth: 5,
  watermarkOverlapS: 10,
  degradationBaselineDays: 7,
  degradationMinBaselineDays: 3,
  degradationMinBaselineCalls: 100,
  degradationMinCalls: 50,
  degradationMinSessions: 20,
  degradationMinZ: 3,
  degradationMinRatio: 1.5,
  degradationMinIncrease: 0.05,
  degradationLatencyRatio: 2,
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
  budgetIdleGapS: 'Float64',
  budgetMaxToolDepth: 'UInt32',
  watermarkOverlapS: 'UInt32',
  degradationBaselineDays: 'UInt32',
  degradationMinBaselineDays: 'UInt32',
  degradationMinBaselineCalls: 'UInt32',
  degradationMinCalls: 'UInt32',
  degradationMinSessions: 'UInt32',
  degradationMinZ: 'Float64',
  degradationMinRatio: 'Float64',
  degradationMinIncrease: 'Float64',
  degradationLatencyRatio: 'Float64',
});

/** repeatMinRun -> repeat_min_run: the query parameter name of a setting. */
export function sqlParamName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

const UINT32_MAX = 4294967295;

/**
 * The values each setting may take: below the least a rule would fire on nothing or on every
 * call (a run of 1), above the most the SQL or the guard cannot follow (oscillation periods).
 */
export const DETECTOR_PARAM_RANGES: Readonly<Record<keyof DetectorParams, readonly [min: number, max: number]>> = Object.freeze({
  repeatMinRun: [2, UINT32_MAX],
  repeatMaxNewRatio: [0, 1],
  stuckMinRun: [2, UINT32_MAX],
  oscillationMinCycles: [2, UINT32_MAX],
  oscillationMaxPeriod: [2, 4],
  retryStormMinRun: [2, UINT32_MAX],
  errorLoopMinCount: [2, UINT32_MAX],
  redundantMinCalls: [2, UINT32_MAX],
  runawayNoProgressRun: [1, UINT32_MAX],
  budgetMaxCalls: [0, UINT32_MAX],
  budgetMaxTokens: [0, Number.MAX_VALUE],
  budgetMaxCostUsd: [0, Number.MAX_VALUE],
  budgetMaxWallTimeS: [0, Number.MAX_VALUE],
  budgetIdleGapS: [0, Number.MAX_VALUE],
  budgetMaxToolDepth: [0, UINT32_MAX],
  watermarkOverlapS: [0, 86_400],
  degradationBaselineDays: [1, 90],
  degradationMinBaselineDays: [1, 90],
  degradationMinBaselineCalls: [1, UINT32_MAX],
  degradationMinCalls: [1, UINT32_MAX],
  degradationMinSessions: [1, UINT32_MAX],
  degradationMinZ: [0, Number.MAX_VALUE],
  degradationMinRatio: [1, Number.MAX_VALUE],
  degradationMinIncrease: [0, 1],
  degradationLatencyRatio: [1, Number.MAX_VALUE],
});

const PARAM_KEYS = Object.keys(DETECTOR_DEFAULTS) as (keyof DetectorParams)[];
/** A setting by its name or its query parameter name (repeatMinRun, repeat_min_run). */
const KEY_BY_NAME = new Map<string, keyof DetectorParams>(PARAM_KEYS.flatMap((k) => [[k, k], [sqlParamName(k), k]] as const));

export class DetectorSettingsError extends Error {
  override readonly name = 'DetectorSettingsError';
}

/** The setting a name (DetectorParams or query parameter name) stands for; throws for an unknown one. */
function settingKey(name: string): keyof DetectorParams {
  const key = KEY_BY_NAME.get(name);
  if (key === undefined) throw new DetectorSettingsError(`unknown detector setting ${JSON.stringify(name)} (known: ${PARAM_KEYS.join(', ')})`);
  return key;
}

/** Why a value does not fit a setting, or undefined when it does; `shown`: the value as the user wrote it. */
function misfit(key: keyof DetectorParams, v: unknown, shown = typeof v === 'string' ? JSON.stringify(v) : String(v)): string | undefined {
  const [min, max] = DETECTOR_PARAM_RANGES[key];
  const integer = DETECTOR_PARAM_TYPES[key] === 'UInt32';
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min || v > max) {
    const what = integer ? 'an integer' : 'a number';
    const range = max >= Number.MAX_VALUE ? `>= ${min}` : `from ${min} to ${max}`;
    return `detector setting ${key} must be ${what} ${range}, got ${shown}`;
  }
  return undefined;
}

/**
 * Defaults with overrides applied (undefined overrides ignored). Throws DetectorSettingsError for
 * an unknown setting or a value out of its range (DETECTOR_PARAM_RANGES).
 */
export function resolveDetectorParams(overrides: Partial<DetectorParams> = {}): DetectorParams {
  const out: DetectorParams = { ...DETECTOR_DEFAULTS };
  for (const [name, v] of Object.entries(overrides)) {
    if (v === undefined) continue;
    const key = settingKey(name);
    const why = misfit(key, v);
    if (why) throw new DetectorSettingsError(why);
    out[key] = v;
  }
  if (out.degradationMinBaselineDays > out.degradationBaselineDays) {
    throw new DetectorSettingsError(
      `detector setting degradationMinBaselineDays (${out.degradationMinBaselineDays}) must not exceed degradationBaselineDays (${out.degradationBaselineDays})`,
    );
  }
  return out;
}

/**
 * Detector settings written as text, as LOOPWATCH_DETECTORS and `loopwatch up --detectors` take
 * them: `name=value` pairs separated by commas or white space, a name as in DetectorParams or as
 * its query parameter (`repeatMinRun=4, budget_max_cost_usd=2.5`). Checked like
 * resolveDetectorParams(); throws DetectorSettingsError naming the first bad pair.
 */
/** The `name=value` pairs of a settings text (separated by commas or spaces). */
export function detectorSettingPairs(text: string): string[] {
  return text.split(/[\s,]+/).filter((p) => p.length > 0);
}

export function parseDetectorSettings(text: string): Partial<DetectorParams> {
  const out: Partial<DetectorParams> = {};
  for (const pair of detectorSettingPairs(text)) {
    const eq = pair.indexOf('=');
    const key = settingKey(eq < 0 ? pair : pair.slice(0, eq));
    const raw = eq < 0 ? '' : pair.slice(eq + 1);
    // decimal notation only: Number() reads 0x10 as 16 and 1e3 as 1000
    const value = /^\s*[-+]?(\d+(\.\d*)?|\.\d+)\s*$/.test(raw) ? Number(raw) : NaN;
    const why = misfit(key, value, JSON.stringify(raw));
    if (why) throw new DetectorSettingsError(why);
    out[key] = value;
  }
  resolveDetectorParams(out); // the checks across settings
  return out;
}

// What varies between occurrences of one error: UUIDs, ids (a word of letters, digits and
// underscores that goes from letters to digits or back three times or more, such as the
// request id req_8KzQ3vHtPlMn7 or the temporary directory tmpk3j9_xq2; names such as
// HTTP_401_UNAUTHORIZED, ERR_HTTP2_STREAM_CANCEL, OAUTH2_CLIENT_ID or sha256sum go from one to
// the other at most twice and stay), hex ids, positions (line 12: an edit moves them; pid 812),
// durations (30s, 734 ms, 5 minutes), numbers joined by . : / - (addresses, times, dates,
// versions), numbers of 4+ digits (ids, ports, timestamps).
// Small numbers stay: "5 tests failed" and "1 tests failed", or 401 and 404, are other errors.
const VARYING_IN_ERRORS =
  /[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}|\b(?:[a-z_]+[0-9]+[a-z_]+[0-9]+|[0-9]+[a-z_]+[0-9]+[a-z_]+)[a-z0-9_]*\b|[0-9a-f]{8,}|\b(?:line|col|column|row|offset|position|pos|pid)[ =:]?[0-9]+|[0-9]+(?:\.[0-9]+)? ?(?:ms|us|ns|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)\b|[0-9]+(?:[.:/-][0-9]+)+|[0-9]{4,}/g;

/**
 * Normalized error message, identical to the SQL side (queries/schema/014_error_identity_ids.sql,
 * loopwatch_error_norm): lower case, ids, durations and long numbers replaced by '#', whitespace
 * collapsed, cut at 200 characters. Ids and timestamps in a message must not make errors differ.
 */
export function normalizeErrorMessage(message: string): string {
  // trimmed of spaces only, as trimBoth (String.trim also takes no-break and other Unicode spaces)
  const norm = message.toLowerCase().replace(VARYING_IN_ERRORS, '#').replace(/[ \t\r\n]+/g, ' ').replace(/^ +| +$/g, '');
  return Array.from(norm).slice(0, 200).join('');
}
