// Spans the collector rejects one by one in an export it takes (an OTLP partial success: 200
// with rejected_spans and a reason, collector/src/ingest/span-rows.ts) are said on stderr: the
// first rejection once, with the count and the collector's reason, later ones counted and said at
// exit. The OpenTelemetry exporter counts such an export a success and says it only through its
// diagnostics, so an agent lost spans without a word. Real agent processes, the real SDK and
// exporter, a real collector (that takes ingest keys: the key must not show).
import { execFile } from 'node:child_process';
import { OTLPExporterBase } from '@opentelemetry/otlp-exporter-base';
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http';
import { JsonTraceSerializer, ProtobufTraceSerializer, TraceExporterMetricsHelper } from '@opentelemetry/otlp-transformer';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashKey } from '../../collector/src/auth.js';
import { packageRoot } from '../../collector/src/paths.js';
import { reportingRejections, shownReason } from '../../instrumentation/src/partial-success.js';
import { assertBuilt } from '../cli/helpers.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

let tc: TestCollector;
beforeAll(async () => {
  assertBuilt();
  tc = await startTestCollector({ detect: { enabled: false }, auth: { ingestKeyHashes: [hashKey('the-right-key')] } });
});
afterAll(async () => {
  await tc?.close();
});

interface Run { code: number | null; stdout: string; stderr: string }

function run(script: string, env: Record<string, string | undefined> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, ['--input-type=module', '-e', script], {
      cwd: packageRoot,
      env: {
        ...process.env,
        OTEL_EXPORTER_OTLP_ENDPOINT: tc.url,
        OTEL_EXPORTER_OTLP_HEADERS: 'Authorization=Bearer%20the-right-key',
        // the SDK keeps 128 attributes a span by default: these spans carry 300, past the collector's 256
        OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT: '1000',
        OTEL_LOG_LEVEL: undefined,
        LOOPWATCH_GUARD: undefined,
        LOOPWATCH_SESSION_ID: undefined,
        ...env,
      },
      timeout: 30_000,
    }, (_err, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }));
  });
}

/** One export: four tool calls and a span over the collector's attribute limit; then two spans older than the retention, and a call. */
const AGENT = (session: string) => `
import { trace } from '@opentelemetry/api';
const { loopwatch, traceTool, withSession } = await import('loopwatch/instrumentation');
const read = traceTool('read_file', (a) => 'contents of ' + a.path);
const tracer = trace.getTracer('agent');
const counts = () => JSON.stringify({ rejected: loopwatch().rejectedSpans?.(), failed: loopwatch().failedSpans() });
await withSession('${session}', async () => {
  for (let i = 0; i < 4; i++) await read({ path: 'f' + i });
  const wide = tracer.startSpan('wide');
  for (let i = 0; i < 300; i++) wide.setAttribute('k' + i, i);
  wide.end();
});
await loopwatch().flush();
process.stdout.write(counts() + '\\n');
await withSession('${session}', async () => {
  for (let i = 0; i < 2; i++) tracer.startSpan('old', { startTime: Date.now() - 60 * 86_400_000 }).end();
  await read({ path: 'late' });
});
await loopwatch().flush();
process.stdout.write(counts() + '\\n');
`;

/** What the collector says of the span (its 300 attributes and the session's id, stamped by the instrumentation). */
const REASON = "span 'wide' has 301 attributes, more than the limit of 256";

async function storedCalls(session: string): Promise<number> {
  await tc.collector.flush();
  const [row] = await tc.rows<{ n: number }>('SELECT toUInt32(count()) AS n FROM agent_tool_calls FINAL WHERE session_id = {s:String}', { s: session });
  return row!.n;
}

const loopwatchLines = (stderr: string): string[] => stderr.split('\n').filter((l) => l.startsWith('[loopwatch]'));

describe('spans the collector rejects in an export it takes', () => {
  it('are said once on stderr, with the count and the collector\'s reason, without OTEL_LOG_LEVEL; later ones are counted and said at exit', async () => {
    const r = await run(AGENT('rejected-said'));
    expect(r.code, r.stderr).toBe(0);
    const lines = loopwatchLines(r.stderr);
    const said = lines.filter((l) => l.includes('the collector rejected'));
    expect(said, r.stderr).toEqual([
      `[loopwatch] the collector rejected 1 span of an export to ${tc.url}/v1/traces: ${REASON} (only those spans are lost; later rejections are counted, and said at exit)`,
    ]);
    expect(r.stdout.trim().split('\n').map((l) => JSON.parse(l))).toEqual([{ rejected: 1, failed: 0 }, { rejected: 3, failed: 0 }]);
    // the two old spans of the second export are not said then, but counted, and the count said at exit
    expect(lines.filter((l) => !said.includes(l))).toEqual(["[loopwatch] 3 spans rejected by the collector (the first rejection's reason is said above)"]);
    expect(r.stderr).not.toContain('the-right-key');
    // nothing of the diagnostics turned on
    expect(r.stderr).not.toContain('Partial Success');
    // the export's other spans were stored
    expect(await storedCalls('rejected-said')).toBe(5);
  });

  it('an application\'s diagnostics logger still gets the exporter\'s own message, and stays its own', async () => {
    const r = await run(`
import { diag, DiagLogLevel } from '@opentelemetry/api';
const got = [];
diag.setLogger({ error: (...a) => got.push('error ' + a.join(' ')), warn: (...a) => got.push('warn ' + a.join(' ')), info() {}, debug() {}, verbose() {} }, DiagLogLevel.WARN);
${AGENT('rejected-diag')}
process.stdout.write(JSON.stringify(got) + '\\n');
`);
    expect(r.code, r.stderr).toBe(0);
    const got = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as string[];
    const partial = got.filter((m) => m.startsWith('warn Received Partial Success response:'));
    // one per export with rejections, as the exporter says them
    expect(partial.length).toBeGreaterThanOrEqual(2);
    expect(partial.some((m) => m.includes(REASON))).toBe(true);
    expect(loopwatchLines(r.stderr).filter((l) => l.includes('the collector rejected'))).toHaveLength(1);
    expect(r.stderr).not.toContain('Partial Success');
    expect(await storedCalls('rejected-diag')).toBe(5);
  });

  it('the exporter decodes protobuf and JSON answers alike: 1 span and the reason from either', async () => {
    const got: Record<string, { spans: number; message: string }[]> = {};
    for (const [encoding, serializer] of [['protobuf', ProtobufTraceSerializer], ['json', JsonTraceSerializer]] as const) {
      const seen: { spans: number; message: string }[] = (got[encoding] = []);
      const options = convertLegacyHttpOptions({ url: `${tc.url}/v1/traces`, headers: { Authorization: 'Bearer the-right-key' } }, 'TRACES', 'v1/traces', {
        'Content-Type': encoding === 'json' ? 'application/json' : 'application/x-protobuf',
      });
      const exporter = new OTLPExporterBase(
        createOtlpHttpExportDelegate(options, reportingRejections(serializer, (spans, message) => seen.push({ spans, message })), 'otlp_http_span_exporter', TraceExporterMetricsHelper, undefined),
      );
      const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)], spanLimits: { attributeCountLimit: 1000 } });
      const tracer = provider.getTracer('encodings');
      tracer.startSpan('fine').end();
      const wide = tracer.startSpan('wide');
      for (let i = 0; i < 300; i++) wide.setAttribute(`k${i}`, i);
      wide.end();
      await provider.shutdown();
    }
    const reason = "span 'wide' has 300 attributes, more than the limit of 256";
    expect(got).toEqual({ protobuf: [{ spans: 1, message: reason }], json: [{ spans: 1, message: reason }] });
  });
});

describe('the collector\'s reason as said', () => {
  it('is one line of at most 300 characters, without the values of the headers sent', () => {
    expect(shownReason('bad key Bearer lw_abcdefgh123 in\nspan\u001b[31m x', ['Bearer lw_abcdefgh123', 'lw_abcdefgh123'])).toBe('bad key [redacted] in span [31m x');
    const long = shownReason('x'.repeat(299) + '😀' + 'y'.repeat(50));
    expect(long).toBe(`${'x'.repeat(299)}…`);
  });
});
