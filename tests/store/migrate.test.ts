// Migrations on the embedded engine: a fresh store gets every version once, re-running is a
// no-op, and a store migrated before 005 (a first version of the features as the view
// loopwatch_detector_calls, no kept features) is upgraded in place.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStore, queryRows } from '../../collector/src/store/client.js';
import { loadMigrations, migrate } from '../../collector/src/store/migrate.js';
import { withCallsTable } from '../../collector/src/detect/run-detectors.js';

const dir = mkdtempSync(join(tmpdir(), 'lw-migrate-'));
const store = openStore({ dataDir: dir, clickhouse: { user: 'default', password: '', database: 'default' } });
const client = store.client;
afterAll(async () => {
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

// the columns of the per-call features SELECT the detector runner materializes
const callColumns = () =>
  withCallsTable(client, { since: '0.000', until: '1.000' }, async (table) =>
    (await queryRows<{ name: string }>(client, 'DESCRIBE TABLE {table:Identifier}', { table })).map((r) => r.name));
const hasView = async (name: string) =>
  (await queryRows<{ n: number }>(client, 'SELECT count() AS n FROM system.tables WHERE database = currentDatabase() AND name = {name:String}', { name }))[0]!.n > 0;
const featureColumns = async () =>
  (await queryRows<{ name: string }>(client, "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'agent_call_features' ORDER BY position")).map((r) => r.name);

describe('schema migrations', () => {
  it('applies every version once on a fresh store, and nothing on a second run', async () => {
    const all = loadMigrations({ retentionDays: 30 }).map((m) => m.version);
    expect((await migrate(client, { retentionDays: 30 })).map((m) => m.version)).toEqual(all);
    expect(await migrate(client, { retentionDays: 30 })).toEqual([]);
    // the kept features are the SELECT's columns, in its order, plus the version
    expect(await featureColumns()).toEqual([...(await callColumns()), 'version']);
    expect(await hasView('loopwatch_detector_calls')).toBe(false);
  });

  it('upgrades a store migrated before the kept features: the table created, the old view dropped', async () => {
    // the store as version 4 left it: an older view, no features table, no record of 005
    await client.command({ query: 'DROP VIEW IF EXISTS loopwatch_call_features' });
    await client.command({ query: 'DROP TABLE IF EXISTS agent_call_features' });
    await client.command({ query: 'CREATE OR REPLACE VIEW loopwatch_detector_calls AS SELECT {since:DateTime64(3)} AS old_column' });
    await client.command({ query: 'DELETE FROM loopwatch_schema_migrations WHERE version >= 5' });
    expect(await hasView('loopwatch_detector_calls')).toBe(true);

    const applied = await migrate(client, { retentionDays: 30 });
    expect(applied.map((m) => m.name)).toEqual(['call_features', 'detector_calls_file']);
    expect(await hasView('loopwatch_detector_calls')).toBe(false);
    expect(await featureColumns()).toEqual([...(await callColumns()), 'version']);
  });
});
