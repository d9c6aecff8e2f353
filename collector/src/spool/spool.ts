// The write-ahead spool: what the collector acknowledges is first made durable here.
//
// Appends from concurrent requests are group-committed: one write and one fdatasync per
// flush, and every append in it resolves after that fdatasync, so an acknowledgement never
// precedes durability. Records live in segment files; a segment is sealed (renamed, with the
// directory fsynced) at a size or age and then belongs to the loader, which inserts it with a
// deduplication token derived from its name and deletes it only after the store accepted it.
//
// File layout: seg-<seq:16>-<token>.open | .sealed; record = u32 length, u32 crc32, payload.
import { randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, truncateSync, openSync, fsyncSync, closeSync, unlinkSync } from 'node:fs';
import { open, unlink, rename, mkdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

const HEADER = 8;

export interface SpoolOptions {
  dir: string;
  maxBytes: number;
  segmentMaxBytes: number;
  segmentMaxAgeMs: number;
  /**
   * A loader waiting for work (`next`) gets the open segment sealed once it is this old, instead
   * of waiting for segmentMaxAgeMs: an idle store takes what there is, a busy one gets larger
   * segments. Default: min(200, segmentMaxAgeMs).
   */
  segmentMinAgeMs?: number;
}

export interface SealedSegment {
  name: string;
  path: string;
  /** Stable across restarts: the store drops a re-insert carrying the same token. */
  token: string;
  bytes: number;
  /**
   * An INSERT of it may have been applied in part (found at start after a crash, or an attempt
   * failed): after its replay the loader checks each table for its rows (spool/repair.ts).
   */
  mayBePartial?: boolean;
}

export class SpoolFullError extends Error {
  override readonly name = 'SpoolFullError';
  /** The payload is larger than the whole spool: it never fits, however long the client waits. */
  readonly never: boolean;
  constructor(message: string, never = false) {
    super(message);
    this.never = never;
  }
}

interface Pending {
  header: Buffer;
  payload: Buffer;
  resolve: () => void;
  reject: (err: Error) => void;
}

interface OpenSegment {
  seq: number;
  token: string;
  path: string;
  fh: FileHandle;
  bytes: number;
  openedAt: number;
}

function segmentName(seq: number, token: string, state: 'open' | 'sealed'): string {
  return `seg-${String(seq).padStart(16, '0')}-${token}.${state}`;
}

const SEGMENT = /^seg-(\d{16})-([0-9a-f-]{36})\.(open|sealed)$/;

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsyncDir off the event loop. */
async function fsyncDirAsync(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function recordHeader(payload: Buffer): Buffer {
  const header = Buffer.allocUnsafe(HEADER);
  header.writeUInt32LE(payload.length, 0);
  header.writeUInt32LE(crc32(payload), 4);
  return header;
}

export function frameRecord(payload: Buffer): Buffer {
  return Buffer.concat([recordHeader(payload), payload]);
}

/** The record at `off`, if it is whole and its checksum holds (never empty: zeros are not a record). */
function recordAt(buf: Buffer, off: number): Buffer | undefined {
  if (off + HEADER > buf.length) return undefined;
  const len = buf.readUInt32LE(off);
  if (len === 0 || off + HEADER + len > buf.length) return undefined;
  const payload = buf.subarray(off + HEADER, off + HEADER + len);
  return crc32(payload) === buf.readUInt32LE(off + 4) ? payload : undefined;
}

/** The offset of the next whole record with a good checksum after `from`, or -1. */
function nextRecord(buf: Buffer, from: number): number {
  for (let p = from + 1; p + HEADER <= buf.length; p++) if (recordAt(buf, p)) return p;
  return -1;
}

export interface SegmentRecords {
  /** The whole records with good checksums, in order: what can be loaded. */
  records: Buffer[];
  /** Where the last of them ends: an open segment is cut there (its torn tail). */
  validBytes: number;
  /** Bytes that are not whole records with good checksums, other than an open segment's torn tail. */
  unreadableBytes: number;
  corrupt: boolean;
}

/**
 * The records of a segment. Every record is framed (length, CRC-32) and was on disk (fdatasync)
 * before its spans were acknowledged. What does not read as a record is either the torn tail of
 * an open segment (a write the process did not finish: its spans were never acknowledged, so it
 * is dropped) or corruption (a flipped bit in a length or a payload): then the records after it
 * are found again by their framing, so one bad record costs its own spans, not the segment's
 * rest. A sealed segment has no torn tail: anything unreadable in it, at its end too, is
 * corruption; so is anything in an open one that whole records follow.
 */
export function readRecords(buf: Buffer, state: 'open' | 'sealed' = 'sealed'): SegmentRecords {
  const records: Buffer[] = [];
  let off = 0;
  let validBytes = 0;
  let unreadableBytes = 0;
  while (off < buf.length) {
    const payload = recordAt(buf, off);
    if (payload) {
      records.push(payload);
      off += HEADER + payload.length;
      validBytes = off;
      continue;
    }
    const next = nextRecord(buf, off);
    if (next < 0) {
      if (state === 'sealed') unreadableBytes += buf.length - off;
      break; // an open segment's torn tail
    }
    unreadableBytes += next - off;
    off = next;
  }
  return { records, validBytes, unreadableBytes, corrupt: unreadableBytes > 0 };
}

/**
 * Makes the spool directory and checks that a file can be made in it. A spool that cannot be
 * written refuses every export (503) while the collector looks up and running: better not to start.
 */
export function checkSpoolWritable(dir: string): void {
  mkdirSync(dir, { recursive: true });
  const probe = join(dir, `.probe-${process.pid}`);
  closeSync(openSync(probe, 'w'));
  unlinkSync(probe);
}

export class Spool {
  private current: OpenSegment | null = null;
  private pending: Pending[] = [];
  private flushing: Promise<void> | null = null;
  private nextSeq = 1;
  private sealed: SealedSegment[] = [];
  private bytesHeld = 0;
  private ageTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private waiters: (() => void)[] = [];
  /** seal() calls made while a flush was writing: the flush loop seals between two writes. */
  private sealRequests: { resolve: () => void; reject: (err: Error) => void }[] = [];
  /** The last seal started: settled once its segment is listed as sealed (or failed). */
  private sealing: Promise<void> = Promise.resolve();
  private readonly minAgeMs: number;

  constructor(private readonly opts: SpoolOptions) {
    this.minAgeMs = opts.segmentMinAgeMs ?? Math.min(200, opts.segmentMaxAgeMs);
  }

  /** Recovers what a previous process left: open segments are trimmed to their intact records and sealed. */
  start(): void {
    mkdirSync(this.opts.dir, { recursive: true });
    const names = readdirSync(this.opts.dir).filter((n) => SEGMENT.test(n)).sort();
    for (const name of names) {
      const m = SEGMENT.exec(name)!;
      const seq = Number(m[1]);
      const token = m[2]!;
      let path = join(this.opts.dir, name);
      this.nextSeq = Math.max(this.nextSeq, seq + 1);
      if (m[3] === 'open') {
        // cut the torn tail only: a corrupt record inside is kept for the loader to report and quarantine
        const { validBytes } = readRecords(readFileSync(path), 'open');
        truncateSync(path, validBytes);
        if (validBytes === 0) {
          renameSync(path, `${path}.empty`);
          continue;
        }
        const sealedPath = join(this.opts.dir, segmentName(seq, token, 'sealed'));
        renameSync(path, sealedPath);
        path = sealedPath;
      }
      const bytes = statSync(path).size;
      this.sealed.push({ name: segmentName(seq, token, 'sealed'), path, token, bytes, mayBePartial: true });
      this.bytesHeld += bytes;
    }
    fsyncDir(this.opts.dir);
    for (const n of readdirSync(this.opts.dir).filter((n) => n.endsWith('.empty'))) void unlink(join(this.opts.dir, n));
    this.ageTimer = setInterval(() => void this.sealIfOld(), Math.max(10, Math.floor(this.opts.segmentMaxAgeMs / 2)));
    this.ageTimer.unref();
  }

  /** Bytes acknowledged but not yet confirmed by the store. */
  get heldBytes(): number {
    return this.bytesHeld;
  }

  get sealedCount(): number {
    return this.sealed.length;
  }

  /** Resolves once the payload is on disk (fdatasync). Throws SpoolFullError when over the bound. */
  append(payload: Buffer): Promise<void> {
    if (this.closed) return Promise.reject(new Error('spool is closed'));
    const size = HEADER + payload.length;
    if (size > this.opts.maxBytes) return Promise.reject(new SpoolFullError(`a request of ${size} bytes is larger than the spool (${this.opts.maxBytes} bytes)`, true));
    if (this.bytesHeld + size > this.opts.maxBytes) {
      return Promise.reject(new SpoolFullError(`spool holds ${this.bytesHeld} bytes, limit ${this.opts.maxBytes}`));
    }
    this.bytesHeld += size;
    const header = recordHeader(payload);
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ header, payload, resolve, reject });
      if (!this.flushing) this.flushing = this.flushLoop();
    });
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const batch = this.pending;
        this.pending = [];
        let seg: OpenSegment | undefined;
        try {
          seg = await this.segment();
          // one gathered write (no copy into a joined buffer), one fdatasync for the whole batch
          const bufs = batch.flatMap((p) => [p.header, p.payload]);
          const size = batch.reduce((n, p) => n + HEADER + p.payload.length, 0);
          const { bytesWritten } = await seg.fh.writev(bufs, seg.bytes);
          if (bytesWritten !== size) throw new Error(`short write to spool segment (${bytesWritten} of ${size} bytes: is the disk of the data directory full?)`);
          await seg.fh.datasync();
          const first = seg.bytes === 0;
          seg.bytes += size;
          for (const p of batch) p.resolve();
          if (first) this.wake(); // a loader waiting for work starts the segment's min-age clock
        } catch (err) {
          // The batch is refused (its requests get a 503), so none of it may stay in the file: a
          // short write (a full disk) or a failed datasync leaves some or all of its records there,
          // which the next write, at seg.bytes, overwrote only in part. Left, the loader loaded
          // the refused spans (stored twice once the exporter retried) and reported the rest as
          // corruption. Cutting a file back needs no space.
          if (seg) await seg.fh.truncate(seg.bytes).catch(() => {});
          for (const p of batch) {
            this.bytesHeld -= HEADER + p.payload.length;
            p.reject(err as Error);
          }
          continue;
        }
        // Between two writes: seal when full or when someone asked for it (never mid-write).
        if (seg!.bytes >= this.opts.segmentMaxBytes || this.sealRequests.length > 0) await this.sealNow().catch(() => {});
      }
      if (this.sealRequests.length > 0) await this.sealNow().catch(() => {});
    } finally {
      this.flushing = null;
      // an append made while that last seal ran found a flush under way and started none
      if (this.pending.length > 0) this.flushing = this.flushLoop();
    }
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  private async segment(): Promise<OpenSegment> {
    if (this.current) return this.current;
    const seq = this.nextSeq++;
    const token = randomUUID();
    const path = join(this.opts.dir, segmentName(seq, token, 'open'));
    const fh = await open(path, 'wx');
    await fsyncDirAsync(this.opts.dir);
    this.current = { seq, token, path, fh, bytes: 0, openedAt: Date.now() };
    return this.current;
  }

  private async sealIfOld(): Promise<void> {
    const seg = this.current;
    if (!seg || seg.bytes === 0) return;
    if (Date.now() - seg.openedAt >= this.opts.segmentMaxAgeMs) await this.seal().catch(() => {});
  }

  /**
   * Seals the open segment (if it holds data) and hands it to the loader. While a flush is
   * writing, the flush loop does it right after that write.
   */
  seal(): Promise<void> {
    if (!this.flushing) return this.sealNow();
    return new Promise<void>((resolve, reject) => this.sealRequests.push({ resolve, reject }));
  }

  private async sealNow(): Promise<void> {
    const requests = this.sealRequests.splice(0);
    try {
      await this.sealCurrent();
    } catch (err) {
      for (const r of requests) r.reject(err as Error);
      throw err;
    }
    for (const r of requests) r.resolve();
  }

  private async sealCurrent(): Promise<void> {
    const seg = this.current;
    if (!seg || seg.bytes === 0) {
      // a seal already under way (the loader's, by age) has taken the segment but not yet listed
      // it: done when that one is, or a drain would see no sealed segment and stop too early
      await this.sealing;
      return;
    }
    this.current = null;
    const sealing = (async () => {
      await seg.fh.close();
      const name = segmentName(seg.seq, seg.token, 'sealed');
      const path = join(this.opts.dir, name);
      await rename(seg.path, path);
      await fsyncDirAsync(this.opts.dir);
      this.sealed.push({ name, path, token: seg.token, bytes: seg.bytes });
      this.wake();
    })();
    this.sealing = sealing.catch(() => {});
    await sealing;
  }

  /**
   * The oldest sealed segment, waiting for one if none is ready (null once closed). The caller is
   * idle while it waits, so the open segment is sealed for it once segmentMinAgeMs old.
   */
  async next(signal?: AbortSignal): Promise<SealedSegment | null> {
    if (signal?.aborted) return null; // stopping: the segments left stay for the next start
    while (this.sealed.length === 0) {
      if (this.closed || signal?.aborted) return null;
      let waitMs: number | undefined;
      const cur = this.current;
      if (cur && cur.bytes > 0) {
        const age = Date.now() - cur.openedAt;
        if (age >= this.minAgeMs) {
          try {
            await this.seal();
            continue;
          } catch {
            waitMs = 100; // the age timer and later calls try again
          }
        } else {
          waitMs = this.minAgeMs - age;
        }
      }
      await new Promise<void>((resolve) => {
        let timer: NodeJS.Timeout | undefined;
        const done = () => {
          if (timer) clearTimeout(timer);
          signal?.removeEventListener('abort', done);
          const i = this.waiters.indexOf(done);
          if (i !== -1) this.waiters.splice(i, 1);
          resolve();
        };
        this.waiters.push(done);
        if (waitMs !== undefined) timer = setTimeout(done, waitMs);
        signal?.addEventListener('abort', done, { once: true });
      });
    }
    return this.sealed[0] ?? null;
  }

  /** The store has the segment: forget it. */
  async release(seg: SealedSegment): Promise<void> {
    await unlink(seg.path);
    this.sealed = this.sealed.filter((s) => s !== seg);
    this.bytesHeld -= seg.bytes;
  }

  /** Keeps a segment the store refuses for good out of the way, for a human to look at. */
  async quarantine(seg: SealedSegment): Promise<string> {
    const dir = join(this.opts.dir, 'quarantine');
    await mkdir(dir, { recursive: true });
    const target = join(dir, seg.name);
    await rename(seg.path, target);
    this.sealed = this.sealed.filter((s) => s !== seg);
    this.bytesHeld -= seg.bytes;
    return target;
  }

  /** Writes rows the store refuses as data to quarantine/<segment>.rejected (fsynced); returns the path. */
  async quarantineRows(seg: SealedSegment, lines: Buffer[]): Promise<string> {
    const dir = join(this.opts.dir, 'quarantine');
    await mkdir(dir, { recursive: true });
    const target = join(dir, `${seg.name}.rejected`);
    const fh = await open(target, 'w');
    try {
      await fh.writeFile(Buffer.concat(lines));
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await fsyncDirAsync(dir);
    return target;
  }

  /** Flushes and seals what is pending; afterwards appends are refused. */
  async close(): Promise<void> {
    if (this.flushing) await this.flushing;
    await this.seal();
    this.closed = true;
    if (this.ageTimer) clearInterval(this.ageTimer);
    this.wake();
  }
}
