// The retention (--retention-days) is a TTL written into each table when the migration creates
// it. A later start with another value must change those TTLs: otherwise the store would go on
// deleting data after the old number of days (sooner than the user just asked for) while the
// collector reports the new one. Applied on every start after the migrations; a no-op when the
// TTLs already match.
import type { ClickHouseClient } from '@clickhouse/client';
import { queryRows } from './client.js';
import { loadMigrations } from './migrate.js';

export interface RetentionChange {
  table: string;
  fromDays: number;
  toDays: number;
}

/** The tables whose CREATE statement (in queries/schema) carries the retention TTL. */
export function retentionTables(): Set<string> {
  const names = new Set<string>();
  for (const m of loadMigrations({ retentionDays: 1 })) {
    for (const s of m.statements) {
      const name = /^CREATE TABLE IF NOT EXISTS\s+`?(\w+)`?/i.exec(s)?.[1];
      if (name && /\bTTL\b[^\n]*toIntervalDay\(1\)/.test(s)) names.add(name);
    }
  }
  return names;
}

// The TTL clause as the engine prints it in engine_full, e.g. `TTL toDateTime(ts) + toIntervalDay(30)`.
const TTL_DAYS = /\bTTL (.+?) \+ toIntervalDay\((\d+)\)(?= SETTINGS |$)/;

export async function applyRetention(client: ClickHouseClient, days: number): Promise<RetentionChange[]> {
  const ours = retentionTables();
  const tables = await queryRows<{ name: string; engine_full: string }>(
    client,
    `SELECT name, engine_full FROM system.tables WHERE database = currentDatabase() AND name IN {names:Array(String)}`,
    { names: [...ours] },
  );
  const changes: RetentionChange[] = [];
  for (const t of tables) {
    const m = TTL_DAYS.exec(t.engine_full);
    if (!m || Number(m[2]) === days) continue;
    // also recomputed for the parts already written (materialize_ttl_after_modify, on by
    // default): a shorter retention deletes what is now too old, a longer one keeps what is not
    await client.command({ query: `ALTER TABLE \`${t.name}\` MODIFY TTL ${m[1]} + toIntervalDay(${Math.trunc(days)})` });
    changes.push({ table: t.name, fromDays: Number(m[2]), toDays: days });
  }
  return changes;
}
