// The instrumentation in an agent process next to other OpenTelemetry code and other copies of
// itself (a review reproduced each): a tracer provider the application registered before or after
// the import is said on stderr (the API keeps the first and refuses the other, silently); a second
// copy of the package's API (a dependency that traces its own tools) is guarded by the guard the
// first copy enabled; the import leaves the process's OTEL_* variables alone (its child processes
// inherit them); an endpoint that is not a URL is said with where spans go instead; and the
// reason the collector gives for refusing spans (a protobuf Status) is shown. Real agent
// processes, the real SDK and exporter, a real collector.
import { execFile } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { propagation, ROOT_CONTEXT, trace, TraceFlags } from '@opentelemetry/api';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { hashKey } from '../../collector/src/auth.js';
import { encodeRpcStatus } from '../../collector/src/ingest/otlp-proto.js';
import { packageRoot } from '../../collector/src/paths.js';
import { exportUrlFromEnv, propagatorFromEnv, statusMessage } from '../../instrumentation/src/sdk.js';
import { assertBuilt } from '../cli/helpers.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

// a collector that takes ingest keys: the agents send theirs, but one
let tc: TestCollector;
beforeAll(async () => {
  assertBuilt();
  tc = await startTestCollector({ detect: { enabled: false }, auth: { ingestKeyHashes: [hashKey('the-right-key')] } });
});
afterAll(async () => {
  await tc?.close();
});
const KEY = 'Authorization=Bearer%20the-right-key';

interface Run { code: number | null; stdout: string; stderr: string }

function run(script: string, env: Record<string, string | undefined> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, ['--input-type=module', '-e', script], {
      cwd: packageRoot,
      env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: tc.url, OTEL_EXPORTER_OTLP_HEADERS: KEY, LOOPWATCH_GUARD: undefined, LOOPWATCH_SESSION_ID: undefined, OTEL_LOG_LEVEL: undefined, OTEL_METRICS_EXPORTER: undefined, OTEL_LOGS_EXPORTER: undefined, ...env },
      timeout: 30_000,
    }, (_err, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }));
  });
}

const OWN_PROVIDER = `
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
const memory = new InMemorySpanExporter();
const registerOwn = () => new NodeTracerProvider({ spanProcessors: [new SimpleSpanProcessor(memory)] }).register();
`;

async function storedCalls(session: string): Promise<number> {
  await tc.collector.flush();
  const [row] = await tc.rows<{ n: number }>('SELECT toUInt32(count()) AS n FROM agent_tool_calls FINAL WHERE session_id = {s:String}', { s: session });
  return row!.n;
}

describe('next to an application\'s own OpenTelemetry setup', () => {
  it('a provider registered before the import is said: it gets the spans, Loopwatch exports none', async () => {
    const r = await run(`${OWN_PROVIDER}
registerOwn();
const { loopwatch, traceTool, withSession } = await import('loopwatch/instrumentation');
const read = traceTool('read_file', () => 'x');
withSession('coexist-before', () => read({ path: 'a' }));
await loopwatch().flush();
process.stdout.write(memory.getFinishedSpans().length + ' spans in the own provider\\n');
`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('1 spans in the own provider\n');
    expect(r.stderr).toContain("[loopwatch] an OpenTelemetry tracer provider was registered before Loopwatch's: it gets the spans, and Loopwatch exports none. To keep the application's own setup, set LOOPWATCH_INSTRUMENTATION=off");
    expect(await storedCalls('coexist-before')).toBe(0);
  });

  it('a provider registered after the import is said: it is refused, and the spans go to the collector', async () => {
    const r = await run(`${OWN_PROVIDER}
const { loopwatch, traceTool, withSession } = await import('loopwatch/instrumentation');
registerOwn();
const read = traceTool('read_file', () => 'x');
withSession('coexist-after', () => read({ path: 'a' }));
await loopwatch().flush();
process.stdout.write(memory.getFinishedSpans().length + ' spans in the own provider\\n');
`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('0 spans in the own provider\n');
    expect(r.stderr).toContain("[loopwatch] an OpenTelemetry tracer provider registered after Loopwatch's was refused: its spans go to the Loopwatch collector, and its own exporters get none.");
    expect(await storedCalls('coexist-after')).toBe(1);
  });

  it('the application\'s diagnostics logger stays its own, before and after the import; a late provider is said whatever OTEL_LOG_LEVEL', async () => {
    const r = await run(`${OWN_PROVIDER}
import { diag, DiagLogLevel } from '@opentelemetry/api';
const got = [];
diag.setLogger({ error: (m) => got.push('error ' + m), warn: (m) => got.push('warn ' + m), info() {}, debug() {}, verbose() {} }, DiagLogLevel.WARN);
const { loopwatch } = await import('loopwatch/instrumentation');
diag.warn('after the import');
registerOwn();
process.stdout.write(got.filter((m) => !m.includes('duplicate registration')).join('|') + '\\n');
`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('warn after the import\n');
    expect(r.stderr).toContain("[loopwatch] an OpenTelemetry tracer provider registered after Loopwatch's was refused");
    expect(r.stderr).not.toContain('overwrite');
    // with OTEL_LOG_LEVEL=none (the diagnostics silenced, as the Node SDK silences them), it is still said
    const quiet = await run(`${OWN_PROVIDER}
await import('loopwatch/instrumentation');
registerOwn();
`, { OTEL_LOG_LEVEL: 'none' });
    expect(quiet.stderr).toContain("[loopwatch] an OpenTelemetry tracer provider registered after Loopwatch's was refused");
  });

  it('an application that puts its own provider in Loopwatch\'s place (trace.disable()) is not told a later one went to Loopwatch', async () => {
    const r = await run(`${OWN_PROVIDER}
import { trace } from '@opentelemetry/api';
await import('loopwatch/instrumentation');
trace.disable();
registerOwn(); // taken: the application's provider is the one in place now
registerOwn(); // refused, in favour of the application's
`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain('[loopwatch]');
  });

  it('alone, nothing is said, and the OTEL_* variables child processes inherit are left as they were', async () => {
    const r = await run(`
const { loopwatch, traceTool, withSession } = await import('loopwatch/instrumentation');
const read = traceTool('read_file', () => 'x');
withSession('coexist-alone', () => read({ path: 'a' }));
await loopwatch().flush();
process.stdout.write(String(process.env.OTEL_METRICS_EXPORTER) + ' ' + String(process.env.OTEL_LOGS_EXPORTER) + '\\n');
`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('undefined undefined\n');
    expect(r.stderr).toBe('');
    expect(await storedCalls('coexist-alone')).toBe(1);
  });
});

describe('a second copy of the package in the process', () => {
  it('LOOPWATCH_GUARD=halt stops a loop in tools the second copy traces', async () => {
    // a second instance of the API module (another URL), as a dependency's own copy of the package would load
    const second = `${pathToFileURL(join(packageRoot, 'dist/instrumentation/src/api.js')).href}?copy=2`;
    const r = await run(`
const { loopwatch, withSession } = await import('loopwatch/instrumentation');
const copy = await import(${JSON.stringify(second)});
const read = copy.traceTool('read_file', () => 'same');
let n = 0;
await withSession('coexist-copies', async () => {
  try { for (n = 1; n <= 8; n++) read({ path: 'a.ts' }); process.stdout.write('not halted\\n'); }
  catch (e) { process.stdout.write(e.name + ' at call ' + n + '\\n'); }
});
await loopwatch().flush();
`, { LOOPWATCH_GUARD: 'halt' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^LoopDetectedError at call [3-5]\n$/);
  });
});

describe('where spans go, and why the collector refused them', () => {
  it('an endpoint that is not a URL is passed over as the exporter passes it over, and said', () => {
    const said: string[] = [];
    const report = (m: string) => said.push(m);
    expect(exportUrlFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4400/' }, report)).toBe('http://127.0.0.1:4400/v1/traces');
    expect(exportUrlFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4400 ' }, report)).toBe('http://127.0.0.1:4400/v1/traces');
    expect(exportUrlFromEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:1/v1/traces', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4400' }, report)).toBe('http://c:1/v1/traces');
    expect(said).toEqual([]);
    expect(exportUrlFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: '127.0.0.1:4400' }, report)).toBe('http://localhost:4318/v1/traces');
    expect(exportUrlFromEnv({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'not a url', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4400' }, report)).toBe('http://127.0.0.1:4400/v1/traces');
    expect(exportUrlFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'localhost:4318' }, report)).toBe('localhost:4318/v1/traces');
    expect(said).toEqual([
      'OTEL_EXPORTER_OTLP_ENDPOINT="127.0.0.1:4400" not used: not a URL (such as http://127.0.0.1:4318); spans go to http://localhost:4318/v1/traces',
      'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="not a url" not used: not a URL (such as http://127.0.0.1:4318); spans go to http://127.0.0.1:4400/v1/traces',
      'spans cannot be exported to localhost:4318/v1/traces: not an http:// or https:// URL (such as http://127.0.0.1:4318)',
    ]);
  });

  it('OTEL_PROPAGATORS: tracecontext alone sends no baggage on (Loopwatch sends the context to MCP servers); none, the default, and names it does not carry', () => {
    const ctx = propagation.setBaggage(
      trace.setSpanContext(ROOT_CONTEXT, { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: TraceFlags.SAMPLED }),
      propagation.createBaggage({ 'user.email': { value: 'a@b.c' } }),
    );
    const sent = (p: ReturnType<typeof propagatorFromEnv>) => {
      const carrier: Record<string, string> = {};
      p?.inject(ctx, carrier, { set: (c, k, v) => { (c as Record<string, string>)[k] = v; } });
      return Object.keys(carrier).sort();
    };
    const warned = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    try {
      expect(propagatorFromEnv({})).toBeUndefined(); // the SDK's default: trace context and baggage
      expect(propagatorFromEnv({ OTEL_PROPAGATORS: 'none' })).toBeNull();
      expect(sent(propagatorFromEnv({ OTEL_PROPAGATORS: 'tracecontext' }))).toEqual(['traceparent']);
      expect(sent(propagatorFromEnv({ OTEL_PROPAGATORS: ' tracecontext , baggage ' }))).toEqual(['baggage', 'traceparent']);
      expect(warned).not.toHaveBeenCalled();
      expect(sent(propagatorFromEnv({ OTEL_PROPAGATORS: 'b3,tracecontext,b3' }))).toEqual(['traceparent']);
      expect(warned).toHaveBeenLastCalledWith("[loopwatch] OTEL_PROPAGATORS: b3 not available with Loopwatch's SDK, using tracecontext; for others, set up your own SDK with LOOPWATCH_INSTRUMENTATION=off");
      expect(propagatorFromEnv({ OTEL_PROPAGATORS: 'b3,jaeger' })).toBeUndefined(); // none carried: the default, as before the variable was read
      expect(warned).toHaveBeenLastCalledWith(expect.stringMatching(/b3, jaeger not available with Loopwatch's SDK, using the default, tracecontext and baggage/));
    } finally {
      warned.mockRestore();
    }
  });

  it('the message of a protobuf or JSON Status, whatever its length', () => {
    const asExporterHasIt = (code: number, message: string) => Buffer.from(encodeRpcStatus(code, message)).toString();
    expect(statusMessage(asExporterHasIt(16, 'missing or invalid API key'))).toBe('missing or invalid API key');
    const long = `too large: ${'x'.repeat(300)} ü`;
    expect(statusMessage(asExporterHasIt(8, long))).toBe(long);
    expect(statusMessage('{"code":16,"message":"from JSON"}')).toBe('from JSON');
    expect(statusMessage('<html>bad gateway</html>')).toBeUndefined();
  });

  it('spans go where the message says: an endpoint with a space around it is the endpoint (the exporter is given the URL)', async () => {
    const r = await run(`
const { loopwatch, traceTool, withSession } = await import('loopwatch/instrumentation');
const read = traceTool('read_file', () => 'x');
withSession('coexist-space', () => read({ path: 'a' }));
await loopwatch().flush();
`, { OTEL_EXPORTER_OTLP_ENDPOINT: ` ${tc.url} ` });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(await storedCalls('coexist-space')).toBe(1);
  });

  it('an agent without the ingest key is told why the collector refused its spans', async () => {
    const r = await run(`
const { loopwatch, traceTool, withSession } = await import('loopwatch/instrumentation');
const read = traceTool('read_file', () => 'x');
withSession('coexist-401', () => read({ path: 'a' }));
await loopwatch().flush();
`, { OTEL_EXPORTER_OTLP_HEADERS: undefined });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('401 Unauthorized: missing or invalid API key: send "Authorization: Bearer <key>" with an ingest key');
  });
});
