// Runs the detectors every config.detect.intervalMs, start to start, so a call stored just after
// a pass began is examined at most one interval plus one pass later. Passes never overlap: one
// that outlasts the interval is followed by the next at once. A failing pass (or detector) is
// counted every time and the schedule goes on. It is logged when it starts failing, then at most
// once a minute while the same error repeats (with how many times it did), and once when it
// passes again: a store that is down, or a broken detector file, would otherwise write the same
// error every few seconds. Stopping (shutdown) ends a pass in progress before its next query:
// a first pass over a large store takes minutes, which a SIGTERM should not wait for (the pass
// moves no watermark, so the next start examines its sessions again).
import type { ClickHouseClient } from '@clickhouse/client';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { PassStopped, runDetectors, type RunDetectorsOptions, type RunDetectorsResult } from './run-detectors.js';

export interface DetectorSchedulerOptions {
  intervalMs: number;
  /** Passed to every run (tests: thresholds). */
  run?: Omit<RunDetectorsOptions, 'now' | 'full'>;
}

/** How often the same failure is logged again while it repeats. */
const REPEAT_LOG_MS = 60_000;

interface Failing {
  message: string;
  loggedAt: number;
  /** Failures since it was last logged. */
  unlogged: number;
}

export class DetectorScheduler {
  /** Per detector ('' for the pass as a whole): its current failure. */
  private readonly failing = new Map<string, Failing>();
  private timer: NodeJS.Timeout | null = null;
  private current: Promise<void> | null = null;
  /** Stops the pass in progress (stop()). */
  private stopping = new AbortController();
  private stopped = true;
  /** Last completed pass's result and when it ended (for the status and tests). */
  last: RunDetectorsResult | null = null;
  lastAt: Date | null = null;
  errors = 0;
  /** Passes that failed as a whole. */
  failedPasses = 0;

  constructor(
    private readonly client: ClickHouseClient,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly opts: DetectorSchedulerOptions,
  ) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.stopping = new AbortController();
    this.schedule(this.opts.intervalMs);
  }

  /** Stops the schedule, and a pass in progress before its next query, and waits for it. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.stopping.abort();
    await this.current;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      const started = Date.now();
      this.current = this.pass().finally(() => {
        this.current = null;
        this.schedule(Math.max(0, this.opts.intervalMs - (Date.now() - started)));
      });
    }, delayMs);
    this.timer.unref();
  }

  private async pass(): Promise<void> {
    try {
      const r = await runDetectors(this.client, { ...this.opts.run, signal: this.stopping.signal });
      this.last = r;
      this.lastAt = new Date();
      this.metrics.inc('loopwatch_detector_runs_total');
      this.metrics.add('loopwatch_findings_total', r.newFindings);
      this.metrics.observe('loopwatch_detector_duration_seconds', r.durationMs / 1000);
      this.recovered('', 'detector passes run again');
      for (const [detector, message] of Object.entries(r.errors)) {
        this.errors++;
        this.metrics.inc('loopwatch_detector_errors_total');
        this.failed(detector, message, (repeated) => this.log.error({ detector, err: message, ...repeated }, 'detector failed; its sessions are examined again next pass'));
      }
      for (const detector of [...this.failing.keys()]) if (detector !== '' && !(detector in r.errors)) this.recovered(detector, 'detector runs again');
      const level = findingsLogLevel(r);
      if (level) {
        this.log[level]({ newFindings: r.newFindings, grownFindings: r.grownFindings, withdrawnFindings: r.withdrawnFindings, perDetector: r.perDetector, ms: Math.round(r.durationMs) }, 'loop findings stored');
      }
    } catch (err) {
      if (err instanceof PassStopped) {
        this.log.info('detector pass stopped for shutdown; the next start examines its sessions again');
        return;
      }
      this.errors++;
      this.failedPasses++;
      this.metrics.inc('loopwatch_detector_runs_total');
      this.metrics.inc('loopwatch_detector_errors_total');
      this.failed('', (err as Error).message, (repeated) => this.log.error({ err, ...repeated }, 'detector pass failed'));
    }
  }

  /** The error of the last pass when it failed as a whole, else null. */
  passError(): string | null {
    return this.failing.get('')?.message ?? null;
  }

  /** Logs a failure when it is new (another message) or has repeated for a minute. */
  private failed(key: string, message: string, logIt: (repeated: { repeatedSinceLogged?: number }) => void): void {
    const f = this.failing.get(key);
    const now = Date.now();
    if (f && f.message === message && now - f.loggedAt < REPEAT_LOG_MS) {
      f.unlogged++;
      return;
    }
    logIt(f && f.message === message ? { repeatedSinceLogged: f.unlogged + 1 } : {});
    this.failing.set(key, { message, loggedAt: now, unlogged: 0 });
  }

  private recovered(key: string, what: string): void {
    if (!this.failing.delete(key)) return;
    this.log.info(key ? { detector: key } : {}, what);
  }
}

/**
 * How a pass's findings are logged: new or withdrawn findings at info; findings that only grew
 * at debug (a loop that goes on grows every pass: a line every 5 s for as long as it lasts).
 */
export function findingsLogLevel(r: Pick<RunDetectorsResult, 'newFindings' | 'grownFindings' | 'withdrawnFindings'>): 'info' | 'debug' | undefined {
  if (r.newFindings > 0 || r.withdrawnFindings > 0) return 'info';
  return r.grownFindings > 0 ? 'debug' : undefined;
}
