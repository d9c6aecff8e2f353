// Seeds a real collector with agent sessions for the Grafana tests: OTLP/JSON over the
// collector's HTTP endpoint, OTel GenAI convention (invoke_agent / chat / execute_tool spans),
// then loop findings in agent_findings and their `loopwatch.loop` spans in otel_traces, as
// the detector engine writes them (one span per finding, attributes loop.*, in the looping
// session's trace, spanning the loop).
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { TestCollector } from '../helpers/collector.js';

const MS = 1_000_000n;

export interface Step {
  tool: string;
  args: Record<string, unknown>;
  result?: string;
  /** error.type of a failed call; the call fails when set. */
  error?: string;
  toolMs?: number;
}

export interface FindingSpec {
  detector: string;
  severity: 'warning' | 'critical';
  /** Steps (0-based, inclusive) the loop covers; the first is the legitimate call. */
  from: number;
  to: number;
  message: string;
}

export interface SessionSpec {
  service: string;
  agent: string;
  model: string;
  provider: string;
  start: Date;
  steps: Step[];
  /** Per LLM call (one before each tool call). */
  inputTokens?: number;
  outputTokens?: number;
  costUsd?: number;
  llmMs?: number;
  findings?: FindingSpec[];
}

interface CallRecord {
  spanId: string;
  parentSpanId: string;
  startNs: bigint;
  endNs: bigint;
  tool: string;
  llmTokens: number;
  llmCost: number;
  llmNs: bigint;
}

export interface BuiltSession {
  spec: SessionSpec;
  sessionId: string;
  traceId: string;
  rootSpanId: string;
  calls: CallRecord[];
}

const hex = (bytes: number) => randomBytes(bytes).toString('hex');
const str = (key: string, value: string) => ({ key, value: { stringValue: value } });
const int = (key: string, value: number) => ({ key, value: { intValue: String(value) } });
const dbl = (key: string, value: number) => ({ key, value: { doubleValue: value } });

/** One session as OTLP/JSON spans: invoke_agent root, then per step a chat span and an execute_tool span. */
export function buildSession(spec: SessionSpec, sessionId = `sess-${hex(6)}`): { built: BuiltSession; spans: unknown[] } {
  const traceId = hex(16);
  const rootSpanId = hex(8);
  const common = [str('gen_ai.conversation.id', sessionId), str('gen_ai.agent.name', spec.agent)];
  const spans: unknown[] = [];
  const calls: CallRecord[] = [];
  let t = BigInt(spec.start.getTime()) * MS;
  const rootStart = t;
  const llmNs = BigInt(spec.llmMs ?? 800) * MS;
  const tin = spec.inputTokens ?? 1500;
  const tout = spec.outputTokens ?? 120;
  const cost = spec.costUsd ?? 0.01;
  spec.steps.forEach((step, i) => {
    const llmSpan = hex(8);
    spans.push({
      traceId, spanId: llmSpan, parentSpanId: rootSpanId, name: `chat ${spec.model}`, kind: 3,
      startTimeUnixNano: String(t), endTimeUnixNano: String(t + llmNs),
      attributes: [
        ...common,
        str('gen_ai.operation.name', 'chat'), str('gen_ai.provider.name', spec.provider),
        str('gen_ai.request.model', spec.model), str('gen_ai.response.model', spec.model),
        int('gen_ai.usage.input_tokens', tin), int('gen_ai.usage.output_tokens', tout), dbl('loopwatch.cost_usd', cost),
      ],
      status: { code: 1 },
    });
    t += llmNs;
    const toolNs = BigInt(step.toolMs ?? 50 + ((i * 37) % 200)) * MS;
    const toolSpan = hex(8);
    const args = JSON.stringify(step.args);
    spans.push({
      traceId, spanId: toolSpan, parentSpanId: rootSpanId, name: `execute_tool ${step.tool}`, kind: 1,
      startTimeUnixNano: String(t), endTimeUnixNano: String(t + toolNs),
      attributes: [
        ...common,
        str('gen_ai.operation.name', 'execute_tool'), str('gen_ai.tool.name', step.tool), str('gen_ai.tool.call.id', `call_${i}`),
        str('gen_ai.tool.call.arguments', args),
        ...(step.error ? [str('error.type', step.error)] : [str('gen_ai.tool.call.result', step.result ?? '{"ok":true}')]),
      ],
      status: step.error ? { code: 2, message: `${step.tool} failed: ${step.error}` } : { code: 0 },
    });
    calls.push({ spanId: toolSpan, parentSpanId: rootSpanId, startNs: t, endNs: t + toolNs, tool: step.tool, llmTokens: tin + tout, llmCost: cost, llmNs });
    t += toolNs + 20n * MS;
  });
  spans.unshift({
    traceId, spanId: rootSpanId, parentSpanId: '', name: `invoke_agent ${spec.agent}`, kind: 1,
    startTimeUnixNano: String(rootStart), endTimeUnixNano: String(t),
    attributes: [...common, str('gen_ai.operation.name', 'invoke_agent'), str('gen_ai.request.model', spec.model)],
    status: { code: 0 },
  });
  return { built: { spec, sessionId, traceId, rootSpanId, calls }, spans };
}

/** POSTs sessions to the collector's OTLP/JSON endpoint, one request per service. */
export async function sendSessions(tc: TestCollector, specs: SessionSpec[]): Promise<BuiltSession[]> {
  const byService = new Map<string, unknown[]>();
  const built: BuiltSession[] = [];
  for (const spec of specs) {
    const { built: b, spans } = buildSession(spec);
    built.push(b);
    byService.set(spec.service, [...(byService.get(spec.service) ?? []), ...spans]);
  }
  for (const [service, spans] of byService) {
    const body = {
      resourceSpans: [
        {
          resource: { attributes: [str('service.name', service), str('telemetry.sdk.language', 'nodejs')] },
          scopeSpans: [{ scope: { name: 'loopwatch-grafana-test', version: '1.0.0' }, spans }],
        },
      ],
    };
    const res = await fetch(`${tc.url}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    if (res.status !== 200) throw new Error(`OTLP export failed: ${res.status} ${await res.text()}`);
    const ack = (await res.json()) as { partialSuccess?: { rejectedSpans?: string | number } };
    if (Number(ack.partialSuccess?.rejectedSpans ?? 0) !== 0) throw new Error(`spans rejected: ${JSON.stringify(ack)}`);
  }
  await tc.collector.flush();
  return built;
}

const nsToIso = (ns: bigint) => {
  const ms = ns / MS;
  const frac = (ns % 1_000_000_000n).toString().padStart(9, '0');
  return `${new Date(Number(ms)).toISOString().slice(0, 19).replace('T', ' ')}.${frac}`;
};

export interface FindingRow {
  finding_id: string; version: number; detector: string; severity: string; detected_at: string;
  session_id: string; trace_id: string; service: string; agent: string; model: string; tools: string[];
  first_span_id: string; last_span_id: string; first_ts: string; last_ts: string;
  repeats: number; wasted_calls: number; wasted_tokens: number; wasted_cost_usd: number; wasted_time_ns: string;
  message: string; details: string;
}

/** The findings a detector pass writes for the sessions' declared loops: the calls after the
 * first one of a loop are waste, with the LLM turn that produced each. */
export function findingsFor(sessions: BuiltSession[], now = new Date()): FindingRow[] {
  const rows: FindingRow[] = [];
  for (const s of sessions) {
    for (const f of s.spec.findings ?? []) {
      const loop = s.calls.slice(f.from, f.to + 1);
      const wasted = loop.slice(1);
      const first = loop[0]!;
      const last = loop[loop.length - 1]!;
      rows.push({
        finding_id: createHash('sha256').update(`${s.sessionId}|${f.detector}|${first.spanId}`).digest('hex').slice(0, 32),
        version: 1,
        detector: f.detector,
        severity: f.severity,
        detected_at: now.toISOString().replace('T', ' ').replace('Z', ''),
        session_id: s.sessionId,
        trace_id: s.traceId,
        service: s.spec.service,
        agent: s.spec.agent,
        model: s.spec.model,
        tools: [...new Set(loop.map((c) => c.tool))],
        first_span_id: first.spanId,
        last_span_id: last.spanId,
        first_ts: nsToIso(first.startNs),
        last_ts: nsToIso(last.endNs),
        repeats: loop.length,
        wasted_calls: wasted.length,
        wasted_tokens: wasted.reduce((a, c) => a + c.llmTokens, 0),
        wasted_cost_usd: Math.round(wasted.reduce((a, c) => a + c.llmCost, 0) * 1e6) / 1e6,
        wasted_time_ns: String(wasted.reduce((a, c) => a + (c.endNs - c.startNs) + c.llmNs, 0n)),
        message: f.message,
        details: JSON.stringify({ from_step: f.from, to_step: f.to }),
      });
    }
  }
  return rows;
}

export async function insertFindings(tc: TestCollector, rows: FindingRow[]): Promise<void> {
  if (rows.length === 0) return;
  await tc.collector.store.client.insert({
    table: 'agent_findings', values: rows, format: 'JSONEachRow',
    clickhouse_settings: { insert_deduplication_token: `findings-${randomUUID()}` },
  });
}

/** The detector engine's second write: a `loopwatch.loop` span per loop finding, in the
 * session's trace, beside the calls that looped (same parent), from the loop's first call to
 * its last, status Error with the finding's message. */
export const LOOP_SPANS_SQL = `
INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, TraceState, SpanName, SpanKind, ServiceName,
                         ResourceAttributes, ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode, StatusMessage)
SELECT
    f.first_ts, f.trace_id, lower(hex(substring(SHA256(f.finding_id), 1, 8))), c.parent_span_id, '',
    'loopwatch.loop', 'Internal', f.service, map('service.name', f.service), 'loopwatch.detect', '0.1.0',
    map('loop.finding_id', f.finding_id, 'loop.detector', f.detector, 'loop.severity', f.severity,
        'loop.agent', f.agent, 'loop.model', f.model, 'loop.session_id', f.session_id,
        'loop.tools', arrayStringConcat(f.tools, ','), 'loop.repeats', toString(f.repeats),
        'loop.wasted_calls', toString(f.wasted_calls), 'loop.wasted_tokens', toString(f.wasted_tokens),
        'loop.wasted_cost_usd', toString(f.wasted_cost_usd), 'loop.wasted_time_ns', toString(f.wasted_time_ns),
        'loop.first_span_id', f.first_span_id, 'loop.last_span_id', f.last_span_id,
        'loop.version', toString(f.version), 'loop.detected_at', toString(f.detected_at)),
    toUInt64(greatest(toUnixTimestamp64Nano(f.last_ts) - toUnixTimestamp64Nano(f.first_ts), 0)),
    'Error', f.message
FROM agent_findings AS f FINAL
LEFT JOIN (SELECT span_id, any(parent_span_id) AS parent_span_id FROM agent_tool_calls GROUP BY span_id) AS c
    ON c.span_id = f.first_span_id
WHERE f.detector != 'degradation' AND f.trace_id != ''`;

export async function writeLoopSpans(tc: TestCollector): Promise<void> {
  // An explicit, fresh deduplication token: on the embedded store the loader's
  // `SET insert_deduplication_token` stays in the chDB session, and otel_traces keeps a
  // deduplication window, so an INSERT without its own token would be dropped silently.
  await tc.collector.store.client.command({ query: LOOP_SPANS_SQL, clickhouse_settings: { insert_deduplication_token: `loop-spans-${randomUUID()}` } });
}

// ---------------------------------------------------------------------------------------
// Data sets

const minutesAgo = (now: Date, m: number) => new Date(now.getTime() - m * 60_000);
/**
 * The k-th of n starts spread over the last `minutes` minutes, within the current UTC day (the
 * degradation case is today's: in the first hour of a day, the last hour was mostly yesterday).
 */
const todaySpread = (now: Date, minutes: number, k: number, n: number) => {
  const dayStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  const span = Math.max(0, Math.min(minutes * 60_000, now.getTime() - dayStart - 30_000));
  return new Date(now.getTime() - span + (k * span) / n);
};
const daysAgo = (now: Date, d: number, hour = 10) => {
  const x = new Date(now.getTime() - d * 86_400_000);
  x.setUTCHours(hour, 0, 0, 0);
  return x;
};

/** Sessions that must not look like loops: pagination, reading different files, polling whose
 * result changes, a retry that then succeeds. Spread over the last week for daily trends. */
export function cleanSessions(now = new Date()): SessionSpec[] {
  const out: SessionSpec[] = [];
  const models: [string, string, string, string][] = [
    ['gpt-4o', 'openai', 'coder', 'coder-svc'],
    ['gpt-4o-mini', 'openai', 'coder', 'coder-svc'],
    ['claude-sonnet-4-5', 'anthropic', 'researcher', 'research-svc'],
  ];
  for (let d = 6; d >= 1; d--) {
    // gpt-4o's trailing week: enough calls for a baseline (>= 100 calls over >= 3 days), ~5% errors
    for (let k = 0; k < 5; k++) {
      out.push({
        service: 'coder-svc', agent: 'coder', model: 'gpt-4o', provider: 'openai', start: daysAgo(now, d, 13 + k), llmMs: 900 + k * 30,
        steps: [
          { tool: 'read_file', args: { path: `src/m${k}.ts` }, result: `export const m${k} = ${d};` },
          { tool: 'list_dir', args: { path: 'src' }, result: '["a.ts","b.ts"]' },
          { tool: 'write_file', args: { path: `src/m${k}.ts`, content: `v${d}` }, result: '{"ok":true}' },
          ...(k === 0 ? [{ tool: 'run_tests', args: { filter: `m${k}` }, error: 'TestFailure' }] : []),
          { tool: 'run_tests', args: { filter: `m${k}` }, result: '{"passed":3}' },
        ],
      });
    }
    for (const [model, provider, agent, service] of models) {
      out.push({
        service, agent, model, provider, start: daysAgo(now, d, 9 + (d % 5)), llmMs: 600 + d * 40 + (model.length % 3) * 150,
        steps: [
          { tool: 'read_file', args: { path: 'src/a.ts' }, result: 'export const a = 1;' },
          { tool: 'read_file', args: { path: 'src/b.ts' }, result: 'export const b = 2;' },
          { tool: 'run_tests', args: { filter: 'a' }, error: 'TestFailure' },
          { tool: 'run_tests', args: { filter: 'a' }, result: '{"passed":12}' },
        ],
      });
    }
  }
  // recent clean activity (today)
  out.push({
    service: 'coder-svc', agent: 'coder', model: 'gpt-4o-mini', provider: 'openai', start: minutesAgo(now, 30),
    steps: [1, 2, 3].map((page) => ({ tool: 'list_items', args: { page }, result: JSON.stringify({ page, items: [page * 10, page * 10 + 1] }) })),
  });
  out.push({
    service: 'research-svc', agent: 'researcher', model: 'claude-sonnet-4-5', provider: 'anthropic', start: minutesAgo(now, 20),
    steps: [
      { tool: 'job_status', args: { id: 'j1' }, result: '{"state":"queued"}' },
      { tool: 'job_status', args: { id: 'j1' }, result: '{"state":"running"}' },
      { tool: 'job_status', args: { id: 'j1' }, result: '{"state":"done"}' },
      { tool: 'search_web', args: { q: 'clickhouse final' }, result: '{"hits":3}' },
    ],
  });
  return out;
}

/** Clean sessions plus sessions that loop, in the last few minutes, with their findings. */
export function loopingSessions(now = new Date()): SessionSpec[] {
  const searchResult = '{"hits":0,"items":[]}';
  return [
    ...cleanSessions(now),
    // retry storm: run_tests fails six times in a row with the same arguments
    {
      service: 'coder-svc', agent: 'coder', model: 'gpt-4o', provider: 'openai', start: minutesAgo(now, 4), costUsd: 0.05, llmMs: 400,
      steps: [
        { tool: 'read_file', args: { path: 'package.json' }, result: '{"name":"app"}' },
        ...Array.from({ length: 6 }, () => ({ tool: 'run_tests', args: { filter: 'auth' }, error: 'TestFailure' })),
      ],
      findings: [{ detector: 'retry_storm', severity: 'warning', from: 1, to: 6, message: 'run_tests failed 6 times in a row' }],
    },
    // stuck: the same search, the same empty result, nine times: an expensive model, over budget
    {
      service: 'research-svc', agent: 'researcher', model: 'claude-sonnet-4-5', provider: 'anthropic', start: minutesAgo(now, 3),
      costUsd: 0.9, inputTokens: 40_000, outputTokens: 800, llmMs: 300,
      steps: Array.from({ length: 9 }, () => ({ tool: 'search_web', args: { q: 'loopwatch pricing' }, result: searchResult })),
      findings: [{ detector: 'stuck', severity: 'critical', from: 0, to: 8, message: 'search_web returned the same result 9 times for the same arguments' }],
    },
    // oscillation: open_page / go_back, cheap
    {
      service: 'browser-svc', agent: 'planner', model: 'gpt-4o-mini', provider: 'openai', start: minutesAgo(now, 2), costUsd: 0.002, llmMs: 200,
      steps: Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? { tool: 'open_page', args: { url: 'https://example.com/a' }, result: '<html>a</html>' } : { tool: 'go_back', args: {}, result: '<html>home</html>' })),
      findings: [{ detector: 'oscillation', severity: 'warning', from: 0, to: 7, message: 'open_page, go_back repeated 4 times' }],
    },
    // today's gpt-4o sessions fail far more often than its trailing week (>= 50 calls today):
    // the degradation case, spread over the last hour or, early in a UTC day, its minutes so far
    ...Array.from({ length: 10 }, (_, k): SessionSpec => ({
      service: 'coder-svc', agent: 'coder', model: 'gpt-4o', provider: 'openai', start: todaySpread(now, 58, k, 11), llmMs: 1900,
      steps: [
        { tool: 'read_file', args: { path: `src/x${k}.ts` }, result: `x${k}` },
        { tool: 'apply_patch', args: { file: `src/x${k}.ts` }, error: 'PatchConflict' },
        { tool: 'read_file', args: { path: `src/y${k}.ts` }, result: `y${k}` },
        { tool: 'write_file', args: { path: `src/y${k}.ts`, content: 'y' }, error: 'FileLocked' },
        { tool: 'list_dir', args: { path: `src/${k}` }, result: '[]' },
        { tool: 'run_tests', args: { filter: `x${k}` }, result: '{"passed":1}' },
      ],
    })),
  ];
}

export function degradationFinding(now = new Date()): FindingRow {
  const ts = now.toISOString().replace('T', ' ').replace('Z', '');
  const day = new Date(now);
  day.setUTCHours(0, 0, 0, 0);
  return {
    finding_id: createHash('sha256').update(`degradation|gpt-4o|${day.toISOString()}`).digest('hex').slice(0, 32),
    version: 1, detector: 'degradation', severity: 'warning', detected_at: ts,
    session_id: '', trace_id: '', service: 'coder-svc', agent: 'coder', model: 'gpt-4o', tools: [],
    first_span_id: '', last_span_id: '', first_ts: day.toISOString().replace('T', ' ').replace('Z', ''), last_ts: ts,
    repeats: 0, wasted_calls: 0, wasted_tokens: 0, wasted_cost_usd: 0, wasted_time_ns: '0',
    message: 'tool-call error rate 67% today vs 25% over the trailing 7 days',
    details: JSON.stringify({ metric: 'tool_error_rate', today: 0.67, baseline: 0.25 }),
  };
}

// ---------------------------------------------------------------------------------------
// The detector engine, when it exists (written in parallel in collector/src/detect/).

const here = dirname(fileURLToPath(import.meta.url));
export const runDetectorsPath = join(here, '..', '..', 'collector', 'src', 'detect', 'run-detectors.ts');

export function detectorEngineAvailable(): boolean {
  return existsSync(runDetectorsPath);
}

interface DetectorEngine {
  runDetectors(client: TestCollector['collector']['store']['client'], opts?: { full?: boolean }): Promise<{ findings: number; errors: Record<string, string> }>;
}

/** Runs the detector engine over every session; throws when a detector failed. */
export async function runDetectorEngine(tc: TestCollector): Promise<number> {
  const engine = (await import(pathToFileURL(runDetectorsPath).href)) as DetectorEngine;
  const result = await engine.runDetectors(tc.collector.store.client, { full: true });
  if (Object.keys(result.errors).length > 0) throw new Error(`detectors failed: ${JSON.stringify(result.errors)}`);
  return result.findings;
}

/** The looping data set with its findings and loop spans: from the detector engine when it
 * exists (preferred), else written here the way the engine writes them
 * (LOOPWATCH_GRAFANA_TEST_SEEDED_FINDINGS=1 forces the latter). */
export async function seedLoops(tc: TestCollector, now = new Date()): Promise<'engine' | 'seeded'> {
  const built = await sendSessions(tc, loopingSessions(now));
  if (detectorEngineAvailable() && process.env.LOOPWATCH_GRAFANA_TEST_SEEDED_FINDINGS !== '1') {
    await runDetectorEngine(tc);
    return 'engine';
  }
  await insertFindings(tc, [...findingsFor(built, now), degradationFinding(now)]);
  await writeLoopSpans(tc);
  return 'seeded';
}
