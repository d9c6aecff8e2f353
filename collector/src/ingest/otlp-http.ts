// POST /v1/traces: OTLP/HTTP trace ingest.
// content type -> admission (requests and bytes in flight) -> size limit -> gunzip (bounded)
// -> retry check -> prescan (object count, depth) -> decode -> rows -> spool (fdatasync) -> 200.
// Errors follow the OTLP/HTTP spec: 400 bad data (not retried), 413 too large, 415 unsupported
// type, 429 + Retry-After when too much is in flight, 503 + Retry-After when the spool is full
// (both retried); bodies are google.rpc.Status in the request's encoding.
import { gunzip } from 'node:zlib';
import { promisify } from 'node:util';
import type { Context, Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { CollectorConfig } from '../config.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { SpoolFullError, type Spool } from '../spool/spool.js';
import { decodeTraceRequestJson } from './otlp-json.js';
import { decodeTraceRequest, encodeRpcStatus, encodeTraceResponse } from './otlp-proto.js';
import { InFlight, type Ticket } from './inflight.js';
import { prescanJson, prescanProtobuf } from './prescan.js';
import { RetryCache, type Outcome } from './retry-cache.js';
import { BadRequestError, serializeRows, toSpanRows, type IngestLimits } from './span-rows.js';

const gunzipAsync = promisify(gunzip);
const EMPTY = Buffer.alloc(0);

type Encoding = 'protobuf' | 'json';

// gRPC status codes used in google.rpc.Status bodies.
const INVALID_ARGUMENT = 3;
const RESOURCE_EXHAUSTED = 8;
const UNAVAILABLE = 14;

function encodingOf(contentType: string | undefined): Encoding | null {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/x-protobuf' || type === 'application/protobuf') return 'protobuf';
  if (type === 'application/json') return 'json';
  return null;
}

function reply(c: Context, enc: Encoding, status: 200 | 400 | 401 | 413 | 415 | 429 | 503, body: { rejected?: number; reason?: string; code?: number; message?: string }, headers: Record<string, string> = {}): Response {
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
  spool: Spool;
  metrics: Metrics;
  log: Logger;
  retryCache: RetryCache;
  /** Admission bound (requests and bytes in flight); made from config.limits when absent. */
  inflight?: InFlight;
}

export function registerOtlpRoutes(app: Hono, deps: IngestDeps): void {
  const { config, spool, metrics, log, retryCache } = deps;
  const inflight = deps.inflight ?? new InFlight({ maxRequests: config.limits.maxConcurrentRequests, maxBytes: config.limits.maxInFlightBytes });
  const limits: IngestLimits = config.limits;
  const retryAfter = { 'Retry-After': '5' };
  const throttleAfter = { 'Retry-After': '1' };
  const prescanLimits = { maxObjects: config.limits.maxObjectsPerRequest, maxDepth: 4 * config.limits.maxValueDepth + 16 };

  app.post(
    '/v1/traces',
    async (c, next) => {
      metrics.inc('loopwatch_requests_received_total');
      const enc = encodingOf(c.req.header('content-type'));
      if (!enc) {
        metrics.inc('loopwatch_requests_rejected_total');
        return c.json({ code: INVALID_ARGUMENT, message: `unsupported content type '${c.req.header('content-type') ?? ''}': use application/x-protobuf or application/json` }, 415);
      }
      c.set('encoding' as never, enc as never);
      // Admission before the body is read: a request past the bound costs a short answer.
      const declared = Math.min(Number(c.req.header('content-length')) || 0, config.limits.maxBodyBytes);
      const ticket = inflight.enter(declared);
      if (!ticket) {
        metrics.inc('loopwatch_requests_rejected_total');
        metrics.inc('loopwatch_requests_throttled_total');
        return reply(c, enc, 429, { code: RESOURCE_EXHAUSTED, message: `collector is busy (${inflight.requests} requests, ${inflight.bytes} bytes in flight); retry later` }, throttleAfter);
      }
      c.set('ticket' as never, ticket as never);
      try {
        await next();
      } finally {
        ticket.release();
      }
    },
    bodyLimit({
      maxSize: config.limits.maxBodyBytes,
      onError: (c) => {
        metrics.inc('loopwatch_requests_rejected_total');
        const enc = c.get('encoding' as never) as Encoding;
        return reply(c, enc, 413, { code: RESOURCE_EXHAUSTED, message: `request body larger than ${config.limits.maxBodyBytes} bytes` });
      },
    }),
    async (c) => {
      const enc = c.get('encoding' as never) as Encoding;
      const ticket = c.get('ticket' as never) as Ticket;
      const fail = (status: 400 | 413 | 415 | 429 | 503, code: number, message: string, headers: Record<string, string> = {}) => {
        metrics.inc('loopwatch_requests_rejected_total');
        return reply(c, enc, status, { code, message }, headers);
      };
      let body = new Uint8Array(await c.req.arrayBuffer());
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
          metrics.inc('loopwatch_requests_throttled_total');
          return fail(429, RESOURCE_EXHAUSTED, `collector is busy (${inflight.bytes} bytes in flight); retry later`, throttleAfter);
        }
      } else if (contentEncoding !== 'identity' && contentEncoding !== '') {
        return fail(415, INVALID_ARGUMENT, `unsupported content encoding '${contentEncoding}': use gzip or none`);
      }

      const key = RetryCache.key(body, enc);
      const earlier = retryCache.get(key);
      if (earlier) {
        try {
          const outcome = await earlier;
          metrics.add('loopwatch_spans_duplicate_total', outcome.acceptedSpans + outcome.rejectedSpans);
          return reply(c, enc, 200, { rejected: outcome.rejectedSpans, reason: outcome.rejectReason });
        } catch {
          // the earlier attempt failed and was forgotten: process this one afresh
        }
      }

      const scan = enc === 'protobuf' ? prescanProtobuf(body, prescanLimits) : prescanJson(body, prescanLimits);
      if (!scan.ok) {
        return scan.reason === 'objects'
          ? fail(413, RESOURCE_EXHAUSTED, `request has more than ${prescanLimits.maxObjects} objects (spans, attributes, events, links, values); send smaller batches`)
          : fail(400, INVALID_ARGUMENT, `request nested deeper than ${prescanLimits.maxDepth} levels (attribute values may nest ${config.limits.maxValueDepth})`);
      }

      let converted: Converted;
      try {
        converted = convert(enc, body, limits);
      } catch (err) {
        if (err instanceof BadRequestError) return fail(400, INVALID_ARGUMENT, err.message);
        if (err instanceof RangeError) return fail(400, INVALID_ARGUMENT, `request nested too deeply: ${err.message}`);
        throw err;
      }
      const { payload, accepted, rejectedSpans, rejectReason } = converted;
      metrics.add('loopwatch_spans_received_total', accepted + rejectedSpans);
      metrics.add('loopwatch_spans_rejected_total', rejectedSpans);
      if (accepted === 0) return reply(c, enc, 200, { rejected: rejectedSpans, reason: rejectReason });

      ticket.set(body.length + payload.length);
      const stored: Promise<Outcome> = spool.append(payload).then(() => ({ acceptedSpans: accepted, rejectedSpans, rejectReason }));
      retryCache.track(key, stored);
      try {
        await stored;
      } catch (err) {
        if (err instanceof SpoolFullError) {
          metrics.inc('loopwatch_requests_spool_full_total');
          return fail(503, UNAVAILABLE, 'collector is over capacity (spool full); retry later', retryAfter);
        }
        log.error({ err }, 'spool append failed');
        return fail(503, UNAVAILABLE, 'collector could not persist the request; retry later', retryAfter);
      }
      metrics.add('loopwatch_spans_accepted_total', accepted);
      metrics.add('loopwatch_spool_written_bytes_total', payload.length);
      return reply(c, enc, 200, { rejected: rejectedSpans, reason: rejectReason });
    },
  );
}

interface Converted {
  /** The accepted spans as spool bytes (JSONCompactEachRow). */
  payload: Buffer;
  accepted: number;
  rejectedSpans: number;
  rejectReason: string;
}

/**
 * Decodes a request and serializes its spans for the spool. The decoded objects die with this
 * call: kept across the fdatasync wait they would be promoted to the old generation and cost a
 * full GC.
 */
function convert(enc: Encoding, body: Uint8Array, limits: IngestLimits): Converted {
  const req = enc === 'protobuf' ? decodeProtobuf(body) : decodeTraceRequestJson(body);
  const { rows, rejectedSpans, rejectReason } = toSpanRows(req, limits);
  return { payload: rows.length > 0 ? serializeRows(rows) : EMPTY, accepted: rows.length, rejectedSpans, rejectReason };
}

function decodeProtobuf(body: Uint8Array) {
  try {
    return decodeTraceRequest(body);
  } catch (err) {
    if (err instanceof RangeError && /call stack/i.test(err.message)) throw err;
    throw new BadRequestError(`body is not a valid OTLP protobuf ExportTraceServiceRequest: ${(err as Error).message}`);
  }
}
