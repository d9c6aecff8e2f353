// Admission control for ingest: at most `maxRequests` requests and `maxBytes` request bytes
// (received plus decompressed) are held at once. A request past either bound is answered 429
// with Retry-After before its body is read, so overload costs a short answer, not memory.
// One request is always admitted when nothing else is in flight, so a legal request larger
// than maxBytes (up to the body limits) still goes through on an idle collector.

export interface InFlightOptions {
  maxRequests: number;
  maxBytes: number;
}

export class InFlight {
  private requestCount = 0;
  private byteCount = 0;

  constructor(private readonly opts: InFlightOptions) {}

  get requests(): number {
    return this.requestCount;
  }

  get bytes(): number {
    return this.byteCount;
  }

  /** Admits a request that announces `bytes` (0 when unknown); null when over a bound. */
  enter(bytes: number): Ticket | null {
    if (this.requestCount >= this.opts.maxRequests) return null;
    if (this.requestCount > 0 && this.byteCount + bytes > this.opts.maxBytes) return null;
    this.requestCount++;
    this.byteCount += bytes;
    return new Ticket(this, bytes);
  }

  /** @internal */
  adjust(delta: number): void {
    this.byteCount += delta;
  }

  /** @internal */
  leave(bytes: number): void {
    this.requestCount--;
    this.byteCount -= bytes;
  }

  /** What a request refused at admission is told, on every transport. */
  busyMessage(): string {
    return `collector is busy (${this.requestCount} requests, ${this.byteCount} bytes in flight); retry later`;
  }

  /** Whether `more` bytes still fit beside what is held (always true for a lone request). */
  fits(more: number): boolean {
    return this.requestCount <= 1 || this.byteCount + more <= this.opts.maxBytes;
  }
}

export class Ticket {
  private done = false;

  constructor(
    private readonly owner: InFlight,
    private held: number,
  ) {}

  /** The bytes this request is counted for. */
  get bytes(): number {
    return this.held;
  }

  /** Accounts for `n` more bytes held by this request; false (nothing added) when over the bound. */
  grow(n: number): boolean {
    if (n <= 0) return true;
    if (!this.owner.fits(n)) return false;
    this.owner.adjust(n);
    this.held += n;
    return true;
  }

  /** Sets the bytes held by this request to `n` (e.g. the real body size once read). */
  set(n: number): void {
    this.owner.adjust(n - this.held);
    this.held = n;
  }

  release(): void {
    if (this.done) return;
    this.done = true;
    this.owner.leave(this.held);
  }
}
