// What `loopwatch status` shows and GET /api/v1/status answers: is the collector taking spans, are
// they reaching the store, are the detectors running. Read from the collector's own state and
// counters (the numbers /metrics exports), so it costs no query and works while the store is down.
// `problems` lists what needs a person, each in one sentence; none means healthy. Keys in
// snake_case, as every answer of the read API.
import type { DetectorScheduler } from './detect/scheduler.js';
import type { CounterName, Metrics, Transport, TransportCounter } from './metrics.js';

export interface CollectorStatus {
  healthy: boolean;
  problems: string[];
  /** schema_version: the store's newest applied migration, once the schema is set up (null before). */
  store: { mode: 'embedded' | 'server'; location: string; schema: 'ready' | 'pending'; schema_version: number | null };
  listening: { otlp_http: string; otlp_grpc: string | null; auth: boolean; tls: boolean; client_certificates: boolean; tls_not_after: string | null };
  retention_days: number;
  spool: { bytes: number; segments: number };
  /** Per transport, since the collector started. */
  spans: { received: PerTransport; accepted: PerTransport; rejected: PerTransport; duplicate: PerTransport; inserted: number; dropped: number };
  detectors: {
    enabled: boolean;
    interval_ms: number;
    passes: number;
    failed_passes: number;
    /** Findings stored for the first time since the collector started. */
    new_findings: number;
    last_pass: { at: string; duration_ms: number; sessions: number; new_findings: number; grown_findings: number; errors: Record<string, string> } | null;
  };
  uptime_s: number;
}

type PerTransport = Record<Transport, number>;

export interface StatusSources {
  metrics: Metrics;
  detectors: DetectorScheduler;
  store: { mode: 'embedded' | 'server'; location: string };
  schemaReady: () => boolean;
  /** The schema version the migrations left the store at (null until they ran). */
  schemaVersion: () => number | null;
  spool: () => { bytes: number; segments: number };
  listening: () => CollectorStatus['listening'];
  retentionDays: number;
  detect: { enabled: boolean; intervalMs: number };
  startedAt: number;
}

/** A refusal or failure this recent is a problem going on (the status is polled: a minute or so between looks). */
const RECENT_MS = 5 * 60_000;

/** Spool segments waiting past this many suggest the store cannot keep up (a segment is at most 32 MiB or 1 s). */
const BACKLOG_SEGMENTS = 100;
/** A TLS certificate that ends sooner than this is a problem: time to renew it (ACME renews at 30 days left). */
const CERT_WARN_DAYS = 14;

export async function collectorStatus(s: StatusSources): Promise<CollectorStatus> {
  const perTransport = async (name: TransportCounter): Promise<PerTransport> => ({ http: await s.metrics.value(name, 'http'), grpc: await s.metrics.value(name, 'grpc') });
  const spans = {
    received: await perTransport('loopwatch_spans_received_total'),
    accepted: await perTransport('loopwatch_spans_accepted_total'),
    rejected: await perTransport('loopwatch_spans_rejected_total'),
    duplicate: await perTransport('loopwatch_spans_duplicate_total'),
    inserted: await s.metrics.value('loopwatch_spans_inserted_total'),
    dropped: await s.metrics.value('loopwatch_spans_dropped_total'),
  };
  const spool = s.spool();
  const schema = s.schemaReady() ? 'ready' : 'pending';
  const last = s.detectors.last;
  const problems: string[] = [];
  if (schema === 'pending') problems.push('the store is not reachable yet: spans are acknowledged into the spool and loaded once it is');
  if (spans.dropped > 0) problems.push(`${spans.dropped} acknowledged spans did not reach the store: the store refused them as data (kept in <data-dir>/spool/quarantine)`);
  const corrupt = await s.metrics.value('loopwatch_spool_corrupt_segments_total');
  if (corrupt > 0) {
    const bytes = await s.metrics.value('loopwatch_spool_unreadable_bytes_total');
    problems.push(`${corrupt} spool segment${corrupt === 1 ? '' : 's'} had unreadable records (${bytes} bytes: disk corruption); the spans in them are lost, the rest was stored; kept in <data-dir>/spool/quarantine`);
  }
  const recent = (name: CounterName): string | undefined => {
    const at = s.metrics.lastUp(name);
    return at !== undefined && Date.now() - at < RECENT_MS ? new Date(at).toISOString() : undefined;
  };
  const writeFailed = recent('loopwatch_spool_write_failures_total');
  if (writeFailed) problems.push(`the spool could not write requests (disk full or failing; last at ${writeFailed}): they were answered 503 and are retried by the exporters`);
  const spoolFull = recent('loopwatch_requests_spool_full_total');
  if (spoolFull) problems.push(`the spool was full (last at ${spoolFull}): requests were answered 503; the store is down or slower than ingest (spool.maxBytes bounds it)`);
  const insertFailed = s.metrics.lastUp('loopwatch_insert_failures_total');
  if (insertFailed !== undefined && insertFailed > (s.metrics.lastUp('loopwatch_spans_inserted_total') ?? 0)) {
    problems.push(`inserts into the store are failing (last at ${new Date(insertFailed).toISOString()}, retried): acknowledged spans wait in the spool; see the collector's log`);
  }
  if (spool.segments > BACKLOG_SEGMENTS) problems.push(`${spool.segments} spool segments (${spool.bytes} bytes) are waiting for the store: it is slower than ingest, or failing`);
  const listening = s.listening();
  if (listening.tls_not_after) {
    const daysLeft = (Date.parse(listening.tls_not_after) - Date.now()) / 86_400_000;
    if (daysLeft <= 0) problems.push(`the TLS certificate expired at ${listening.tls_not_after}: clients refuse it (renew the files: the collector reloads them within a minute of a change)`);
    else if (daysLeft < CERT_WARN_DAYS) problems.push(`the TLS certificate expires at ${listening.tls_not_after}, in ${Math.floor(daysLeft)} days: renew it (the collector reloads the files within a minute of a change)`);
  }
  const passError = s.detectors.passError();
  if (passError) problems.push(`the last detector pass failed: ${passError.slice(0, 200)}`);
  else if (last && Object.keys(last.errors).length > 0) {
    problems.push(`detectors failing in the last pass: ${Object.entries(last.errors).map(([d, e]) => `${d} (${e.slice(0, 200)})`).join('; ')}`);
  }
  return {
    healthy: problems.length === 0,
    problems,
    store: { ...s.store, schema, schema_version: s.schemaVersion() },
    listening,
    retention_days: s.retentionDays,
    spool,
    spans,
    detectors: {
      enabled: s.detect.enabled,
      interval_ms: s.detect.intervalMs,
      passes: await s.metrics.value('loopwatch_detector_runs_total'),
      failed_passes: s.detectors.failedPasses,
      new_findings: await s.metrics.value('loopwatch_findings_total'),
      last_pass: last && s.detectors.lastAt
        ? { at: s.detectors.lastAt.toISOString(), duration_ms: Math.round(last.durationMs), sessions: last.sessions, new_findings: last.newFindings, grown_findings: last.grownFindings, errors: last.errors }
        : null,
    },
    uptime_s: Math.round((Date.now() - s.startedAt) / 1000),
  };
}
