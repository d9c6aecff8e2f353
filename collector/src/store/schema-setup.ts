// Schema set-up at start (migrations, reference data) without making ingest wait for the store:
// the first attempt is awaited; if a ClickHouse server is unreachable the collector starts
// anyway, acknowledges into the spool, and retries here in the background. The loader starts
// only once `ready` resolves, so no segment is inserted before its tables exist. On the
// embedded engine a failure is a bug, not an outage, and is thrown.
import { StartError } from '../config.js';
import type { Logger } from '../logger.js';

export interface SchemaSetupOptions {
  /** Keep retrying after a failed first attempt (server mode) instead of throwing. */
  retryInBackground: boolean;
  maxBackoffMs?: number;
}

export class SchemaSetup {
  readonly ready: Promise<void>;
  private resolveReady!: () => void;
  private done = false;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private wake: (() => void) | null = null;
  private attempts = 0;

  constructor(
    private readonly apply: () => Promise<void>,
    private readonly log: Logger,
    private readonly opts: SchemaSetupOptions,
  ) {
    this.ready = new Promise((r) => (this.resolveReady = r));
  }

  get isReady(): boolean {
    return this.done;
  }

  /** First attempt; resolves once it succeeded, or (server mode) once background retries began. */
  async start(): Promise<void> {
    try {
      await this.attempt();
    } catch (err) {
      // a store that is there but will not do (a newer release's schema) is not an outage
      if (!this.opts.retryInBackground || err instanceof StartError) throw err;
      this.log.warn({ err: (err as Error).message }, 'store unreachable at start: accepting into the spool, retrying schema set-up in the background');
      void this.retry();
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.wake?.();
  }

  private async attempt(): Promise<void> {
    this.attempts++;
    await this.apply();
    this.done = true;
    this.resolveReady();
    if (this.attempts > 1) this.log.info({ attempts: this.attempts }, 'store reachable: schema ready, loading the spool');
  }

  private async retry(): Promise<void> {
    let backoff = 250;
    while (!this.stopped) {
      await new Promise<void>((r) => {
        this.wake = r;
        this.timer = setTimeout(r, backoff);
      });
      if (this.stopped) return;
      try {
        await this.attempt();
        return;
      } catch (err) {
        this.log.warn({ err: (err as Error).message, retryInMs: backoff }, 'schema set-up failed; will retry');
        backoff = Math.min(backoff * 2, this.opts.maxBackoffMs ?? 10_000);
      }
    }
  }
}
