// Recognises an exporter's retry of a request already acknowledged (same decompressed body),
// so that a batch re-sent after a client timeout is answered 200 without being stored twice.
// Bounded in entries and age. The store's ReplacingMergeTree tables are the second line of
// defence for retries this cache cannot see (after a restart, or past its window).
import { createHash } from 'node:crypto';

export interface RetryCacheOptions {
  maxEntries: number;
  ttlMs: number;
}

export interface Outcome {
  acceptedSpans: number;
  rejectedSpans: number;
  rejectReason: string;
}

export class RetryCache {
  private readonly entries = new Map<string, { at: number; outcome: Promise<Outcome> }>();

  constructor(private readonly opts: RetryCacheOptions) {}

  static key(body: Uint8Array, contentType: string): string {
    return createHash('sha256').update(contentType).update(body).digest('base64');
  }

  /** The outcome of an earlier identical request that succeeded or is still in flight. */
  get(key: string): Promise<Outcome> | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (Date.now() - e.at > this.opts.ttlMs) {
      this.entries.delete(key);
      return undefined;
    }
    return e.outcome;
  }

  /** Remembers an in-flight request; forgets it again if it fails, so a retry is processed afresh. */
  track(key: string, outcome: Promise<Outcome>): void {
    this.entries.set(key, { at: Date.now(), outcome });
    outcome.catch(() => {
      if (this.entries.get(key)?.outcome === outcome) this.entries.delete(key);
    });
    while (this.entries.size > this.opts.maxEntries) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
  }
}
