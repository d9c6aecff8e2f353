// What a start says of the store's schema: a new store's making is not news (debug), an upgrade
// is (info), with the version the store is at after it, also when the migration it applies is
// numbered below one applied before (a store of a build that had 020 and not yet 019 said
// "version 19" at 20). A real collector on the embedded engine, restarted on its data directory.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { createCollector, type Collector } from '../../collector/src/collector.js';
import { loadConfig } from '../../collector/src/config.js';
import { loadMigrations } from '../../collector/src/store/migrate.js';

const dataDir = mkdtempSync(join(tmpdir(), 'lw-upgrade-log-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

/** A collector on the data directory, and the messages it logged at info and above. */
async function start(): Promise<{ collector: Collector; messages: string[] }> {
  const messages: string[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (messages.push((JSON.parse(chunk.toString()) as { msg: string }).msg), done()) });
  const config = loadConfig({ port: 0, grpcPort: 'off', dataDir, detect: { enabled: false } }, {});
  const collector = await createCollector(config, pino({ level: 'info' }, sink));
  await collector.listen();
  return { collector, messages };
}

describe('the schema at start, in the log', () => {
  it('a new store says nothing of its schema; an upgrade says the version the store is at', async () => {
    const newest = Math.max(...loadMigrations({ retentionDays: 30 }).map((m) => m.version));
    let c = await start();
    expect(c.messages.filter((m) => /schema|made again/.test(m))).toEqual([]);
    // a store with every migration but one below the newest (a build that had the newest first)
    await c.collector.store.client.command({ query: `DELETE FROM loopwatch_schema_migrations WHERE version = ${newest - 1}` });
    await c.collector.close();

    c = await start();
    expect(c.messages.filter((m) => /schema/.test(m))).toEqual([`store schema migrated to version ${newest} (1 migration applied)`]);
    await c.collector.close();
  });
});
