// The retention a collector starts with is the one the store applies, also when the store was
// created with another: tables keep the TTL their migration wrote, so a restart with
// --retention-days 90 would otherwise still delete after 30 days. A real collector on the
// embedded engine, restarted on the same data directory; spans sent over OTLP/HTTP.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { createCollector, type Collector } from '../../collector/src/collector.js';
import { loadConfig } from '../../collector/src/config.js';
import { queryRows } from '../../collector/src/store/client.js';
import { retentionTables } from '../../collector/src/store/retention.js';
import { postProto, range, toolSpansRequest } from '../safety/helpers.js';

const dataDir = mkdtempSync(join(tmpdir(), 'lw-retention-'));
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

/** A collector on the shared data directory, and the lines it logged. */
async function start(retentionDays: number): Promise<{ collector: Collector; url: string; logged: string[] }> {
  const logged: string[] = [];
  const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (logged.push(chunk.toString()), done()) });
  const config = loadConfig({ port: 0, grpcPort: 'off', dataDir, retentionDays, detect: { enabled: false } }, {});
  const collector = await createCollector(config, pino({ level: 'info' }, sink));
  return { collector, url: await collector.listen(), logged };
}

const ttlDays = async (c: Collector) =>
  Object.fromEntries(
    (await queryRows<{ name: string; engine_full: string }>(c.store.client, 'SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()'))
      .filter((t) => retentionTables().has(t.name))
      .map((t) => [t.name, Number(/toIntervalDay\((\d+)\)/.exec(t.engine_full)?.[1])]),
  );

const DAY_NS = 86_400_000_000_000n;
const daysAgo = (d: number) => BigInt(Date.now()) * 1_000_000n - BigInt(d) * DAY_NS;

describe('retention on restart', () => {
  it('the TTL of every table follows --retention-days, and data past a shorter retention is deleted', async () => {
    const names = [...retentionTables()].sort();
    expect(names).toEqual(expect.arrayContaining(['otel_traces', 'otel_traces_trace_id_ts', 'agent_tool_calls', 'agent_llm_calls', 'agent_findings', 'agent_call_features']));

    // first start: 30 days; a tool call from 10 days ago and one from now
    let c = await start(30);
    expect(Object.values(await ttlDays(c.collector))).toEqual(names.map(() => 30));
    const old = toolSpansRequest(range(1, 0, 1), { session: 'retention-old', baseNs: daysAgo(10) });
    const recent = toolSpansRequest(range(2, 0, 1), { session: 'retention-new' });
    expect((await postProto(c.url, old.body)).status).toBe(200);
    expect((await postProto(c.url, recent.body)).status).toBe(200);
    await c.collector.flush();
    const sessions = async () =>
      (await queryRows<{ session_id: string }>(c.collector.store.client, 'SELECT session_id FROM agent_tool_calls ORDER BY session_id')).map((r) => r.session_id);
    expect(await sessions()).toEqual(['retention-new', 'retention-old']);
    expect(c.logged.join('')).not.toContain('retention changed');
    await c.collector.close();

    // restarted with 90: every table's TTL says 90, said once in the log
    c = await start(90);
    expect(Object.values(await ttlDays(c.collector))).toEqual(names.map(() => 90));
    const line = c.logged.map((l) => JSON.parse(l) as { msg: string; tables?: string[]; fromDays?: number[] }).find((l) => l.msg.startsWith('retention changed'));
    expect(line).toMatchObject({ msg: 'retention changed to 90 days', fromDays: [30] });
    expect([...line!.tables!].sort()).toEqual(names);
    expect(await sessions()).toEqual(['retention-new', 'retention-old']);
    await c.collector.close();

    // restarted with 7: the call from 10 days ago goes, the recent one stays
    c = await start(7);
    expect(Object.values(await ttlDays(c.collector))).toEqual(names.map(() => 7));
    for (let i = 0; i < 100 && (await sessions()).length > 1; i++) await new Promise((r) => setTimeout(r, 100));
    expect(await sessions()).toEqual(['retention-new']);
    await c.collector.close();

    // the same value again: nothing to change
    c = await start(7);
    expect(c.logged.join('')).not.toContain('retention changed');
    await c.collector.close();
  });
});
