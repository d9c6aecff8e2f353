// A spool segment damaged on disk (a flipped bit in a record's length or payload) loses the
// spans of the damaged record only: the records after it are found again by their framing and
// stored, the segment is kept in spool/quarantine, and the status says so. An open segment's
// torn tail (a write the process did not finish, never acknowledged) is still cut quietly.
// A real collector process (the built CLI), kill -9, then the same data directory on the
// embedded store.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { frameRecord, readRecords, Spool } from '../../collector/src/spool/spool.js';
import { tempDirs } from '../helpers/temp-dirs.js';
import { ensureBuilt, postProto, queryDir, range, startProcess, stopProcess, toolSpansRequest, waitDrained, type CollectorProcess } from './helpers.js';

const tempDir = tempDirs();
const records = (...texts: string[]) => texts.map((t) => frameRecord(Buffer.from(t)));
const text = (r: { records: Buffer[] }) => r.records.map((b) => b.toString());

describe('reading a segment', () => {
  it('a record whose length or payload is damaged costs that record only', () => {
    const [a, b, c] = records('["a"]\n', '["bb"]\n', '["ccc"]\n');
    const lengthFlipped = Buffer.concat([a!, b!, c!]);
    lengthFlipped[a!.length + 2] ^= 0x10; // b's length now runs past the end
    expect(readRecords(lengthFlipped)).toMatchObject({ corrupt: true, unreadableBytes: b!.length });
    expect(text(readRecords(lengthFlipped))).toEqual(['["a"]\n', '["ccc"]\n']);
    const payloadFlipped = Buffer.concat([a!, b!, c!]);
    payloadFlipped[a!.length + 9] ^= 0x01;
    expect(text(readRecords(payloadFlipped, 'open'))).toEqual(['["a"]\n', '["ccc"]\n']);
    expect(readRecords(payloadFlipped, 'open').corrupt).toBe(true);
  });

  it("an open segment's torn tail (a half-written record, or zeros) is cut, not called corruption; a sealed segment has none", () => {
    const [a, b] = records('["a"]\n', '["bb"]\n');
    for (const tail of [b!.subarray(0, 10), Buffer.alloc(64)]) {
      const buf = Buffer.concat([a!, tail]);
      expect(readRecords(buf, 'open')).toMatchObject({ corrupt: false, validBytes: a!.length, unreadableBytes: 0 });
      expect(readRecords(buf, 'sealed')).toMatchObject({ corrupt: true, unreadableBytes: tail.length });
    }
  });
});

describe('an open segment left by a crash', () => {
  it('is cut at its torn tail only: a damaged record inside is kept for the loader, with the records after it', () => {
    const dir = tempDir('lw-spool-open-');
    const [a, b, c] = records('["a"]\n', '["bb"]\n', '["ccc"]\n');
    const file = Buffer.concat([a!, b!, c!, frameRecord(Buffer.from('["torn"]\n')).subarray(0, 9)]);
    file[a!.length + 9] ^= 0x01; // b's payload
    const name = 'seg-0000000000000001-0f8fad5b-d9cb-469f-a165-70867728950e';
    writeFileSync(join(dir, `${name}.open`), file);
    const spool = new Spool({ dir, maxBytes: 1 << 20, segmentMaxBytes: 1 << 20, segmentMaxAgeMs: 60_000 });
    spool.start();
    try {
      const sealed = readFileSync(join(dir, `${name}.sealed`));
      expect(sealed.length).toBe(a!.length + b!.length + c!.length); // the torn record cut, the damaged one kept
      expect(readRecords(sealed)).toMatchObject({ corrupt: true, unreadableBytes: b!.length });
      expect(text(readRecords(sealed))).toEqual(['["a"]\n', '["ccc"]\n']);
    } finally {
      void spool.close();
    }
  });
});

describe('a damaged spool on restart', () => {
  let dir: string;
  let p: CollectorProcess | undefined;
  beforeAll(() => {
    ensureBuilt();
    dir = tempDir('lw-spool-corrupt-');
  });
  afterAll(async () => {
    if (p) await stopProcess(p, 'SIGKILL');
  });

  it('stores every acknowledged span but those of the damaged records, keeps the segments, and reports them', async () => {
    // acknowledged into the spool only: the store (a server) cannot be reached; small segments
    const first = await startProcess(dir, { LOOPWATCH_SPOOL_SEGMENT_MAX_BYTES: '60000', LOOPWATCH_SPOOL_SEGMENT_MAX_AGE_MS: '600000' }, ['--clickhouse-url', 'http://127.0.0.1:1']);
    const acked: string[][] = [];
    for (let r = 0; r < 8; r++) {
      const { body, spanIds } = toolSpansRequest(range(70, r * 100, 100));
      expect((await postProto(first.url, body)).status).toBe(200);
      acked.push(spanIds);
    }
    await stopProcess(first, 'SIGKILL');
    const spoolDir = join(dir, 'spool');
    const names = readdirSync(spoolDir).filter((n) => n.startsWith('seg-')).sort();
    const sealed = names.filter((n) => n.endsWith('.sealed'));
    // (whether the last one is still open depends on the loader's timing: either way it is damaged)
    const last = names.at(-1)!;
    expect(sealed.length).toBeGreaterThan(0);
    expect(names.length).toBeGreaterThan(1);
    expect(sealed[0]).not.toBe(last);
    // which request each record holds: records are written in request order, one per request
    const offsets = (name: string) => {
      const buf = readFileSync(join(spoolDir, name));
      return readRecords(buf).records.map((rec) => rec.byteOffset - buf.byteOffset - 8);
    };
    const perSegment = names.map((n) => offsets(n).length);
    expect(perSegment.reduce((x, y) => x + y, 0)).toBe(8);
    const requestOf = (segment: number, record: number) => perSegment.slice(0, segment).reduce((x, y) => x + y, 0) + record;
    // a flipped bit in the length of the first sealed segment's second record (it now runs past the end)
    const s0 = join(spoolDir, sealed[0]!);
    const s0Buf = readFileSync(s0);
    const s0Records = offsets(sealed[0]!);
    const damaged = s0Records.length > 1 ? 1 : 0;
    const lostA = requestOf(names.indexOf(sealed[0]!), damaged);
    s0Buf[s0Records[damaged]! + 3] ^= 0x40;
    writeFileSync(s0, s0Buf);
    // a flipped byte in the payload of the last segment's first record
    const o = join(spoolDir, last);
    const oBuf = readFileSync(o);
    oBuf[offsets(last)[0]! + 8 + 20] ^= 0x01;
    writeFileSync(o, oBuf);
    const lostB = requestOf(names.length - 1, 0);

    p = await startProcess(dir);
    await waitDrained(p.url);
    const status = (await (await fetch(`${p.url}/api/v1/status`)).json()) as { healthy: boolean; problems: string[] };
    expect(status.healthy).toBe(false);
    expect(status.problems.join('\n')).toMatch(/^2 spool segments had unreadable records \(\d+ bytes: disk corruption\); the spans in them are lost, the rest was stored; kept in <data-dir>\/spool\/quarantine$/m);
    const metrics = await (await fetch(`${p.url}/metrics`)).text();
    expect(metrics).toMatch(/^loopwatch_spool_corrupt_segments_total 2$/m);
    expect(p.output()).toContain('spool segment has unreadable records (disk corruption)');
    await stopProcess(p);
    p = undefined;
    expect(readdirSync(join(spoolDir, 'quarantine')).filter((n) => n.startsWith('seg-'))).toHaveLength(2);

    const stored = new Set(queryDir<{ id: string }>(dir, "SELECT lower(hex(unhex(SpanId))) AS id FROM otel_traces WHERE ServiceName = 'safety-test'").map((r) => r.id));
    const expected = acked.flatMap((ids, r) => (r === lostA || r === lostB ? [] : ids));
    expect(expected).toHaveLength(600);
    expect(expected.filter((id) => !stored.has(id))).toEqual([]);
    expect(stored.size).toBe(600);
  });
});
