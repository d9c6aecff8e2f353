// Runs the detectors every config.detect.intervalMs, start to start, so a call stored just after
// a pass began is examined at most one interval plus one pass later. Passes never overlap: one
// that outlasts the interval is followed by the next at once. A failing pass (or detector) is
// logged and counted, and the schedule goes on.
import type { ClickHouseClient } from '@clickhouse/client';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { runDetectors, type RunDetectorsOptions, type RunDetectorsResult } from './run-detectors.js';

export interface DetectorSchedulerOptions {
  intervalMs: number;
  /** Passed to every run (tests: thresholds). */
  run?: Omit<RunDetectorsOptions, 'now' | 'full'>;
}

export class DetectorScheduler {
  private timer: NodeJS.Timeout | null = null;
  private current: Promise<void> | null = null;
  private stopped = true;
  /** Last pass's result (for /healthz-style introspection and tests). */
  last: RunDetectorsResult | null = null;
  errors = 0;

  constructor(
    private readonly client: ClickHouseClient,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly opts: DetectorSchedulerOptions,
  ) {}

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule(this.opts.intervalMs);
  }

  /** Stops the schedule and waits for a pass in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
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
      const r = await runDetectors(this.client, this.opts.run);
      this.last = r;
      this.metrics.inc('loopwatch_detector_runs_total');
      this.metrics.add('loopwatch_findings_total', r.newFindings);
      this.metrics.observe('loopwatch_detector_duration_seconds', r.durationMs / 1000);
      for (const [detector, message] of Object.entries(r.errors)) {
        this.errors++;
        this.metrics.inc('loopwatch_detector_errors_total');
        this.log.error({ detector, err: message }, 'detector failed; its sessions are examined again next pass');
      }
      if (r.newFindings > 0 || r.grownFindings > 0) {
        this.log.info({ newFindings: r.newFindings, grownFindings: r.grownFindings, perDetector: r.perDetector, ms: Math.round(r.durationMs) }, 'loop findings stored');
      }
    } catch (err) {
      this.errors++;
      this.metrics.inc('loopwatch_detector_runs_total');
      this.metrics.inc('loopwatch_detector_errors_total');
      this.log.error({ err }, 'detector pass failed');
    }
  }
}
