// Versioned, idempotent schema migrations from queries/schema/NNN_name.sql. Every statement
// is itself idempotent (IF NOT EXISTS), and applied versions are recorded, so running the
// migrator on every start is safe on both the embedded engine and a server. Views and functions
// then follow the release: each is made again when the statements that made it in the store are
// not the ones the migrations end with (see syncDefinitions).
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ClickHouseClient } from '@clickhouse/client';
import { StartError } from '../config.js';
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

/** What a start did to the store: the migrations applied, the views and functions made again. */
export interface MigrationResult {
  applied: Migration[];
  remade: string[];
  /** The store had no migrations before: made from nothing now. */
  fresh: boolean;
  /** The schema version the store is at now: its newest applied migration (0 for none). */
  version: number;
}

export async function migrate(client: ClickHouseClient, params: MigrationParams): Promise<MigrationResult> {
  await client.command({
    query: `CREATE TABLE IF NOT EXISTS loopwatch_schema_migrations
            (version UInt32, name String, applied_at DateTime DEFAULT now())
            ENGINE = ReplacingMergeTree ORDER BY version`,
  });
  const done = new Set(
    (await queryRows<{ version: number }>(client, 'SELECT version FROM loopwatch_schema_migrations FINAL')).map((r) => Number(r.version)),
  );
  const migrations = loadMigrations(params);
  // a store a newer release migrated: its rules and kept data are not this release's (an older
  // collector on it ran without a word, its passes flipping findings between the two rule sets)
  const newest = Math.max(0, ...migrations.map((m) => m.version));
  const ahead = [...done].filter((v) => v > newest);
  if (ahead.length > 0) {
    throw new StartError(
      `the store was migrated by a newer Loopwatch (schema version ${Math.max(...ahead)}; this release knows up to ${newest}): run that release or a later one; going back is not supported`,
    );
  }
  const applied: Migration[] = [];
  for (const m of migrations) {
    if (done.has(m.version)) continue;
    for (const statement of m.statements) await client.command({ query: statement });
    await client.insert({ table: 'loopwatch_schema_migrations', values: [{ version: m.version, name: m.name }], format: 'JSONEachRow' });
    applied.push(m);
  }
  const remade = await syncDefinitions(client, migrations, done.size === 0);
  return { applied, remade, fresh: done.size === 0, version: Math.max(0, ...done, ...applied.map((m) => m.version)) };
}

/**
 * The functions a view calls, and those they call: the engine writes a SQL function's body into a
 * view that calls it when the view is made, so a function made again later does not reach the
 * view (a store kept 004's model key in loopwatch_model_keys_mv after 011 changed it, fresh stores
 * too: Bedrock's global. models were registered under keys the price lookup never asked for).
 */
export function calledFunctions(o: SchemaObject, functions: ReadonlyMap<string, SchemaObject>): SchemaObject[] {
  const found = new Map<string, SchemaObject>();
  const scan = (statements: string[]) => {
    const text = statements.join('\n');
    for (const [name, f] of functions) {
      if (found.has(name) || !new RegExp(`(?<![A-Za-z0-9_])${name}\\s*\\(`).test(text)) continue;
      found.set(name, f);
      scan(f.statements);
    }
  };
  scan(o.statements);
  return [...found.values()].sort((a, b) => (a.name < b.name ? -1 : 1));
}

/** A view's checksum covers the functions it calls as well (see calledFunctions). */
const definitionChecksum = (o: SchemaObject, called: SchemaObject[] = []): string =>
  createHash('sha256').update([...o.statements, ...called.flatMap((f) => f.statements)].join('\n;\n')).digest('hex').slice(0, 32);

/**
 * Makes again each view and function whose statements in the store are not the ones the
 * migrations end with (recorded by checksum in loopwatch_schema_definitions), and returns their
 * names. Migrations that were changed after a store applied them left it with the older
 * definitions under the same version, and nothing said so: a review found a store upgraded past
 * an earlier 014 that kept the error rule which made false critical error_loops, and one past an
 * earlier 015 that priced OpenLLMetry's cache reads as input. Views and functions hold no data;
 * a materialized view made again carries what arrives from then on (rows it made before stay as
 * they were). A view is made again too when a function it calls changed (see calledFunctions).
 * A store the migrations just made from nothing has the release's definitions: they are recorded,
 * not made again, but for views made before a function they call was made again. A store from
 * before this record has each made again once.
 */
export async function syncDefinitions(client: ClickHouseClient, migrations: Migration[], fresh: boolean): Promise<string[]> {
  await client.command({
    query: `CREATE TABLE IF NOT EXISTS loopwatch_schema_definitions
            (name String, checksum String, applied_at DateTime64(3) DEFAULT now64(3))
            ENGINE = ReplacingMergeTree(applied_at) ORDER BY name`,
  });
  const recorded = new Map(
    (await queryRows<{ name: string; checksum: string }>(client, 'SELECT name, checksum FROM loopwatch_schema_definitions FINAL')).map((r) => [r.name, r.checksum]),
  );
  // functions first: the views' statements call them
  const objects = schemaObjects(migrations).filter((o) => o.kind !== 'table');
  const functions = new Map(objects.filter((o) => o.kind === 'function').map((o) => [o.name, o]));
  const ordered = [...functions.values(), ...objects.filter((o) => o.kind === 'view')];
  // objects come in the order the migrations last made them: a view made before a function it
  // calls was made again holds the older body, also in a store the migrations just made
  const madeAt = new Map(objects.map((o, i) => [o.name, i]));
  const remade: string[] = [];
  const record: { name: string; checksum: string }[] = [];
  for (const o of ordered) {
    const called = o.kind === 'view' ? calledFunctions(o, functions) : [];
    const checksum = definitionChecksum(o, called);
    const stale = called.some((f) => madeAt.get(f.name)! > madeAt.get(o.name)!);
    if (recorded.get(o.name) === checksum) continue;
    if (!fresh || stale) {
      await client.command({ query: `DROP ${o.kind === 'function' ? 'FUNCTION' : 'VIEW'} IF EXISTS ${o.name}` });
      for (const statement of o.statements) await client.command({ query: statement });
      remade.push(o.name);
    }
    record.push({ name: o.name, checksum });
  }
  if (record.length > 0) await client.insert({ table: 'loopwatch_schema_definitions', values: record, format: 'JSONEachRow' });
  return remade;
}

const CREATE = /^CREATE\s+(?:OR\s+REPLACE\s+)?(TABLE|VIEW|MATERIALIZED\s+VIEW|FUNCTION)\s+(?:IF\s+NOT\s+EXISTS\s+)?([A-Za-z_][A-Za-z0-9_]*)/i;
const ALTER = /^ALTER\s+TABLE\s+([A-Za-z_][A-Za-z0-9_]*)/i;
const DROP = /^DROP\s+(?:TABLE|VIEW|FUNCTION)\s+(?:IF\s+EXISTS\s+)?([A-Za-z_][A-Za-z0-9_]*)/i;

export interface SchemaObject {
  name: string;
  kind: 'table' | 'view' | 'function';
  /** What makes it as the migrations leave it: its last CREATE, then the ALTERs of it after that. */
  statements: string[];
}

/**
 * The tables, views and functions the migrations leave behind, each with the statements that make
 * it as they leave it, in the order the migrations made them. Nothing that deletes data (a
 * TRUNCATE, a DELETE) is among them.
 */
export function schemaObjects(migrations: Migration[]): SchemaObject[] {
  const objects = new Map<string, SchemaObject>();
  for (const m of migrations) {
    for (const statement of m.statements) {
      const create = CREATE.exec(statement);
      if (create) {
        const name = create[2]!;
        objects.delete(name); // made again: last in the order
        const kind = /^FUNCTION$/i.test(create[1]!) ? 'function' : /VIEW$/i.test(create[1]!) ? 'view' : 'table';
        objects.set(name, { name, kind, statements: [statement] });
        continue;
      }
      const alter = ALTER.exec(statement);
      if (alter) {
        objects.get(alter[1]!)?.statements.push(statement);
        continue;
      }
      const drop = DROP.exec(statement);
      if (drop) objects.delete(drop[1]!);
    }
  }
  return [...objects.values()];
}

/**
 * Makes again the views and functions that a store whose migrations are all recorded as applied
 * lacks (a view someone dropped, a definition lost with a damaged disk): without a missing
 * materialized view, spans would be stored in otel_traces and never reach the tables the
 * detectors read, and nothing would say so. They hold no data, so making them again loses
 * nothing; a materialized view made again carries only what arrives from now on. A missing table
 * is not made again (an empty table would take the name of a detached one, whose data could then
 * not be attached back; the embedded engine cannot list detached tables): it is reported. Returns
 * the names made again, and those not made, with why; the start goes on either way.
 */
export async function restoreMissingObjects(client: ClickHouseClient, params: MigrationParams): Promise<{ restored: string[]; failed: Record<string, string> }> {
  const [present] = await queryRows<{ tables: string[]; functions: string[] }>(
    client,
    `SELECT (SELECT groupArray(name) FROM system.tables WHERE database = currentDatabase()) AS tables,
            (SELECT groupArray(name) FROM system.functions WHERE origin = 'SQLUserDefined') AS functions`,
  );
  const tables = new Set(present?.tables ?? []);
  const functions = new Set(present?.functions ?? []);
  const missing = schemaObjects(loadMigrations(params)).filter((o) => !(o.kind === 'function' ? functions : tables).has(o.name));
  const restored: string[] = [];
  const failed: Record<string, string> = {};
  for (const o of missing) {
    if (o.kind === 'table') {
      failed[o.name] = `table missing, not made again here (an empty one would take its name): ATTACH TABLE ${o.name} if it was detached`;
      continue;
    }
    try {
      for (const statement of o.statements) await client.command({ query: statement });
      restored.push(o.name);
    } catch (err) {
      failed[o.name] = (err as Error).message;
    }
  }
  return { restored, failed };
}
