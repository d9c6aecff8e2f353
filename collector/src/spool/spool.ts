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
import { mkdirSync, readdirSync, readFileSync, renameSync, statSync, truncateSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { open, unlink, rename, mkdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';

const HEADER = 8;

export interface SpoolOptions {
  dir: string;
  maxBytes: number;
  segmentMaxBytes: number;
  segmentMaxAgeMs: number;
}

export interface SealedSegment {
  name: string;
  path: string;
  /** Stable across restarts: the store drops a re-insert carrying the same token. */
  token: string;
  bytes: number;
}

export class SpoolFullError extends Error {
  override readonly name = 'SpoolFullError';
}

interface Pending {
  frame: Buffer;
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

export function frameRecord(payload: Buffer): Buffer {
  const frame = Buffer.allocUnsafe(HEADER + payload.length);
  frame.writeUInt32LE(payload.length, 0);
  frame.writeUInt32LE(crc32(payload), 4);
  payload.copy(frame, HEADER);
  return frame;
}

/** The intact records of a segment, and where the intact prefix ends. */
export function readRecords(buf: Buffer): { records: Buffer[]; validBytes: number; corrupt: boolean } {
  const records: Buffer[] = [];
  let off = 0;
  while (off + HEADER <= buf.length) {
    const len = buf.readUInt32LE(off);
    const sum = buf.readUInt32LE(off + 4);
    if (off + HEADER + len > buf.length) break; // torn tail: never acknowledged
    const payload = buf.subarray(off + HEADER, off + HEADER + len);
    if (crc32(payload) !== sum) return { records, validBytes: off, corrupt: true };
    records.push(payload);
    off += HEADER + len;
  }
  return { records, validBytes: off, corrupt: false };
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

  constructor(private readonly opts: SpoolOptions) {}

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
        const { validBytes } = readRecords(readFileSync(path));
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
      this.sealed.push({ name: segmentName(seq, token, 'sealed'), path, token, bytes });
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
    const frame = frameRecord(payload);
    if (this.bytesHeld + frame.length > this.opts.maxBytes) {
      return Promise.reject(new SpoolFullError(`spool holds ${this.bytesHeld} bytes, limit ${this.opts.maxBytes}`));
    }
    this.bytesHeld += frame.length;
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ frame, resolve, reject });
      if (!this.flushing) this.flushing = this.flushLoop();
    });
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.pending.length > 0) {
        const batch = this.pending;
        this.pending = [];
        try {
          const seg = await this.segment();
          const buf = batch.length === 1 ? batch[0]!.frame : Buffer.concat(batch.map((p) => p.frame));
          await seg.fh.write(buf, 0, buf.length, seg.bytes);
          await seg.fh.datasync();
          seg.bytes += buf.length;
          for (const p of batch) p.resolve();
          if (seg.bytes >= this.opts.segmentMaxBytes) await this.seal();
        } catch (err) {
          for (const p of batch) {
            this.bytesHeld -= p.frame.length;
            p.reject(err as Error);
          }
        }
      }
    } finally {
      this.flushing = null;
    }
  }

  private async segment(): Promise<OpenSegment> {
    if (this.current) return this.current;
    const seq = this.nextSeq++;
    const token = randomUUID();
    const path = join(this.opts.dir, segmentName(seq, token, 'open'));
    const fh = await open(path, 'wx');
    fsyncDir(this.opts.dir);
    this.current = { seq, token, path, fh, bytes: 0, openedAt: Date.now() };
    return this.current;
  }

  private async sealIfOld(): Promise<void> {
    const seg = this.current;
    if (!seg || seg.bytes === 0 || this.flushing) return;
    if (Date.now() - seg.openedAt >= this.opts.segmentMaxAgeMs) await this.seal();
  }

  /** Seals the open segment (if it holds data) and hands it to the loader. */
  async seal(): Promise<void> {
    const seg = this.current;
    if (!seg || seg.bytes === 0) return;
    this.current = null;
    await seg.fh.close();
    const name = segmentName(seg.seq, seg.token, 'sealed');
    const path = join(this.opts.dir, name);
    await rename(seg.path, path);
    fsyncDir(this.opts.dir);
    this.sealed.push({ name, path, token: seg.token, bytes: seg.bytes });
    for (const w of this.waiters.splice(0)) w();
  }

  /** The oldest sealed segment, waiting for one if none is ready (null once closed). */
  async next(signal?: AbortSignal): Promise<SealedSegment | null> {
    while (this.sealed.length === 0) {
      if (this.closed || signal?.aborted) return null;
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        signal?.addEventListener('abort', () => resolve(), { once: true });
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
    fsyncDir(dir);
    return target;
  }

  /** Flushes and seals what is pending; afterwards appends are refused. */
  async close(): Promise<void> {
    if (this.flushing) await this.flushing;
    await this.seal();
    this.closed = true;
    if (this.ageTimer) clearInterval(this.ageTimer);
    for (const w of this.waiters.splice(0)) w();
  }
}
