// chDB's Connection applies a request's clickhouse_settings with session-wide `SET`s, so a
// setting meant for one query (an insert_deduplication_token above all) stays in force for
// every later query of the process: later inserts were silently dropped as duplicates. This
// wrapper turns per-request settings into the query's own SETTINGS clause, which scopes them
// to that query exactly as the HTTP interface of a server does.
import type { ClickHouseClientConfigOptions } from '@clickhouse/client';

type Connection = NonNullable<ClickHouseClientConfigOptions['connection']>;
type Settings = Record<string, unknown>;

function literal(v: unknown): string {
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (typeof v === 'boolean') return v ? '1' : '0';
  return `'${String(v).replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

const TRAILING_FORMAT = /\s+FORMAT\s+[A-Za-z0-9_]+\s*;?\s*$/i;

/** The statement with `SETTINGS k = v, …` where ClickHouse scopes it to the statement. */
export function withInlineSettings(query: string, settings: Settings | undefined): string {
  const entries = Object.entries(settings ?? {}).filter(([, v]) => v !== undefined);
  if (entries.length === 0) return query;
  for (const [k] of entries) if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`invalid setting name ${JSON.stringify(k)}`);
  const clause = ` SETTINGS ${entries.map(([k, v]) => `${k} = ${literal(v)}`).join(', ')}`;
  const m = TRAILING_FORMAT.exec(query);
  if (m) return query.slice(0, m.index) + clause + query.slice(m.index);
  return query.replace(/\s*;?\s*$/, '') + clause;
}

export function scopeSettingsPerQuery(connection: Connection): Connection {
  const wrap = <K extends 'query' | 'exec' | 'command' | 'insert'>(name: K) => {
    const original = (connection[name] as (p: { query: string; clickhouse_settings?: Settings }) => unknown).bind(connection);
    return (params: { query: string; clickhouse_settings?: Settings }) =>
      original({ ...params, query: withInlineSettings(params.query, params.clickhouse_settings), clickhouse_settings: {} });
  };
  return new Proxy(connection, {
    get(target, prop) {
      if (prop === 'query' || prop === 'exec' || prop === 'command' || prop === 'insert') return wrap(prop);
      // the connection keeps private fields: its methods must run with the real object as `this`
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
