// One OTLP trace export request, whichever transport brought it (OTLP/HTTP, OTLP/gRPC), once its
// body is read and decompressed: retry check -> prescan (object count, depth) -> decode -> rows
// -> spool (fdatasync). The outcome says what to answer; each transport words it its own way.
import type { CollectorConfig } from '../config.js';
import { atMostEvery, type Logger } from '../logger.js';
import type { Metrics, Transport } from '../metrics.js';
import { SpoolFullError, type Spool } from '../spool/spool.js';
import type { Ticket } from './inflight.js';
import { decodeTraceRequestJson } from './otlp-json.js';
import { decodeTraceRequest } from './otlp-proto.js';
import { prescanJson, prescanProtobuf } from './prescan.js';
import { RetryCache, type Outcome } from './retry-cache.js';
import { BadRequestError, serializeRows, toSpanRows, type IngestLimits } from './span-rows.js';

export type Encoding = 'protobuf' | 'json';

/**
 * accepted: stored (durably) or nothing to store, with the spans refused as malformed.
 * invalid: bad data, not to be retried. too_large: over a size bound, not to be retried as is.
 * unavailable: cannot persist now (spool full), retry later.
 */
export type ExportOutcome =
  | { kind: 'accepted'; rejectedSpans: number; rejectReason: string }
  | { kind: 'invalid' | 'too_large' | 'unavailable'; message: string };

export interface ExportDeps {
  config: CollectorConfig;
  spool: Spool;
  metrics: Metrics;
  log: Logger;
  retryCache: RetryCache;
}

const EMPTY = Buffer.alloc(0);

export class TraceExport {
  private readonly limits: IngestLimits;
  private readonly prescanLimits: { maxObjects: number; maxDepth: number };
  // a full disk fails every request: said at most once a minute (the metric counts each), not a stack per request
  private readonly writeFailureDue = atMostEvery(60_000);
  private readonly spoolFullDue = atMostEvery(60_000);
  private readonly spoolTooSmallDue = atMostEvery(60_000);

  constructor(private readonly deps: ExportDeps) {
    this.limits = { ...deps.config.limits, retentionDays: deps.config.retentionDays };
    this.prescanLimits = { maxObjects: deps.config.limits.maxObjectsPerRequest, maxDepth: 4 * deps.config.limits.maxValueDepth + 16 };
  }

  /** Handles a request body; `ticket` holds its bytes in the admission bound. Counts a refused request in the metrics. */
  async handle(body: Uint8Array, enc: Encoding, ticket: Ticket, transport: Transport): Promise<ExportOutcome> {
    const outcome = await this.process(body, enc, ticket, transport);
    if (outcome.kind !== 'accepted') this.deps.metrics.inc('loopwatch_requests_rejected_total', transport);
    return outcome;
  }

  private async process(body: Uint8Array, enc: Encoding, ticket: Ticket, transport: Transport): Promise<ExportOutcome> {
    const { spool, metrics, log, retryCache } = this.deps;
    const key = RetryCache.key(body, enc);
    const earlier = retryCache.get(key);
    if (earlier) {
      try {
        const outcome = await earlier;
        metrics.add('loopwatch_spans_duplicate_total', outcome.acceptedSpans + outcome.rejectedSpans, transport);
        return { kind: 'accepted', rejectedSpans: outcome.rejectedSpans, rejectReason: outcome.rejectReason };
      } catch {
        // the earlier attempt failed and was forgotten: process this one afresh
      }
    }

    const scan = enc === 'protobuf' ? prescanProtobuf(body, this.prescanLimits) : prescanJson(body, this.prescanLimits);
    if (!scan.ok) {
      if (scan.reason === 'malformed') return { kind: 'invalid', message: `body is not a valid OTLP protobuf ExportTraceServiceRequest: ${scan.detail}` };
      return scan.reason === 'objects'
        ? { kind: 'too_large', message: `request has more than ${this.prescanLimits.maxObjects} objects (spans, attributes, events, links, values); send smaller batches` }
        : { kind: 'invalid', message: `request nested deeper than ${this.prescanLimits.maxDepth} levels (attribute values may nest ${this.limits.maxValueDepth})` };
    }

    let converted: Converted;
    try {
      converted = convert(enc, body, this.limits);
    } catch (err) {
      if (err instanceof BadRequestError) return { kind: 'invalid', message: err.message };
      if (err instanceof RangeError) return { kind: 'invalid', message: `request nested too deeply: ${err.message}` };
      throw err;
    }
    const { payload, accepted, rejectedSpans, rejectReason } = converted;
    metrics.add('loopwatch_spans_received_total', accepted + rejectedSpans, transport);
    metrics.add('loopwatch_spans_rejected_total', rejectedSpans, transport);
    if (accepted === 0) return { kind: 'accepted', rejectedSpans, rejectReason };

    ticket.set(body.length + payload.length);
    const stored: Promise<Outcome> = spool.append(payload).then(() => ({ acceptedSpans: accepted, rejectedSpans, rejectReason }));
    retryCache.track(key, stored);
    try {
      await stored;
    } catch (err) {
      if (err instanceof SpoolFullError && err.never) {
        if (this.spoolTooSmallDue()) log.warn({ err: err.message }, 'an export larger than the whole spool was refused (413): raise spool.maxBytes (LOOPWATCH_SPOOL_MAX_BYTES) or send smaller batches (said at most once a minute)');
        return { kind: 'too_large', message: `${err.message}: send smaller batches, or raise the collector's LOOPWATCH_SPOOL_MAX_BYTES` };
      }
      if (err instanceof SpoolFullError) {
        metrics.inc('loopwatch_requests_spool_full_total', transport);
        if (this.spoolFullDue()) log.warn({ spoolBytes: this.deps.spool.heldBytes }, 'the spool is full: exports are answered 503 until the store takes in what it holds (is the store down or slower than ingest? said at most once a minute, loopwatch_requests_spool_full_total counts each)');
        return { kind: 'unavailable', message: 'collector is over capacity (spool full); retry later' };
      }
      metrics.inc('loopwatch_spool_write_failures_total');
      if (this.writeFailureDue()) {
        log.error({ err: (err as Error).message, code: (err as NodeJS.ErrnoException).code },
          'spool could not write a request (answered 503; said at most once a minute, loopwatch_spool_write_failures_total counts each)');
      }
      return { kind: 'unavailable', message: 'collector could not persist the request; retry later' };
    }
    metrics.add('loopwatch_spans_accepted_total', accepted, transport);
    metrics.add('loopwatch_spool_written_bytes_total', payload.length, transport);
    return { kind: 'accepted', rejectedSpans, rejectReason };
  }
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
