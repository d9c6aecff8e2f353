// The one way the collector talks to ClickHouse: @clickhouse/client, over HTTP to a server
// when a URL is configured, otherwise in-process through chDB's Connection for that client.
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createClient, type ClickHouseClient, type ClickHouseClientConfigOptions } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';
import type { CollectorConfig } from '../config.js';
import { scopeSettingsPerQuery } from './inline-settings.js';

export interface Store {
  client: ClickHouseClient;
  mode: 'embedded' | 'server';
  /** Where the data lives, for humans: a directory or a URL without credentials. */
  location: string;
  close(): Promise<void>;
}

export function openStore(config: Pick<CollectorConfig, 'dataDir' | 'clickhouse'>): Store {
  const ch = config.clickhouse;
  if (ch.url) {
    const client = createClient({
      url: ch.url,
      username: ch.user,
      password: ch.password,
      database: ch.database,
      request_timeout: 60_000,
      clickhouse_settings: { date_time_input_format: 'best_effort' },
    });
    const u = new URL(ch.url);
    return { client, mode: 'server', location: `${u.protocol}//${u.host}/${ch.database}`, close: () => client.close() };
  }
  const dir = resolve(join(config.dataDir, 'chdb'));
  mkdirSync(dir, { recursive: true });
  // chdb types its Connection against @clickhouse/client-common, the client bundles its own
  // copy of the same interface; the shapes are identical.
  const connection = scopeSettingsPerQuery(createChdbConnection({ path: dir }) as unknown as NonNullable<ClickHouseClientConfigOptions['connection']>);
  const client = createClient({ connection });
  return { client, mode: 'embedded', location: dir, close: () => client.close() };
}

/** Runs a query and returns its rows (JSONEachRow), with bound parameters only. */
export async function queryRows<T>(client: ClickHouseClient, query: string, params: Record<string, unknown> = {}): Promise<T[]> {
  const rs = await client.query({ query, format: 'JSONEachRow', query_params: params });
  return rs.json<T>();
}
