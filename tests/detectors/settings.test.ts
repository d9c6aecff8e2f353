// Detector settings: one text form (LOOPWATCH_DETECTORS, `loopwatch up --detectors`) read by the
// collector's configuration and by the in-process guard, checked against each setting's range,
// and applied: a collector started with stuckMinRun=2 finds a stuck loop of two calls, and so does
// a guard in the agent process.
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../collector/src/config.js';
import { traceTool, withSession } from '../../instrumentation/src/api.js';
import { detectorSettingsFromEnv, enableLoopGuard } from '../../instrumentation/src/guard/enable.js';
import { LoopGuard } from '../../instrumentation/src/guard/loop-guard.js';
import { SessionSpanProcessor } from '../../instrumentation/src/sdk.js';
import {
  DETECTOR_DEFAULTS,
  DETECTOR_PARAM_RANGES,
  DetectorSettingsError,
  parseDetectorSettings,
  resolveDetectorParams,
} from '../../queries/src/detector-defaults.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { buildSession, otlpJson, times } from './helpers.js';

describe('detector settings as text', () => {
  it('reads name=value pairs, by setting name or query parameter name', () => {
    expect(parseDetectorSettings('repeatMinRun=4, budget_max_cost_usd=2.5\n degradationMinZ=2.5')).toEqual({
      repeatMinRun: 4,
      budgetMaxCostUsd: 2.5,
      degradationMinZ: 2.5,
    });
    expect(parseDetectorSettings('  ')).toEqual({});
    expect(parseDetectorSettings('budgetMaxCalls=0')).toEqual({ budgetMaxCalls: 0 }); // 0 disables a budget
  });

  it('refuses what a detector cannot use, naming the setting', () => {
    const bad: [string, RegExp][] = [
      ['repeatMinRun=1', /repeatMinRun must be an integer from 2 to 4294967295, got "1"/],
      ['stuckMinRun=2.5', /stuckMinRun must be an integer/],
      ['repeatMaxNewRatio=1.5', /repeatMaxNewRatio must be a number from 0 to 1, got "1.5"/],
      ['oscillationMaxPeriod=5', /oscillationMaxPeriod must be an integer from 2 to 4/],
      ['budgetMaxCostUsd=-1', /budgetMaxCostUsd must be a number >= 0/],
      ['budgetMaxTokens=lots', /budgetMaxTokens must be a number >= 0, got "lots"/],
      ['repeatMinRun=', /repeatMinRun must be an integer .*got ""/],
      ['repeatMinRun', /repeatMinRun must be an integer/],
      ['repeat_min_runs=3', /unknown detector setting "repeat_min_runs" \(known: repeatMinRun, /],
      ['degradationBaselineDays=2', /degradationMinBaselineDays \(3\) must not exceed degradationBaselineDays \(2\)/],
    ];
    for (const [text, message] of bad) expect(() => parseDetectorSettings(text), text).toThrow(message);
    expect(() => parseDetectorSettings('repeatMinRun=1')).toThrow(DetectorSettingsError);
  });

  it('checks settings given as an object the same way, and every default is in its range', () => {
    expect(() => resolveDetectorParams({ retryStormMinRun: 0 })).toThrow(/retryStormMinRun must be an integer from 2/);
    expect(() => resolveDetectorParams({ budgetMaxWallTimeS: Number.NaN })).toThrow(/budgetMaxWallTimeS must be a number >= 0, got NaN/);
    expect(() => resolveDetectorParams({ bogus: 1 } as never)).toThrow(/unknown detector setting "bogus"/);
    expect(() => new LoopGuard({ params: { errorLoopMinCount: 1 } })).toThrow(DetectorSettingsError);
    expect(resolveDetectorParams({})).toEqual(DETECTOR_DEFAULTS);
    for (const [key, [min, max]] of Object.entries(DETECTOR_PARAM_RANGES)) {
      const v = DETECTOR_DEFAULTS[key as keyof typeof DETECTOR_DEFAULTS];
      expect(v >= min && v <= max, key).toBe(true);
    }
  });
});

describe('collector configuration', () => {
  it('takes LOOPWATCH_DETECTORS; --detectors (an override) replaces it', () => {
    expect(loadConfig({}, {}).detect.settings).toEqual({});
    expect(loadConfig({}, { LOOPWATCH_DETECTORS: 'repeatMinRun=4' }).detect.settings).toEqual({ repeatMinRun: 4 });
    expect(loadConfig({ detect: { settings: 'stuckMinRun=4' } }, { LOOPWATCH_DETECTORS: 'repeatMinRun=4' }).detect.settings).toEqual({ stuckMinRun: 4 });
    expect(loadConfig({ detect: { settings: { budgetMaxCalls: 100 } } }, {}).detect.settings).toEqual({ budgetMaxCalls: 100 });
  });

  it('fails at start on a bad setting, with its name and range', () => {
    expect(() => loadConfig({}, { LOOPWATCH_DETECTORS: 'repeatMinRun=1' })).toThrow(ConfigError);
    expect(() => loadConfig({}, { LOOPWATCH_DETECTORS: 'repeatMinRun=1' })).toThrow(
      /invalid configuration detect\.settings \(LOOPWATCH_DETECTORS\): detector setting repeatMinRun must be an integer from 2/,
    );
    expect(() => loadConfig({ detect: { settings: { nope: 3 } } }, {})).toThrow(/unknown detector setting "nope"/);
  });

  it('names a bad collector setting by its variable, with the value given', () => {
    expect(() => loadConfig({}, { LOOPWATCH_PORT: 'abc' })).toThrow(/^invalid configuration port \(LOOPWATCH_PORT\): .* \(given "abc"\)$/);
    expect(() => loadConfig({ retentionDays: -5 }, {})).toThrow(/^invalid configuration retentionDays \(LOOPWATCH_RETENTION_DAYS\): Too small.* \(given -5\)$/);
    // a span's TTL (start plus retention) must end by 2106, where the store's TTL times end
    expect(() => loadConfig({}, { LOOPWATCH_RETENTION_DAYS: '29000' })).toThrow(/^invalid configuration retentionDays \(LOOPWATCH_RETENTION_DAYS\): Too big.*25000/);
    expect(loadConfig({}, { LOOPWATCH_RETENTION_DAYS: '25000' }).retentionDays).toBe(25_000);
    expect(() => loadConfig({}, { LOOPWATCH_TLS_WATCH_INTERVAL_MS: 'soon' })).toThrow(/^invalid configuration tls\.watchIntervalMs \(LOOPWATCH_TLS_WATCH_INTERVAL_MS\)/);
    // numbers in decimal digits only (Number() read 0x10 as port 16, 1e3 as 1000)
    for (const v of ['0x10', '1e3', '12abc', '4.5']) expect(() => loadConfig({}, { LOOPWATCH_PORT: v }), v).toThrow(/^invalid configuration port \(LOOPWATCH_PORT\): expected a whole number/);
    expect(loadConfig({}, { LOOPWATCH_PORT: ' 4319 ' }).port).toBe(4319);
    // "off" in any case, as the flag takes it
    expect(loadConfig({}, { LOOPWATCH_GRPC_PORT: 'OFF' }).grpcPort).toBeNull();
    expect(() => loadConfig({}, { LOOPWATCH_GRPC_PORT: 'of' })).toThrow(/expected a port \(0-65535\) or "off"/);
    // timers hold at most 2^31-1 ms: past it a timer fires after 1 ms (a detector interval of 1e11 ran passes back to back)
    expect(() => loadConfig({}, { LOOPWATCH_DETECT_INTERVAL_MS: '100000000000' })).toThrow(/^invalid configuration detect\.intervalMs \(LOOPWATCH_DETECT_INTERVAL_MS\): at most 2147483647 ms/);
    expect(() => loadConfig({}, { LOOPWATCH_BODY_TIMEOUT_MS: '3000000000' })).toThrow(/limits\.bodyTimeoutMs \(LOOPWATCH_BODY_TIMEOUT_MS\): at most/);
    // settings valid alone that cannot work together
    expect(() => loadConfig({}, { LOOPWATCH_PORT: '4400', LOOPWATCH_GRPC_PORT: '4400' })).toThrow(/^invalid configuration grpcPort \(LOOPWATCH_GRPC_PORT\): the OTLP\/gRPC port is the HTTP port \(4400\)/);
    // a spool smaller than a segment works (segments are also sealed by age): not refused
    expect(loadConfig({}, { LOOPWATCH_SPOOL_MAX_BYTES: '1000000' }).spool.maxBytes).toBe(1_000_000);
    // detector settings in decimal notation too
    expect(() => loadConfig({}, { LOOPWATCH_DETECTORS: 'repeatMinRun=0x10' })).toThrow(/repeatMinRun must be an integer/);
    expect(loadConfig({}, { LOOPWATCH_DETECTORS: 'budgetMaxCostUsd=2.5' }).detect.settings).toEqual({ budgetMaxCostUsd: 2.5 });
    // never the value of what can hold a credential
    for (const env of [{ LOOPWATCH_CLICKHOUSE_URL: 'http://u:s3cret@host:port' }, { LOOPWATCH_INGEST_KEY_HASHES: 'lw_s3cret' }]) {
      expect(() => loadConfig({}, env)).toThrow(/\((LOOPWATCH_CLICKHOUSE_URL|LOOPWATCH_INGEST_KEY_HASHES)\)/);
      expect(() => loadConfig({}, env)).not.toThrow(/s3cret/);
    }
  });
});

describe('a setting applied', () => {
  let tc: TestCollector | undefined;
  const exporter = new InMemorySpanExporter();
  const provider = new NodeTracerProvider({ spanProcessors: [new SessionSpanProcessor(), new SimpleSpanProcessor(exporter)] });
  afterAll(async () => {
    await tc?.close();
    await provider.shutdown();
  });

  it('the collector finds a stuck loop of two calls with stuckMinRun=2 (default 3)', async () => {
    tc = await startTestCollector({ detect: { intervalMs: 300, settings: 'stuckMinRun=2' } });
    const s = buildSession('settings-stuck', times(2, { tool: 'read_file', args: { path: 'x' }, result: 'same' }), { startMs: Date.now() - 5_000 });
    const res = await fetch(`${tc.url}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: otlpJson(s.rows) });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    let found: { repeats: number; wasted_calls: number }[] = [];
    for (const t0 = Date.now(); Date.now() - t0 < 20_000 && found.length === 0; await new Promise((r) => setTimeout(r, 100))) {
      found = await tc.rows(`SELECT repeats, wasted_calls FROM agent_findings FINAL WHERE session_id = 'settings-stuck' AND detector = 'stuck'`);
    }
    expect(found).toEqual([{ repeats: 2, wasted_calls: 1 }]);
  });

  it('the guard reads LOOPWATCH_DETECTORS too, and leaves a bad setting out with a warning, keeping the others', async () => {
    provider.register();
    const warnings: string[] = [];
    expect(detectorSettingsFromEnv({ LOOPWATCH_DETECTORS: 'stuckMinRun=1' }, (m) => warnings.push(m))).toEqual({});
    expect(warnings).toEqual([
      'LOOPWATCH_DETECTORS: "stuckMinRun=1" ignored (detector setting stuckMinRun must be an integer from 2 to 4294967295, got "1"); the other settings apply',
    ]);
    // a typo beside a spend limit: the limit stays (a ';' for ',' too)
    warnings.length = 0;
    expect(detectorSettingsFromEnv({ LOOPWATCH_DETECTORS: 'budgetMaxCalls=5;stuckMinRun=1' }, (m) => warnings.push(m))).toEqual({ budgetMaxCalls: 5 });
    expect(warnings).toHaveLength(1);
    expect(detectorSettingsFromEnv({ LOOPWATCH_DETECTORS: 'budgetMaxCalls=5;stuckMinRun=4' }, () => undefined)).toEqual({ budgetMaxCalls: 5, stuckMinRun: 4 });

    const saved = process.env.LOOPWATCH_DETECTORS;
    process.env.LOOPWATCH_DETECTORS = 'stuck_min_run=2';
    const raised: string[] = [];
    const handle = enableLoopGuard({ policy: 'warn', log: (_m, f) => raised.push(f.kind) });
    try {
      expect(handle.guard.params.stuckMinRun).toBe(2);
      const read = traceTool('read_file', async (path: string) => `contents of ${path}`);
      await withSession('settings-guard', async () => {
        await read('a.ts');
        await read('a.ts');
      });
      expect(raised).toEqual(['stuck']);
    } finally {
      handle.disable();
      if (saved === undefined) delete process.env.LOOPWATCH_DETECTORS;
      else process.env.LOOPWATCH_DETECTORS = saved;
    }
  });
});
