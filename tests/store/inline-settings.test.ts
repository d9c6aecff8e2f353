// Per-query settings on the embedded engine stay with their query (chDB's own Connection
// would apply them session-wide).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { drainStream } from '@clickhouse/client';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore } from '../../collector/src/store/client.js';
import { queryRows } from '../../collector/src/store/client.js';
import { withInlineSettings } from '../../collector/src/store/inline-settings.js';

const dir = mkdtempSync(join(tmpdir(), 'lw-settings-'));
const store = openStore({ dataDir: dir, clickhouse: { user: 'default', password: '', database: 'default' } });
afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('per-query settings on the embedded store', () => {
  it('places SETTINGS before a trailing FORMAT, else at the end', () => {
    expect(withInlineSettings('INSERT INTO t (a) FORMAT JSONEachRow', { insert_deduplication_token: "x'y" })).toBe(
      "INSERT INTO t (a) SETTINGS insert_deduplication_token = 'x''y' FORMAT JSONEachRow",
    );
    expect(withInlineSettings('SELECT 1\nFORMAT JSONEachRow', { max_threads: 2 })).toBe('SELECT 1 SETTINGS max_threads = 2\nFORMAT JSONEachRow');
    expect(withInlineSettings('INSERT INTO t SELECT 1;', { a: true })).toBe('INSERT INTO t SELECT 1 SETTINGS a = 1');
    expect(() => withInlineSettings('SELECT 1', { 'a; DROP': 1 })).toThrow(/invalid setting name/);
  });

  it('a dedup token applies to its insert only: a later insert without one is not dropped', async () => {
    const c = store.client;
    await c.command({ query: 'CREATE TABLE t (a UInt64) ENGINE = MergeTree ORDER BY a SETTINGS non_replicated_deduplication_window = 100' });
    const insert = async (token?: string) => {
      const r = await c.exec({
        query: 'INSERT INTO t (a) FORMAT JSONEachRow',
        values: Readable.from(['{"a":1}\n']),
        clickhouse_settings: token ? { insert_deduplication_token: token } : {},
      });
      await drainStream(r.stream);
    };
    await insert('tok-1');
    await insert('tok-1'); // a replay: dropped
    await insert(); // no token: must not inherit tok-1 (it did, and was dropped, before scoping)
    await c.command({ query: 'INSERT INTO t SELECT 2', clickhouse_settings: { insert_deduplication_token: 'tok-2' } });
    await c.command({ query: 'INSERT INTO t SELECT 3' });
    const [row] = await queryRows<{ n: string }>(c, 'SELECT toString(count()) AS n FROM t');
    expect(row!.n).toBe('4'); // tok-1 once, the untokened insert, tok-2, SELECT 3
    const [setting] = await queryRows<{ value: string }>(c, "SELECT value FROM system.settings WHERE name = 'insert_deduplication_token'");
    expect(setting!.value).toBe('');
  });
});
