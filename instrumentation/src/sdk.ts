// Starts OpenTelemetry tracing (the Node SDK's tracer provider, not the whole NodeSDK: that one
// also loads the metrics, logs, gRPC, Zipkin and other exporters and propagators, 0.6 s of start-up
// an agent would pay for nothing) with an OTLP/HTTP protobuf exporter pointed at the
// collector. Standard variables apply (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES); the default endpoint is a local collector on 4318.
import { createNoopMeter, diag, DiagConsoleLogger, trace, TraceFlags, type Context, type Meter, type MeterProvider, type TextMapPropagator } from '@opentelemetry/api';
import { CompositePropagator, diagLogLevelFromString, ExportResultCode, getNumberFromEnv, W3CBaggagePropagator, W3CTraceContextPropagator, type ExportResult } from '@opentelemetry/core';
import type { Agent as HttpAgent } from 'node:http';
import { basename } from 'node:path';
import type { Duplex } from 'node:stream';
import { OTLPExporterBase } from '@opentelemetry/otlp-exporter-base';
import { convertLegacyHttpOptions, createOtlpHttpExportDelegate } from '@opentelemetry/otlp-exporter-base/node-http';
import { ProtobufTraceSerializer, TraceExporterMetricsHelper } from '@opentelemetry/otlp-transformer';
import { defaultResource, detectResources, envDetector, hostDetector, processDetector, resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { BatchSpanProcessor, type BufferConfig, type ReadableSpan, type Span, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ATTR, GENAI_MODEL_CALL_OPERATIONS } from './attributes.js';
import { preciseNow, registeredProvider } from './api.js';
import { sessionFrom } from './context.js';
import { AiSdkSpanProcessor } from './integrations/ai-sdk.js';
import { LlmCallTap } from './llm-calls.js';
import { spanCount, warn, warnOnce } from './warn.js';
import { failedSpansOf, splitOnTooLarge } from './split-export.js';
import { headerSecrets, reportingRejections, shownReason } from './partial-success.js';

/** Whether a span names its own agent (a sub-agent's invoke_agent span, an AI SDK call's functionId). */
const namesAgent = (span: Span): boolean => {
  const a = (span as { attributes?: Record<string, unknown> }).attributes ?? {};
  return !!a[ATTR.agentName] || !!a['ai.telemetry.functionId'];
};

/**
 * Stamps session and agent from the context on every span, whichever library started it. A
 * tool or model call with neither a session nor a parent span is a trace of its own, and the
 * trace is then the session: no loop across calls can be seen. That is said once, on stderr.
 */
export class SessionSpanProcessor implements SpanProcessor {
  private warned = false;
  constructor(private readonly report: (message: string) => void = warn) {}
  onStart(span: Span, parentContext: Context): void {
    const s = sessionFrom(parentContext);
    if (!s) {
      if (!this.warned && isLoneAgentCall(span, parentContext)) {
        this.warned = true;
        this.report(
          `"${span.name}" runs outside a session and outside any span: each such call is a trace of its own, so loops across calls cannot be found. ` +
            'Run the agent inside withSession({ sessionId }), or set LOOPWATCH_SESSION_ID for the process.',
        );
      }
      return;
    }
    span.setAttribute(ATTR.conversationId, s.sessionId);
    // a span that names its own agent keeps it (an AI SDK call's functionId, a sub-agent's invoke_agent span)
    if (s.agent && !namesAgent(span)) span.setAttribute(ATTR.agentName, s.agent);
  }
  onEnd(_span: ReadableSpan): void {}
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * Gives spans that other libraries start without a time (the AI SDK's, most instrumentations')
 * a start to the microsecond instead of the SDK's Date.now(), a whole millisecond. The order of a
 * session's calls is read from their starts: a fast tool call and the model call after it
 * started in the same millisecond, and the tokens of the next model call were charged to the
 * tool call (13 of 20 sessions in a review). The end stays the start plus the measured duration.
 * Spans given a start time keep it; the SDK's own flag says which were not (if the SDK stops
 * exposing it, nothing is changed). Runs first, before any processor reads the start.
 */
export class PreciseStartProcessor implements SpanProcessor {
  onStart(span: Span): void {
    const s = span as unknown as { startTime: [number, number]; _startTimeProvided?: boolean; _performanceStartTime?: unknown };
    if (s._startTimeProvided !== false) return;
    // the clock of Loopwatch's own spans (traceTool, LLM calls): Date.now() and the monotonic
    // clock drift apart, so a comparison with the SDK's whole millisecond would skip some. The
    // instant is the one the SDK measures the span's duration from (taken as it made the span):
    // the time since, up to this call, is not added to its end (a pause there, a garbage
    // collection under load, ended a model call after the tool call it asked for had started)
    const perfStart = s._performanceStartTime;
    const now = typeof perfStart === 'number' ? performance.timeOrigin + perfStart : preciseNow();
    const secs = Math.floor(now / 1000);
    s.startTime = [secs, Math.min(Math.round((now - secs * 1000) * 1e6), 999_999_999)];
  }
  onEnd(_span: ReadableSpan): void {}
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

/**
 * Counts what the exporter has yet to finish: spans ended (sampled ones, which the batch
 * processor queues) less spans whose export completed, successfully or not. What a process that
 * exits at once leaves behind (exit.ts reports it). Also says, once, that exports fail: without
 * a diagnostic logger the SDK drops them silently, and an agent pointed at the wrong address
 * would send nothing without anyone knowing.
 */
class ExportTally implements SpanProcessor {
  ended = 0;
  /** Spans handed to the exporter, and those whose export completed. */
  handed = 0;
  settled = 0;
  failed = 0;
  /** Spans the batch processor dropped because its queue was full. */
  dropped = 0;
  /** Spans of exports the collector took that it rejected (OTLP partial success). */
  rejected = 0;
  private waiters: { upTo: number; resolve: () => void }[] = [];
  constructor(
    private readonly onFirstFailure: (error: Error | undefined) => void,
    private readonly onFirstDrop: () => void,
  ) {}
  onDrop(n: number): void {
    if (this.dropped === 0) this.onFirstDrop();
    this.dropped += n;
  }
  /** Shut down with the provider: the batch processor takes no span after that, so none is counted (a flush would wait for it). */
  private closed = false;
  onStart(): void {}
  onEnd(span: ReadableSpan): void {
    if ((span.spanContext().traceFlags & TraceFlags.SAMPLED) === 0) return;
    if (!this.closed) this.ended++;
    else warnOnce('ended-after-shutdown', `a span ended after Loopwatch shut down ('${span.name}'): it is not exported (end spans before loopwatch()?.shutdown())`);
  }
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
  /** Exports under way, with the batch processor's callback (see abandon()). */
  private inFlight = new Set<{ done: (result: ExportResult) => void }>();
  /** The exporter, reporting each finished export to the tally. */
  wrap(exporter: SpanExporter): SpanExporter {
    return {
      export: (spans: ReadableSpan[], done: (result: ExportResult) => void) => {
        this.handed += spans.length;
        const entry = { done };
        this.inFlight.add(entry);
        exporter.export(spans, (result) => {
          this.settled += spans.length;
          const failed = failedSpansOf(result, spans.length);
          if (failed > 0) {
            if (this.failed === 0) this.onFirstFailure(result.error);
            this.failed += failed;
          }
          this.waiters = this.waiters.filter((w) => (this.settled >= w.upTo ? (w.resolve(), false) : true));
          if (this.inFlight.delete(entry)) done(result);
        });
      },
      shutdown: () => exporter.shutdown(),
      forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
    };
  }
  /**
   * Tells the batch processor that the exports under way failed, while they go on (retried on
   * unreferenced timers): its timer for each export (30 s) would otherwise keep the process up.
   * Their spans stay pending until the exporter is done with them. The batch processor then goes
   * on to its next batch, so while the collector cannot be reached several exports can be retried
   * at once (the exporter's concurrency limit bounds them) where it waited for one.
   */
  abandon(): void {
    const entries = [...this.inFlight];
    this.inFlight.clear();
    for (const e of entries) e.done({ code: ExportResultCode.FAILED, error: new Error('the process is ending') });
  }
  pending(): number {
    return Math.max(0, this.ended - this.settled - this.dropped);
  }

  /**
   * Resolves once every span ended so far (less those dropped) has been through the exporter: the
   * batch processor's forceFlush does not wait for an export its timer started, nor for a full
   * batch it took from its queue that waits for the resource's detected attributes before it
   * reaches the exporter (counting only what had been handed, a flush after exactly 512 calls
   * resolved at once and the process exited without them). At most the batch processor's export
   * timeout: a span that never reaches the exporter must not hold an await forever.
   */
  exportsDone(): Promise<void> {
    const upTo = Math.max(this.handed, this.ended - this.dropped);
    if (this.settled >= upTo) return Promise.resolve();
    return new Promise((resolve) => {
      const waiter = { upTo, resolve };
      this.waiters.push(waiter);
      setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve();
      }, exportTimeoutMs()).unref();
    });
  }
}

/**
 * The batch processor drops a span when its queue is full (OTEL_BSP_MAX_QUEUE_SIZE, 2048): an
 * agent that keeps calling while the collector is down or slow to answer. It says so only in its
 * self-observability metric (otel.sdk.processor.span.processed with error.type queue_full), so
 * it gets a meter of its own that records that one count. (The option is marked experimental;
 * without it drops are not counted, and would be reported as spans not sent before exit.)
 */
function queueDropMeter(onDrop: (n: number) => void): MeterProvider {
  const noop = createNoopMeter();
  const meter: Meter = Object.create(noop) as Meter;
  meter.createCounter = (name, options) =>
    name === 'otel.sdk.processor.span.processed'
      ? { add: (n, attributes) => (attributes?.['error.type'] === 'queue_full' ? onDrop(n) : undefined) }
      : noop.createCounter(name, options);
  return { getMeter: () => meter };
}

/** A batch processor setting as the processor reads it (the SDK's getNumberFromEnv), a whole number above 0, else its default. */
function batchSetting(name: 'OTEL_BSP_EXPORT_TIMEOUT' | 'OTEL_BSP_MAX_QUEUE_SIZE', fallback: number): number {
  const n = getNumberFromEnv(name);
  return n !== undefined && Number.isInteger(n) && n > 0 ? n : fallback;
}

/** The batch processor's export timeout (OTEL_BSP_EXPORT_TIMEOUT, 30 s). */
const exportTimeoutMs = (): number => batchSetting('OTEL_BSP_EXPORT_TIMEOUT', 30_000);
const maxQueueSize = (): number => batchSetting('OTEL_BSP_MAX_QUEUE_SIZE', 2048);

/** A GenAI tool or model call (gen_ai.operation.name set when it started) with no parent span. */
function isLoneAgentCall(span: Span, parentContext: Context): boolean {
  if (trace.getSpan(parentContext)) return false;
  const op = (span as unknown as { attributes?: Record<string, unknown> }).attributes?.[ATTR.operationName];
  return op === 'execute_tool' || GENAI_MODEL_CALL_OPERATIONS.has(op as string);
}

export interface StartOptions {
  /** Collector base URL (…/v1/traces is appended); default from OTEL_EXPORTER_OTLP_ENDPOINT or http://localhost:4318. */
  endpoint?: string;
  serviceName?: string;
  /**
   * Replace the exporter (e.g. the OTLP/JSON one). Spans a collector rejects in an export it took
   * (OTLP partial success) are then said only as that exporter says them (OpenTelemetry's: through
   * its diagnostics).
   */
  exporter?: SpanExporter;
  /** Extra span processors, after the session stamper (and the AI SDK span processor) and before the exporter. */
  spanProcessors?: SpanProcessor[];
  /**
   * The OTLP exporter's sockets and retry timers do not keep the process alive, so a process
   * whose work is done does not stay up retrying an unreachable collector (up to the exporter's
   * 10 s timeout): the caller bounds the wait for the last spans instead (`flushOnExit`, which the
   * import installs, waits at most LOOPWATCH_EXIT_FLUSH_MS). Only for the exporter made here.
   */
  letProcessEnd?: boolean;
}

export interface LoopwatchHandle {
  /** The registered tracer provider (the Node SDK's, without its metrics, logs and other exporters). */
  provider: NodeTracerProvider;
  /**
   * Exports everything pending now. Never rejects: a failed export is reported on stderr (once)
   * and counted in failedSpans(), so telemetry cannot fail the agent.
   */
  flush(): Promise<void>;
  /** Flushes and stops the SDK; never rejects either, and stopWaiting() lets it resolve as it does flush(). */
  shutdown(): Promise<void>;
  /** Spans ended and not yet through the exporter (exported or failed). */
  pendingSpans(): number;
  /** Spans whose export failed (after the exporter's own retries). */
  failedSpans(): number;
  /** Spans dropped before export because the export queue was full. */
  droppedSpans(): number;
  /**
   * Spans of exports the collector took that it rejected (an OTLP partial success: more
   * attributes than its limit, a start outside the retention); not in failedSpans(). Counted for
   * the exporter Loopwatch makes, not for one given as `exporter`.
   */
  rejectedSpans(): number;
  /**
   * Resolves the flushes and shutdowns under way without waiting for their exports any longer:
   * the process is ending (exit.ts gave up on an unreachable collector), and an application
   * awaiting flush() or shutdown() then goes on to its end instead of stopping at an unsettled await.
   */
  stopWaiting(): void;
  /** Whether a flush() or shutdown() is under way that stopWaiting() would let resolve. */
  awaited(): boolean;
}

function tracesUrl(endpoint: string): string {
  return endpoint.replace(/\/+$/, '') + '/v1/traces';
}

const DEFAULT_TRACES_URL = 'http://localhost:4318/v1/traces';

function isUrl(text: string): boolean {
  try {
    new URL(text);
    return true;
  } catch {
    return false;
  }
}

/**
 * Where spans are exported, by the standard variables (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, then
 * OTEL_EXPORTER_OTLP_ENDPOINT plus /v1/traces, then localhost:4318), given to the exporter as
 * its URL. A variable that is not a URL is passed over, as the exporter passes it over, and
 * said: the exporter says it only through OpenTelemetry's diagnostics (`127.0.0.1:4318` without
 * http:// sent every span to localhost:4318, and messages named the address never used).
 */
export function exportUrlFromEnv(env: NodeJS.ProcessEnv = process.env, report: (message: string) => void = warn): string {
  const passedOver: string[] = [];
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  let url: string | undefined;
  if (traces) {
    if (isUrl(traces)) url = traces;
    else passedOver.push(`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=${JSON.stringify(shownUrl(traces))}`);
  }
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  if (url === undefined && base) {
    const joined = tracesUrl(base);
    if (isUrl(joined)) url = joined;
    else passedOver.push(`OTEL_EXPORTER_OTLP_ENDPOINT=${JSON.stringify(shownUrl(base))}`);
  }
  url ??= DEFAULT_TRACES_URL;
  if (passedOver.length > 0) report(`${passedOver.join(' and ')} not used: not a URL (such as http://127.0.0.1:4318); spans go to ${shownUrl(url)}`);
  else if (!/^https?:$/.test(new URL(url).protocol)) report(`spans cannot be exported to ${shownUrl(url)}: not an http:// or https:// URL (such as http://127.0.0.1:4318)`);
  return url;
}

/**
 * The exporter's HTTP agents, as the standard variables make them (OTEL_EXPORTER_OTLP_CERTIFICATE,
 * _CLIENT_CERTIFICATE, _CLIENT_KEY), with an error listener on each socket. When the collector
 * answers before it has read the whole request (a 413 for a batch over its size limit) and closes
 * the connection, the exporter's socket can fail writing the rest after the request has let go
 * of it: an 'error' event nobody listens to, which Node turns into an uncaught exception that ends
 * the agent. The request still sees its own errors; only this one, with nobody left to tell, is
 * dropped (the export has already been reported as failed).
 */
function quietSocketAgents(unref: boolean): (protocol: string) => Promise<HttpAgent> {
  const fromEnv = convertLegacyHttpOptions({}, 'TRACES', 'v1/traces', {}).agentFactory;
  return async (protocol) => {
    const agent = await fromEnv(protocol);
    const connecting = agent as unknown as { createConnection: (...args: unknown[]) => Duplex & { unref(): void } };
    const create = connecting.createConnection;
    connecting.createConnection = function (this: unknown, ...args: unknown[]) {
      const socket = create.apply(this, args);
      socket.on('error', () => {});
      if (unref) socket.unref(); // see StartOptions.letProcessEnd
      return socket;
    };
    return agent;
  };
}

/**
 * The OTLP/HTTP protobuf span exporter, made as @opentelemetry/exporter-trace-otlp-proto's
 * OTLPTraceExporter makes itself (its public factory, with the same options, content type and
 * serializer: the standard OTEL_EXPORTER_OTLP_* variables apply as before), except that the
 * serializer also tells `onRejected` the spans a collector rejected in an export it took (an OTLP
 * partial success, which the exporter says only through its diagnostics: partial-success.ts).
 * `secrets` gets the values of the headers the exporter sends (an API key), which no message shows.
 */
function otlpProtoExporter(url: string, letProcessEnd: boolean, onRejected: (spans: number, message: string) => void, secrets: string[]): OTLPExporterBase<ReadableSpan[]> {
  const options = convertLegacyHttpOptions({ url, httpAgentOptions: quietSocketAgents(letProcessEnd) }, 'TRACES', 'v1/traces', { 'Content-Type': 'application/x-protobuf' });
  // what the exporter sends with the first export (it waits for them too), read once
  options.headers().then((headers) => void secrets.push(...headerSecrets(headers)), () => {});
  return new OTLPExporterBase(
    createOtlpHttpExportDelegate(options, reportingRejections(ProtobufTraceSerializer, onRejected), 'otlp_http_span_exporter', TraceExporterMetricsHelper, undefined),
  );
}

/**
 * The exporter's retries (after a refused connection, a 429 or a 503) wait on timers that keep
 * the process alive; these wait the same time but do not (StartOptions.letProcessEnd). The retry
 * is the exporter's own (@opentelemetry/otlp-exporter-base's RetryingTransport, reached through
 * its private fields): only the timer is unreferenced, and each attempt's failure is told to
 * `failedAttempt` (what the wait at the end reports when it gives up), with whether the collector
 * answered busy (429, 503) rather than could not be reached. If that shape is not found, retries
 * hold the process as before (tests/e2e/agent-process.test.ts notices).
 */
function unrefRetryTimers(exporter: SpanExporter, failedAttempt: (error: Error, busy: boolean) => void): void {
  type Attempt = { status?: string; error?: Error };
  type Send = (data: Uint8Array, timeoutMillis: number) => Promise<Attempt>;
  const retrying = (exporter as unknown as { _delegate?: { _transport?: { retry?: unknown; _transport?: { send?: Send } } } })._delegate?._transport;
  const inner = retrying?._transport;
  const send = inner?.send;
  if (typeof retrying?.retry !== 'function' || typeof send !== 'function') return;
  inner!.send = (data, timeoutMillis) =>
    send.call(inner, data, timeoutMillis).then((attempt) => {
      // a retryable answer (429, 503) comes without an error
      if (attempt.status !== 'success') failedAttempt(attempt.error ?? new Error('busy'), attempt.error === undefined);
      return attempt;
    });
  retrying.retry = (data: Uint8Array, timeoutMillis: number, inMillis: number) =>
    new Promise((resolve, reject) => {
      setTimeout(() => void inner!.send!(data, timeoutMillis).then(resolve, reject), inMillis).unref();
    });
}

/**
 * A URL as messages may show it: without user info or query (either can hold a password or a
 * token), which are marked as left out.
 */
export function shownUrl(url: string): string {
  try {
    const u = new URL(url);
    const hidden = u.username !== '' || u.password !== '' || u.search !== '' || u.hash !== '';
    u.username = '';
    u.password = '';
    u.search = '';
    u.hash = '';
    return hidden ? `${u.href} (credentials and query not shown)` : u.href;
  } catch {
    // not a URL the exporter could use either; what is before any @ or ? could still be a secret's
    return url.replace(/[?#].*$/s, '').replace(/^[^/]*\/\/[^/@]*@/, '');
  }
}

/**
 * The message of the google.rpc.Status a collector answers with (OTLP/HTTP: in the request's
 * encoding, so protobuf for this exporter, JSON for others), from the body as the exporter hands
 * it over: decoded as UTF-8. Protobuf: field 1 the code (a small varint), field 2 the message;
 * a length of 128 bytes or more decodes as U+FFFD and one more byte, and the text is read to
 * the end or to the next field's tag. Undefined for anything else (a proxy's page).
 */
export function statusMessage(body: string): string | undefined {
  try {
    const message = (JSON.parse(body) as { message?: unknown }).message;
    return typeof message === 'string' && message ? message : undefined;
  } catch {
    // not JSON
  }
  const m = /^(?:\x08[\x00-\x7f])?\x12(?:\ufffd)?[\x00-\x7f]([^\x00-\x08\x0e-\x1f]+)/.exec(body);
  return m ? m[1] : undefined;
}

/**
 * What the first failed export says: a collector that answered and refused (an HTTP status: its
 * message, which says why) is told apart from one that could not be reached.
 */
export function exportFailure(error: (Error & { code?: unknown; data?: unknown; busy?: boolean }) | undefined, target: string | undefined): string {
  const to = target ? ` to ${shownUrl(target)}` : '';
  if (error?.busy) return `the collector did not take spans${to}: it is busy (it answered 429 or 503, retry later)`;
  if (typeof error?.code === 'number') {
    const said = typeof error.data === 'string' ? statusMessage(error.data) : undefined;
    return `the collector refused spans${to}: ${error.code} ${error.message}${said ? `: ${said}` : ''}`;
  }
  // OTLP/HTTP sent to an HTTP/2-only port: the collector's OTLP/gRPC port
  if (error && /Expected HTTP\/|HTTP\/1\.1 protocol/i.test(error.message)) {
    return `cannot export spans${to}: the server does not answer HTTP/1.1 (${error.message}): is it the OTLP/gRPC port? OTLP/HTTP goes to the collector's HTTP port (4318 by default; OTEL_EXPORTER_OTLP_ENDPOINT)`;
  }
  return `cannot export spans${to}: ${error?.message ?? 'export failed'} (is the collector running? OTEL_EXPORTER_OTLP_ENDPOINT sets where it is)`;
}

/**
 * The agent's resource, as the Node SDK makes it: the defaults (service.name unknown_service:…,
 * the SDK's name and version), then what the env, process and host detectors find
 * (OTEL_RESOURCE_ATTRIBUTES among them; OTEL_NODE_RESOURCE_DETECTORS picks some, or none), then
 * the service name given.
 */
function agentResource(serviceName: string | undefined): Resource {
  // Without a name given anywhere, the SDK's default is unknown_service:<path of the node binary>
  // (e.g. unknown_service:/usr/bin/node for every agent): the entry script's file name tells
  // agents apart in `loopwatch sessions` and on the dashboards, and keeps a machine's path out
  serviceName ??= /(^|,)\s*service\.name\s*=/.test(process.env.OTEL_RESOURCE_ATTRIBUTES ?? '') || !process.argv[1]
    ? undefined
    : `unknown_service:${basename(process.argv[1])}`;
  const all = { env: envDetector, process: processDetector, host: hostDetector } as const;
  const picked = (process.env.OTEL_NODE_RESOURCE_DETECTORS ?? 'all').split(',').map((d) => d.trim()).filter(Boolean);
  const detectors = picked.includes('none') ? [] : picked.includes('all') || picked.length === 0 ? Object.values(all) : picked.flatMap((d) => (d in all ? [all[d as keyof typeof all]] : []));
  const detected = defaultResource().merge(detectResources({ detectors }));
  return serviceName ? detected.merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName })) : detected;
}

const OWN_SETUP = "To keep the application's own setup, set LOOPWATCH_INSTRUMENTATION=off and add Loopwatch's span processors and an exporter to the Loopwatch collector to it (docs/instrumentation.md)";

/**
 * Says a tracer provider registered after Loopwatch's, which the API refuses (it keeps the first)
 * and reports only through its diagnostics: the API's registration is wrapped, its answer kept.
 * Not a diagnostics logger of Loopwatch's, which would take the place of the application's.
 */
function sayLateProviders(ours: NodeTracerProvider): void {
  const api = trace as unknown as { setGlobalTracerProvider: (p: unknown) => boolean };
  const register = api.setGlobalTracerProvider.bind(trace);
  api.setGlobalTracerProvider = (p: unknown) => {
    const taken = register(p);
    // refused in favour of Loopwatch's, not of one the application put in its place (trace.disable())
    if (!taken && registeredProvider() === ours) {
      warnOnce('provider-late', `an OpenTelemetry tracer provider registered after Loopwatch's was refused: its spans go to the Loopwatch collector, and its own exporters get none. ${OWN_SETUP}`);
    }
    return taken;
  };
}

/** Characters an attribute value keeps (OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT overrides it). */
export const DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT = 32 * 1024;

const PROPAGATORS: Record<string, () => TextMapPropagator> = {
  tracecontext: () => new W3CTraceContextPropagator(),
  baggage: () => new W3CBaggagePropagator(),
};

/**
 * The propagators OTEL_PROPAGATORS names, of those this SDK carries (tracecontext, baggage; the
 * B3 and Jaeger ones are not loaded: said, and left out): undefined for the default (both, also
 * when none named is carried), null for none. They matter since Loopwatch itself sends the
 * context on (an MCP call's params._meta): `tracecontext` alone keeps the application's baggage
 * in the process.
 */
export function propagatorFromEnv(env: NodeJS.ProcessEnv = process.env): TextMapPropagator | null | undefined {
  const names = (env.OTEL_PROPAGATORS ?? '').split(',').map((n) => n.trim().toLowerCase()).filter((n) => n !== '');
  if (names.length === 0) return undefined;
  if (names.includes('none')) return null;
  const unknown = [...new Set(names.filter((n) => !Object.hasOwn(PROPAGATORS, n)))];
  const known = [...new Set(names.filter((n) => Object.hasOwn(PROPAGATORS, n)))];
  if (unknown.length) {
    const instead = known.length ? `using ${known.join(', ')}` : 'using the default, tracecontext and baggage';
    warn(`OTEL_PROPAGATORS: ${unknown.join(', ')} not available with Loopwatch's SDK, ${instead}; for others, set up your own SDK with LOOPWATCH_INSTRUMENTATION=off`);
  }
  // none known: the default, as before this variable was read (not no propagation at all)
  return known.length === 0 ? undefined : new CompositePropagator({ propagators: known.map((n) => PROPAGATORS[n]!()) });
}

export function startLoopwatch(opts: StartOptions = {}): LoopwatchHandle {
  const target = opts.endpoint ? tracesUrl(opts.endpoint) : exportUrlFromEnv();
  let exporter = opts.exporter;
  let lastAttempt: { error: Error | undefined } | undefined;
  if (!exporter) {
    // the standard variables that choose another exporter are not read: said, not silently ignored
    // (with grpc and an endpoint on 4317 every span was lost, the only sign a parse error)
    const protocol = (process.env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ?? process.env.OTEL_EXPORTER_OTLP_PROTOCOL)?.trim();
    if (protocol && protocol !== 'http/protobuf') {
      warn(`OTEL_EXPORTER_OTLP_PROTOCOL=${protocol} is not used: Loopwatch exports OTLP/HTTP protobuf (the collector takes it on port 4318); for another exporter, set up your own SDK with LOOPWATCH_INSTRUMENTATION=off`);
    }
    const traces = process.env.OTEL_TRACES_EXPORTER?.trim();
    if (traces && traces !== 'otlp') {
      warn(`OTEL_TRACES_EXPORTER=${traces} is not used: Loopwatch exports OTLP/HTTP protobuf to the collector (OTEL_SDK_DISABLED=true turns tracing off; LOOPWATCH_INSTRUMENTATION=off leaves the SDK to you)`);
    }
    // the URL as computed here, so that where spans go and what messages name cannot differ. A
    // collector's rejection of some spans of an export it took is said once, with its reason,
    // and counted (said at exit): the exporter counts such an export a success
    const secrets: string[] = [];
    const otlp = otlpProtoExporter(target, opts.letProcessEnd === true, (spans, message) => {
      tally.rejected += spans;
      warnOnce(
        'spans-rejected',
        `the collector rejected ${spanCount(spans)} of an export to ${shownUrl(target)}: ${shownReason(message, secrets) || 'it gave no reason'} ` +
          '(only those spans are lost; later rejections are counted, and said at exit)',
      );
    }, secrets);
    // an attempt could not reach the collector and a retry waits on its timer: the batch processor
    // stops waiting for that export (tally.abandon()), or its own timer for it would keep the
    // process up meanwhile. Not when the collector answered busy (429, 503): the batch processor
    // then keeps waiting, so that the agent does not send it more exports at once
    if (opts.letProcessEnd) {
      unrefRetryTimers(otlp, (error, busy) => {
        lastAttempt = { error };
        if (!busy) tally.abandon();
      });
    }
    exporter = otlp;
  }
  let failureReported = false;
  const reportFailure = (error: Error | undefined): void => {
    if (failureReported) return;
    failureReported = true;
    warn(exportFailure(error, opts.exporter ? undefined : target));
  };
  const tally = new ExportTally(
    reportFailure,
    () =>
      warn(`dropping spans: the export queue is full (${maxQueueSize()} spans waiting: the collector is slow or unreachable, or the agent ends spans faster than they are sent; OTEL_BSP_MAX_QUEUE_SIZE sets its size)`),
  );
  const batchConfig = { scheduledDelayMillis: 500, selfObsMeterProvider: queueDropMeter((n) => tally.onDrop(n)) } as BufferConfig;
  const batch = new BatchSpanProcessor(tally.wrap(splitOnTooLarge(exporter)), batchConfig);
  const provider = new NodeTracerProvider({
    resource: agentResource(opts.serviceName ?? process.env.OTEL_SERVICE_NAME),
    // attribute values (an error message with a long stack, captured content) cut at 32 KiB unless
    // the standard variables say otherwise: under the collector's 64 KiB (a batch of such spans
    // past its 16 MiB request limit is sent again in halves: splitOnTooLarge)
    ...(process.env.OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT || process.env.OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT
      ? {}
      : { spanLimits: { attributeValueLengthLimit: DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT } }),
    spanProcessors: [new PreciseStartProcessor(), new SessionSpanProcessor(), new AiSdkSpanProcessor(), new LlmCallTap(), ...(opts.spanProcessors ?? []), tally, batch],
  });
  const level = process.env.OTEL_LOG_LEVEL?.trim();
  if (level) diag.setLogger(new DiagConsoleLogger(), { logLevel: diagLogLevelFromString(level) }); // as the Node SDK does
  // OTEL_SDK_DISABLED: nothing registered (the API's no-op tracer), as the Node SDK does
  if (!/^true$/i.test(process.env.OTEL_SDK_DISABLED?.trim() ?? '')) {
    // the async-local-storage context manager and the propagators OTEL_PROPAGATORS names (default:
    // the W3C trace context and baggage)
    provider.register({ propagator: propagatorFromEnv() });
    // The API takes the first tracer provider registered and refuses the others, saying so only
    // through its diagnostics: an application's own OpenTelemetry setup (or Sentry's, Datadog's…)
    // made before this import took every span and Loopwatch exported none; one made after it
    // exported none of its own. Either is said once, here or when it happens.
    if (registeredProvider() !== provider) {
      warnOnce('provider-taken', `an OpenTelemetry tracer provider was registered before Loopwatch's: it gets the spans, and Loopwatch exports none. ${OWN_SETUP}`);
    } else {
      sayLateProviders(provider);
    }
  }
  // Flushes run one after another: the batch processor's forceFlush resolves at once when its
  // queue is empty, also while the spans it took are still on their way to the exporter (its
  // first export waits for the resource's detected attributes), so a second flush started then
  // (an application's, beside the signal handler's) would resolve before they are sent.
  let flushing: Promise<void> = Promise.resolve();
  // The flushes and shutdowns under way, each by what resolves it (stopWaiting() calls them all),
  // taken out when it resolves. Not a race with one promise that stopWaiting() resolves: each
  // race left a reaction on that promise, pending for the life of the process, and a server that
  // flushes per request kept 300 to 450 bytes a flush (60 MB after 200,000; a soak review).
  const waits = new Set<() => void>();
  const releasable = (work: Promise<unknown>): Promise<void> =>
    new Promise<void>((resolve) => {
      const done = (): void => {
        if (waits.delete(done)) resolve();
      };
      waits.add(done);
      work.then(done, done);
    });
  return {
    provider,
    flush: () => {
      flushing = flushing.then(() => batch.forceFlush().catch(() => undefined)).then(() => tally.exportsDone());
      return releasable(flushing);
    },
    stopWaiting: () => {
      // the exports given up on are still being retried: say why, as a failed one would
      if (lastAttempt && tally.pending() > 0) reportFailure(lastAttempt.error);
      tally.abandon();
      for (const done of [...waits]) done();
      flushing = Promise.resolve();
    },
    awaited: () => waits.size > 0,
    // bounded as flush() is: at the end of the process (exit.ts) its exports are given up on as
    // a flush's are (a drained server's `await shutdown()` with the collector down never settled,
    // and the process exited without the application's last steps)
    shutdown: () => releasable(provider.shutdown().catch(() => undefined)),
    pendingSpans: () => tally.pending(),
    failedSpans: () => tally.failed,
    droppedSpans: () => tally.dropped,
    rejectedSpans: () => tally.rejected,
  };
}
