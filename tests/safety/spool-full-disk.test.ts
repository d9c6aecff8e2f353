// A disk that fills up in the middle of a spool write: the batch is refused (its requests get a
// 503) and none of it may stay in the segment. Before, the file kept the records of a short write
// past the point the next write overwrote: the loader stored the refused spans (twice, once the
// exporter retried them) and reported the rest as disk corruption. The kernel's file size limit
// (RLIMIT_FSIZE, `ulimit -f`) cuts a write short exactly as a full disk does, in a process of its
// own: the real spool, the real file system, nothing simulated in between.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../collector/src/paths.js';
import { assertBuilt } from '../cli/helpers.js';
import { tempDirs } from '../helpers/temp-dirs.js';

const tempDir = tempDirs();

const CHILD = `
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
const { Spool, readRecords } = await import(process.env.SPOOL_MODULE);
process.on('SIGXFSZ', () => {}); // past the limit a write then fails (EFBIG) instead of ending the process
const dir = process.argv[2];
const spool = new Spool({ dir, maxBytes: 1 << 24, segmentMaxBytes: 1 << 24, segmentMaxAgeMs: 60_000 });
spool.start();
const appended = [];
// a, then b, which the limit (64 KiB) cuts short after about 54 KB, then c, written where b began
for (const [name, size] of [['a', 10_000], ['b', 100_000], ['c', 5_000]]) {
  appended.push(await spool.append(Buffer.alloc(size, name)).then(() => name + ' ok', (e) => name + ' refused'));
}
await spool.seal();
const sealed = readdirSync(dir).filter((n) => n.endsWith('.sealed'));
const r = readRecords(readFileSync(join(dir, sealed[0])));
console.log(JSON.stringify({ appended, records: r.records.map((x) => String.fromCharCode(x[0]) + x.length), unreadable: r.unreadableBytes, corrupt: r.corrupt }));
await spool.close();
`;

describe('spool on a full disk', () => {
  it('a write cut short is refused and leaves nothing behind: the segment holds exactly the acknowledged records', () => {
    assertBuilt();
    const dir = tempDir('lw-spool-full-');
    const script = join(tempDir('lw-spool-full-script-'), 'child.mjs');
    writeFileSync(script, CHILD);
    const out = execFileSync('bash', ['-c', 'ulimit -f 64 && exec "$0" "$@"', process.execPath, script, dir], {
      encoding: 'utf8',
      env: { ...process.env, SPOOL_MODULE: pathToFileURL(join(packageRoot, 'dist', 'collector', 'src', 'spool', 'spool.js')).href },
    });
    const r = JSON.parse(out) as { appended: string[]; records: string[]; unreadable: number; corrupt: boolean };
    expect(r.appended).toEqual(['a ok', 'b refused', 'c ok']);
    expect(r.records).toEqual(['a10000', 'c5000']);
    expect(r.unreadable).toBe(0);
    expect(r.corrupt).toBe(false);
  });
});
