// The one way the collector talks to ClickHouse: @clickhouse/client, over HTTP to a server
// when a URL is configured, otherwise in-process through chDB's Connection for that client.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { ClickHouseLogLevel, createClient, drainStream, type ClickHouseClient, type ClickHouseClientConfigOptions, type ClickHouseSettings } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';
import { StartError, type CollectorConfig } from '../config.js';
import { SPAN_COLUMNS, SPAN_INSERT_SQL } from '../ingest/span-rows.js';
import { scopeSettingsPerQuery } from './inline-settings.js';

export type InsertSettings = Record<string, string | number>;
type RawSpanInsert = (body: Buffer, settings: InsertSettings) => Promise<void>;

/** Clients on the embedded engine, with chDB's zero-copy insert for span rows. */
const rawSpanInserts = new WeakMap<ClickHouseClient, RawSpanInsert>();

/**
 * Inserts JSONCompactEachRow rows (`chunks`, concatenated) into otel_traces with per-query
 * settings. On the embedded engine the bytes go to chDB as they are (zero-copy, parsed off the
 * event loop); through the client's exec they would be decoded into one JS string and that
 * string re-encoded for the engine, both on the event loop (~7 us/span, and large garbage). A
 * server gets the same bytes over HTTP.
 */
export async function insertSpanRows(client: ClickHouseClient, chunks: Buffer[], settings: InsertSettings): Promise<void> {
  const raw = rawSpanInserts.get(client);
  if (raw) return raw(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), settings);
  const result = await client.exec({ query: SPAN_INSERT_SQL, values: Readable.from(chunks), clickhouse_settings: settings });
  await drainStream(result.stream);
}

/** chDB's insert errors carry the ClickHouse code as `clickhouseCode`; callers read `code`, as from the client. */
function withClickHouseCode(err: unknown): Error {
  const e = err instanceof Error ? err : new Error(String(err));
  const code = (err as { clickhouseCode?: unknown }).clickhouseCode;
  return Object.assign(new Error(e.message, { cause: e }), { code: code === undefined ? undefined : String(code) });
}

export interface Store {
  client: ClickHouseClient;
  mode: 'embedded' | 'server';
  /** Where the data lives, for humans: a directory or a URL without credentials. */
  location: string;
  close(): Promise<void>;
}

/**
 * The embedded engine installs handlers for fatal signals that log and then wait for a thread
 * chDB does not run: after a fatal error (V8 out of memory aborts the process) the collector hung
 * forever, holding its port and data directory, and a process manager never restarted it. A
 * listener added and removed through Node (libuv) leaves the default action, so such a process
 * dies and is restarted; acknowledged spans wait in the spool (they survive kill -9 too). Not
 * SIGSEGV: V8's WebAssembly bounds checks rely on its own handler for it.
 */
export function restoreFatalSignals(): void {
  const noop = () => undefined;
  for (const sig of ['SIGABRT', 'SIGBUS', 'SIGFPE', 'SIGILL'] as const) {
    process.on(sig, noop);
    process.off(sig, noop);
  }
}

export function openStore(config: Pick<CollectorConfig, 'dataDir' | 'clickhouse'>): Store {
  const ch = config.clickhouse;
  if (ch.url) {
    let client: ClickHouseClient;
    // The client reads a database from the URL's path and a user from its user info, over the
    // options and with a plain-text warning each (between the JSON log lines), while the banner
    // and status named the option's database: taken from the URL here, and the URL passed bare.
    const server = new URL(ch.url);
    // percent-decoded; a bad escape is named without the text around it (the user info holds a password)
    const decoded = (text: string, what: string): string => {
      try {
        return decodeURIComponent(text);
      } catch {
        throw new StartError(`the ClickHouse URL's ${what} is not valid percent-encoding (each % must be followed by two hex digits, and the bytes they make must be UTF-8; write a literal % as %25)`);
      }
    };
    const pathDb = decoded(server.pathname.replace(/^\/+|\/+$/g, ''), 'path');
    let database = ch.database;
    if (pathDb) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(pathDb)) throw new StartError(`the ClickHouse URL's path names the database ${JSON.stringify(pathDb)}: it must be a plain identifier`);
      if (ch.database !== 'default' && ch.database !== pathDb) {
        throw new StartError(`the ClickHouse URL names the database ${pathDb} and LOOPWATCH_CLICKHOUSE_DATABASE ${ch.database}: name it once`);
      }
      database = pathDb;
    }
    const user = server.username ? decoded(server.username, 'user name') : ch.user;
    const password = server.password ? decoded(server.password, 'password') : ch.password;
    server.pathname = '/';
    server.username = server.password = '';
    try {
      client = createClient({
        url: server.toString().replace(/\/$/, ''),
        username: user,
        password,
        database,
        request_timeout: 60_000,
        clickhouse_settings: { date_time_input_format: 'best_effort' },
        // the client's own log is plain text (17 lines per failed request) between the collector's
        // JSON lines; the collector logs the failures it sees itself (loader, schema set-up)
        log: { level: ClickHouseLogLevel.OFF },
      });
    } catch (err) {
      // a URL the client refuses (an unknown parameter such as ?password=): said, not a stack trace
      throw new StartError(`the ClickHouse URL is not usable: ${(err as Error).message} (a user and password go in LOOPWATCH_CLICKHOUSE_USER and LOOPWATCH_CLICKHOUSE_PASSWORD)`);
    }
    return { client, mode: 'server', location: `${server.protocol}//${server.host}/${database}`, close: () => client.close() };
  }
  const dir = resolve(join(config.dataDir, 'chdb'));
  mkdirSync(dir, { recursive: true });
  // The embedded engine takes the process's time zone, and a DateTime column without one is read
  // and written in it: under TZ=America/Los_Angeles a loop's times came back as local text that
  // the findings read as UTC, an hour off or ending before they began around a DST change, and
  // degradation withdrew findings of days it had not judged. The store keeps UTC whatever the
  // machine's zone (set before the engine starts: it reads the zone once); every time the
  // collector shows is UTC (ISO-8601, Z) anyway.
  process.env.TZ = 'UTC';
  // chdb types its Connection against @clickhouse/client-common, the client bundles its own
  // copy of the same interface; the shapes are identical.
  let chdb: ReturnType<typeof createChdbConnection>;
  try {
    chdb = createChdbConnection({ path: dir });
  } catch (err) {
    // most often another process has the embedded database open (the engine prints its own line
    // about the lock; the error says only that the connection failed): a message, not a stack
    throw new StartError(`cannot open the embedded database in ${dir}: ${(err as Error).message} (is another process using this data directory? choose another with --data-dir)`);
  }
  restoreFatalSignals();
  const connection = scopeSettingsPerQuery(chdb as unknown as NonNullable<ClickHouseClientConfigOptions['connection']>);
  const client = createClient({ connection });
  const columns = [...SPAN_COLUMNS];
  rawSpanInserts.set(client, async (body, settings) => {
    if (body.length === 0) return;
    try {
      // INSERT INTO otel_traces (…) SETTINGS … FORMAT JSONCompactEachRow: settings scoped to the query
      await chdb.chdb.rawInsert({ table: 'otel_traces', columns, values: body, format: 'JSONCompactEachRow', settings });
    } catch (err) {
      throw withClickHouseCode(err);
    }
  });
  return { client, mode: 'embedded', location: dir, close: () => client.close() };
}

/** Whether a store's error says its disk is full (the embedded engine's "Cannot reserve … not enough space", ENOSPC). */
export function isDiskFull(message: string): boolean {
  return /not enough space|no space left|ENOSPC|cannot reserve/i.test(message);
}

/** Runs a query and returns its rows (JSONEachRow), with bound parameters only. */
export async function queryRows<T>(
  client: ClickHouseClient,
  query: string,
  params: Record<string, unknown> = {},
  settings?: ClickHouseSettings,
): Promise<T[]> {
  const rs = await client.query({ query, format: 'JSONEachRow', query_params: params, clickhouse_settings: settings });
  return rs.json<T>();
}
