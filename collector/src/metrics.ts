// Collector self-metrics (Prometheus text format on GET /metrics), on prom-client.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

const COUNTERS = {
  loopwatch_requests_received_total: 'OTLP export requests received',
  loopwatch_requests_rejected_total: 'OTLP export requests answered with an error status',
  loopwatch_requests_throttled_total: 'OTLP export requests answered 429 (too many requests or bytes in flight)',
  loopwatch_requests_spool_full_total: 'OTLP export requests answered 503 because the spool was full',
  loopwatch_requests_unauthorized_total: 'requests answered 401 (missing or invalid API key)',
  loopwatch_spans_received_total: 'spans in requests that were decoded',
  loopwatch_spans_accepted_total: 'spans acknowledged (durable in the spool)',
  loopwatch_spans_rejected_total: 'spans rejected as malformed (partial success or 400)',
  loopwatch_spans_duplicate_total: 'spans in requests recognised as retries of an acknowledged request',
  loopwatch_spool_written_bytes_total: 'row bytes written to the spool (durable) by acknowledged requests',
  loopwatch_spans_inserted_total: 'spans inserted into the store',
  loopwatch_spans_dropped_total: 'acknowledged spans that did not reach the store (quarantined segments; must stay 0)',
  loopwatch_insert_failures_total: 'failed inserts into the store (retried)',
  loopwatch_spool_write_failures_total: 'OTLP export requests answered 503 because the spool could not write them (disk full or failing)',
  loopwatch_spool_quarantined_segments_total: 'spool segments the store refused as data, kept in spool/quarantine',
  loopwatch_spool_corrupt_segments_total: 'spool segments with unreadable records (disk corruption), kept in spool/quarantine',
  loopwatch_spool_unreadable_bytes_total: 'bytes of spool segments that did not read as records (their spans are lost; must stay 0)',
  loopwatch_spool_repaired_segments_total: 'replayed spool segments found missing from some tables (interrupted INSERT) and completed',
  loopwatch_detector_runs_total: 'detector passes',
  loopwatch_findings_total: 'new findings stored',
  loopwatch_detector_errors_total: 'detector passes or detector files that failed',
} as const;

export type CounterName = keyof typeof COUNTERS;

/** How a request arrived: OTLP/HTTP (and the read API, for 401s) or OTLP/gRPC. */
export type Transport = 'http' | 'grpc';
const TRANSPORTS: readonly Transport[] = ['http', 'grpc'];

// Counted per transport (label `transport`): what a receiver took in and what it refused. The
// store side (inserted, dropped, spool segments) is one path for both.
const BY_TRANSPORT = [
  'loopwatch_requests_received_total', 'loopwatch_requests_rejected_total', 'loopwatch_requests_throttled_total',
  'loopwatch_requests_spool_full_total', 'loopwatch_requests_unauthorized_total', 'loopwatch_spans_received_total',
  'loopwatch_spans_accepted_total', 'loopwatch_spans_rejected_total', 'loopwatch_spans_duplicate_total',
  'loopwatch_spool_written_bytes_total',
] as const satisfies readonly CounterName[];
export type TransportCounter = (typeof BY_TRANSPORT)[number];
type PlainCounter = Exclude<CounterName, TransportCounter>;
const isByTransport = (name: CounterName): name is TransportCounter => (BY_TRANSPORT as readonly string[]).includes(name);

let processMetrics: Registry | undefined;

/**
 * The process's own metrics (resident memory, heap, CPU, event loop delay, open files: a leak or a
 * stall shows here), registered once per process: prom-client never stops what collects them, so a
 * registration per collector kept every closed collector reachable.
 */
function processRegistry(): Registry {
  if (!processMetrics) {
    processMetrics = new Registry();
    collectDefaultMetrics({ register: processMetrics });
  }
  return processMetrics;
}

export class Metrics {
  readonly registry = new Registry();
  private readonly counters = new Map<string, Counter>();
  /** When each counter last went up (epoch ms): the status tells a problem going on from one that passed. */
  private readonly wentUp = new Map<CounterName, number>();
  private readonly insertDuration: Histogram;
  private readonly detectDuration: Histogram;

  constructor(gauges: Record<string, { help: string; get: () => number }> = {}) {
    for (const [name, help] of Object.entries(COUNTERS)) {
      if (isByTransport(name as CounterName)) {
        const counter = new Counter({ name, help, labelNames: ['transport'], registers: [this.registry] });
        for (const t of TRANSPORTS) counter.labels(t).inc(0); // each series exists from the start, at 0
        this.counters.set(name, counter);
      } else {
        this.counters.set(name, new Counter({ name, help, registers: [this.registry] }));
      }
    }
    this.insertDuration = new Histogram({
      name: 'loopwatch_insert_duration_seconds',
      help: 'time of one spool-segment INSERT into the store',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [this.registry],
    });
    this.detectDuration = new Histogram({
      name: 'loopwatch_detector_duration_seconds',
      help: 'time of one detector pass',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [this.registry],
    });
    for (const [name, g] of Object.entries(gauges)) {
      new Gauge({ name, help: g.help, registers: [this.registry], collect() { this.set(g.get()); } });
    }
  }

  inc(name: PlainCounter): void;
  inc(name: TransportCounter, transport: Transport): void;
  inc(name: CounterName, transport?: Transport): void {
    this.add(name as TransportCounter, 1, transport as Transport);
  }

  add(name: PlainCounter, n: number): void;
  add(name: TransportCounter, n: number, transport: Transport): void;
  add(name: CounterName, n: number, transport?: Transport): void {
    if (n <= 0) return;
    this.wentUp.set(name, Date.now());
    const counter = this.counters.get(name)!;
    if (isByTransport(name)) counter.labels(transport ?? 'http').inc(n);
    else counter.inc(n);
  }

  observe(name: 'loopwatch_insert_duration_seconds' | 'loopwatch_detector_duration_seconds', seconds: number): void {
    (name === 'loopwatch_insert_duration_seconds' ? this.insertDuration : this.detectDuration).observe(seconds);
  }

  /** A counter's value, summed over transports unless one is given. */
  async value(name: CounterName, transport?: Transport): Promise<number> {
    const values = (await this.counters.get(name)!.get()).values;
    return values.filter((v) => transport === undefined || v.labels.transport === transport).reduce((sum, v) => sum + v.value, 0);
  }

  /** When the counter last went up (epoch ms), if it has since the collector started. */
  lastUp(name: CounterName): number | undefined {
    return this.wentUp.get(name);
  }

  /** The collector's metrics, and the process's own. */
  text(): Promise<string> {
    return Registry.merge([this.registry, processRegistry()]).metrics();
  }
}
