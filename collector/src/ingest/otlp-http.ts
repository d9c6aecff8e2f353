// POST /v1/traces: OTLP/HTTP trace ingest.
// content type -> admission (requests and bytes in flight) -> size limit -> gunzip (bounded)
// -> the export request (export-request.ts: retry check, prescan, decode, rows, spool) -> 200.
// Errors follow the OTLP/HTTP spec: 400 bad data (not retried), 413 too large, 415 unsupported
// type, 429 + Retry-After when too much is in flight, 503 + Retry-After when the spool is full
// (both retried); bodies are google.rpc.Status in the request's encoding.
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import type { HttpBindings } from '@hono/node-server';
import type { Context, Hono } from 'hono';
import type { CollectorConfig } from '../config.js';
import { atMostEvery, type Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import type { Encoding, ExportOutcome, TraceExport } from './export-request.js';
import { encodeRpcStatus, encodeTraceResponse } from './otlp-proto.js';
import type { InFlight, Ticket } from './inflight.js';

const gunzipAsync = promisify(gunzip);

// gRPC status codes used in google.rpc.Status bodies.
const INVALID_ARGUMENT = 3;
const UNIMPLEMENTED = 12;
const RESOURCE_EXHAUSTED = 8;
const UNAVAILABLE = 14;

function encodingOf(contentType: string | undefined): Encoding | null {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/x-protobuf' || type === 'application/protobuf') return 'protobuf';
  if (type === 'application/json') return 'json';
  return null;
}

function reply(c: Context, enc: Encoding, status: 200 | 400 | 401 | 404 | 413 | 415 | 429 | 503, body: { rejected?: number; reason?: string; code?: number; message?: string }, headers: Record<string, string> = {}): Response {
  for (const [k, v] of Object.entries(headers)) c.header(k, v);
  if (status === 200) {
    const rejected = body.rejected ?? 0;
    if (enc === 'protobuf') {
      c.header('Content-Type', 'application/x-protobuf');
      return c.body(encodeTraceResponse(rejected, body.reason ?? '') as Uint8Array<ArrayBuffer>, 200);
    }
    return c.json(rejected > 0 ? { partialSuccess: { rejectedSpans: String(rejected), errorMessage: body.reason ?? '' } } : {}, 200);
  }
  const code = body.code ?? INVALID_ARGUMENT;
  const message = body.message ?? 'error';
  if (enc === 'protobuf') {
    c.header('Content-Type', 'application/x-protobuf');
    return c.body(encodeRpcStatus(code, message) as Uint8Array<ArrayBuffer>, status);
  }
  return c.json({ code, message }, status);
}

export interface IngestDeps {
  config: CollectorConfig;
  metrics: Metrics;
  /** What is done with a request once its body is read. */
  exports: TraceExport;
  /** Admission bound (requests and bytes in flight), shared with the other transports. */
  inflight: InFlight;
  log: Logger;
}

// Signals Loopwatch does not collect. An SDK set up to export every signal to this endpoint (the
// default of several languages' auto-instrumentation) gets a 404, as from an OpenTelemetry
// Collector without that pipeline, but with a body that says what to change (exporters print
// it), and the collector's log says so too, at most once an hour per signal.
const OTHER_SIGNALS = [
  { path: '/v1/metrics', signal: 'metrics', off: 'OTEL_METRICS_EXPORTER=none' },
  { path: '/v1/logs', signal: 'logs', off: 'OTEL_LOGS_EXPORTER=none' },
] as const;
const SIGNAL_WARN_EVERY_MS = 3600_000;

const retryAfter = { 'Retry-After': '5' };
const throttleAfter = { 'Retry-After': '1' };

/** An export request's outcome as an OTLP/HTTP answer. */
function answer(c: Context, enc: Encoding, outcome: ExportOutcome): Response {
  switch (outcome.kind) {
    case 'accepted':
      return reply(c, enc, 200, { rejected: outcome.rejectedSpans, reason: outcome.rejectReason });
    case 'invalid':
      return reply(c, enc, 400, { code: INVALID_ARGUMENT, message: outcome.message });
    case 'too_large':
      return reply(c, enc, 413, { code: RESOURCE_EXHAUSTED, message: outcome.message });
    case 'unavailable':
      return reply(c, enc, 503, { code: UNAVAILABLE, message: outcome.message }, retryAfter);
  }
}

/**
 * The request body, or why there is none: its client went away mid-upload, it did not all arrive
 * within `timeoutMs` (answered 408 and the connection closed: a slow upload must not hold an ingest slot), it
 * is over the body limit, or it no longer fits beside the bytes other requests hold. Read here
 * rather than by a body-limit middleware, so that a body sent without Content-Length (chunked: an
 * exporter that gzips as it sends) is counted against the in-flight bound as it arrives, not
 * buffered whole first with nothing counted. Read from Node's request directly (as Hono's own
 * fast path does; its web stream of the body measured 1.5-2.5x slower). A body refused part-way
 * is left unread: the answer closes the connection (`Connection: close`, closeAfter).
 */
function readBody(c: Context, ticket: Ticket, maxBytes: number, timeoutMs: number): Promise<Uint8Array | 'timeout' | 'aborted' | 'too-large' | 'busy'> {
  const incoming = (c.env as HttpBindings | undefined)?.incoming;
  if (!incoming) return c.req.arrayBuffer().then((b) => (b.byteLength > maxBytes ? 'too-large' : new Uint8Array(b)));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (why: Uint8Array | 'timeout' | 'aborted' | 'too-large' | 'busy') => {
      clearTimeout(timer);
      incoming.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      resolve(why);
    };
    // the rest of a late body is not read: the 408 closes the connection (closeAfter)
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) return done('too-large');
      if (size > ticket.bytes && !ticket.grow(size - ticket.bytes)) return done('busy');
      chunks.push(chunk);
    };
    const onEnd = () => done(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    const onError = (err: NodeJS.ErrnoException) => {
      if (incoming.destroyed || err.message === 'aborted' || err.code === 'ECONNRESET') return done('aborted');
      clearTimeout(timer);
      reject(err);
    };
    // the client went away before the body ended
    const onClose = () => {
      if (!incoming.complete) done('aborted');
    };
    incoming.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

/** The headers of an answer given before the body was read to its end: the rest is not read, the connection not reused. */
const closeAfter = { Connection: 'close' };

export function registerOtlpRoutes(app: Hono, deps: IngestDeps): void {
  const { config, metrics, exports, inflight, log } = deps;
  const tooLarge = (c: Context, enc: Encoding, headers: Record<string, string> = {}) => {
    metrics.inc('loopwatch_requests_rejected_total', 'http');
    return reply(c, enc, 413, { code: RESOURCE_EXHAUSTED, message: `request body larger than ${config.limits.maxBodyBytes} bytes` }, headers);
  };

  for (const { path, signal, off } of OTHER_SIGNALS) {
    const warnDue = atMostEvery(SIGNAL_WARN_EVERY_MS);
    app.post(path, (c) => {
      const fix = `set ${off} in the exporting application (or point only its traces at this collector with OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)`;
      if (warnDue()) {
        log.warn({ path, userAgent: c.req.header('user-agent') }, `received OTLP ${signal}: ${fix} (said at most once an hour)`);
      }
      return reply(c, encodingOf(c.req.header('content-type')) ?? 'json', 404, { code: UNIMPLEMENTED, message: `Loopwatch collects traces only, not ${signal}: ${fix}` });
    });
  }

  app.post(
    '/v1/traces',
    async (c, next) => {
      metrics.inc('loopwatch_requests_received_total', 'http');
      const enc = encodingOf(c.req.header('content-type'));
      if (!enc) {
        metrics.inc('loopwatch_requests_rejected_total', 'http');
        return c.json({ code: INVALID_ARGUMENT, message: `unsupported content type '${c.req.header('content-type') ?? ''}': use application/x-protobuf or application/json` }, 415);
      }
      c.set('encoding' as never, enc as never);
      // Admission before the body is read: a request past the bound costs a short answer. One
      // without Content-Length is counted as its body arrives (readBody).
      const declared = Number(c.req.header('content-length')) || 0;
      if (declared > config.limits.maxBodyBytes) return tooLarge(c, enc);
      const ticket = inflight.enter(declared);
      if (!ticket) {
        metrics.inc('loopwatch_requests_rejected_total', 'http');
        metrics.inc('loopwatch_requests_throttled_total', 'http');
        return reply(c, enc, 429, { code: RESOURCE_EXHAUSTED, message: inflight.busyMessage() }, throttleAfter);
      }
      c.set('ticket' as never, ticket as never);
      try {
        await next();
      } finally {
        ticket.release();
      }
    },
    async (c) => {
      const enc = c.get('encoding' as never) as Encoding;
      const ticket = c.get('ticket' as never) as Ticket;
      const fail = (status: 400 | 413 | 415 | 429 | 503, code: number, message: string, headers: Record<string, string> = {}) => {
        metrics.inc('loopwatch_requests_rejected_total', 'http');
        return reply(c, enc, status, { code, message }, headers);
      };
      const read = await readBody(c, ticket, config.limits.maxBodyBytes, config.limits.bodyTimeoutMs);
      if (read === 'too-large') return tooLarge(c, enc, closeAfter);
      if (read === 'busy') {
        metrics.inc('loopwatch_requests_throttled_total', 'http');
        return fail(429, RESOURCE_EXHAUSTED, inflight.busyMessage(), { ...throttleAfter, ...closeAfter });
      }
      if (read === 'timeout') {
        metrics.inc('loopwatch_requests_rejected_total', 'http');
        return c.body(null, 408, closeAfter);
      }
      if (read === 'aborted') {
        // the client went away mid-upload: nothing to answer, nobody to tell (not an error of the collector's)
        metrics.inc('loopwatch_requests_rejected_total', 'http');
        return c.body(null, 400);
      }
      let body = read;
      ticket.set(body.length);
      const contentEncoding = (c.req.header('content-encoding') ?? 'identity').trim().toLowerCase();
      if (contentEncoding === 'gzip') {
        try {
          body = await gunzipAsync(body, { maxOutputLength: config.limits.maxDecompressedBytes });
        } catch (err) {
          if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
            return fail(413, RESOURCE_EXHAUSTED, `decompressed body larger than ${config.limits.maxDecompressedBytes} bytes`);
          }
          return fail(400, INVALID_ARGUMENT, `body is not valid gzip: ${(err as Error).message}`);
        }
        if (!ticket.grow(body.length)) {
          metrics.inc('loopwatch_requests_throttled_total', 'http');
          return fail(429, RESOURCE_EXHAUSTED, `collector is busy (${inflight.bytes} bytes in flight); retry later`, throttleAfter);
        }
      } else if (contentEncoding !== 'identity' && contentEncoding !== '') {
        return fail(415, INVALID_ARGUMENT, `unsupported content encoding '${contentEncoding}': use gzip or none`);
      }

      return answer(c, enc, await exports.handle(body, enc, ticket, 'http'));
    },
  );
}
