// Versioned, idempotent schema migrations from queries/schema/NNN_name.sql. Every statement
// is itself idempotent (IF NOT EXISTS), and applied versions are recorded, so running the
// migrator on every start is safe on both the embedded engine and a server.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import { queriesDir } from '../paths.js';
import { queryRows } from './client.js';

export interface Migration {
  version: number;
  name: string;
  statements: string[];
}

export interface MigrationParams {
  retentionDays: number;
}

/** Splits a SQL file into statements: comments dropped, `;` at the end of a line ends one. */
export function splitStatements(sql: string): string[] {
  return sql
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('--'))
    .join('\n')
    .split(/;\s*(?:\n|$)/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

export function loadMigrations(params: MigrationParams, dir = join(queriesDir, 'schema')): Migration[] {
  return readdirSync(dir)
    .filter((f) => /^\d{3}_[a-z0-9_]+\.sql$/.test(f))
    .sort()
    .map((file) => {
      const sql = readFileSync(join(dir, file), 'utf8').replaceAll('{{retention_days}}', String(Math.trunc(params.retentionDays)));
      return { version: Number(file.slice(0, 3)), name: file.slice(4, -4), statements: splitStatements(sql) };
    });
}

export async function migrate(client: ClickHouseClient, params: MigrationParams): Promise<Migration[]> {
  await client.command({
    query: `CREATE TABLE IF NOT EXISTS loopwatch_schema_migrations
            (version UInt32, name String, applied_at DateTime DEFAULT now())
            ENGINE = ReplacingMergeTree ORDER BY version`,
  });
  const done = new Set(
    (await queryRows<{ version: number }>(client, 'SELECT version FROM loopwatch_schema_migrations FINAL')).map((r) => Number(r.version)),
  );
  const applied: Migration[] = [];
  for (const m of loadMigrations(params)) {
    if (done.has(m.version)) continue;
    for (const statement of m.statements) await client.command({ query: statement });
    await client.insert({ table: 'loopwatch_schema_migrations', values: [{ version: m.version, name: m.name }], format: 'JSONEachRow' });
    applied.push(m);
  }
  return applied;
}
