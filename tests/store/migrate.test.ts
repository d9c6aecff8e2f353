// Migrations on the embedded engine: a fresh store gets every version once, re-running is a
// no-op, and a store migrated before 005 (a first version of the features as the view
// loopwatch_detector_calls, no kept features) is upgraded in place, as is one from before the one
// price lookup (007). Objects a migrated store lacks are made again, as the migrations left them.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../collector/src/paths.js';
import { openStore, queryRows } from '../../collector/src/store/client.js';
import { loadMigrations, migrate, restoreMissingObjects, schemaObjects, syncDefinitions } from '../../collector/src/store/migrate.js';
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
// the migrations from a version on, in order: what an upgrade from the version before applies
const versionsFrom = (v: number) => loadMigrations({ retentionDays: 30 }).map((m) => m.version).filter((x) => x >= v);
const namesFrom = (v: number) => loadMigrations({ retentionDays: 30 }).filter((m) => m.version >= v).map((m) => m.name);
const featureColumns = async () =>
  (await queryRows<{ name: string }>(client, "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'agent_call_features' ORDER BY position")).map((r) => r.name);

describe('schema migrations', () => {
  it('applies every version once on a fresh store, and nothing on a second run', async () => {
    const all = loadMigrations({ retentionDays: 30 }).map((m) => m.version);
    const first = await migrate(client, { retentionDays: 30 });
    expect(first.applied.map((m) => m.version)).toEqual(all);
    // a store made from nothing has the release's views and functions, but for a view made before
    // a function it calls was made again (the engine wrote the older body into it): 007's view of
    // the model keys calls loopwatch_model_key, which 011 and 020 made again
    expect(first.remade).toEqual(['loopwatch_model_keys_mv']);
    expect(first.version).toBe(Math.max(...all));
    expect(await migrate(client, { retentionDays: 30 })).toEqual({ applied: [], remade: [], fresh: false, version: Math.max(...all) });
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

    const { applied } = await migrate(client, { retentionDays: 30 });
    expect(applied.map((m) => m.name)).toEqual(namesFrom(5));
    expect(await hasView('loopwatch_detector_calls')).toBe(false);
    expect(await featureColumns()).toEqual([...(await callColumns()), 'version']);
  });

  it('upgrades a store with LLM calls to the one price lookup: models stored before and after are priced', async () => {
    // the store as version 6 left it, with an LLM call of a dated model id behind a provider path
    await client.command({ query: 'DROP VIEW IF EXISTS loopwatch_model_key_prices' });
    await client.command({ query: 'DROP VIEW IF EXISTS loopwatch_model_keys_mv' });
    await client.command({ query: 'DROP TABLE IF EXISTS loopwatch_model_keys' });
    await client.command({ query: 'DELETE FROM loopwatch_schema_migrations WHERE version >= 7' });
    await client.command({ query: "INSERT INTO model_prices (model, match, input_per_mtok, output_per_mtok, cached_input_per_mtok) VALUES ('gpt-4o', 'prefix', 2.5, 10, 1.25), ('gpt-4o-mini', 'prefix', 0.15, 0.6, 0.075)" });
    const llmCall = (model: string, span: string) =>
      client.command({ query: `INSERT INTO agent_llm_calls (session_id, span_id, ts, end_ts, model, input_tokens, output_tokens, cache_read_tokens, total_tokens) VALUES ('m-1', '${span}', now64(9), now64(9), '${model}', 1000000, 100000, 200000, 1100000)` });
    await llmCall('openai/gpt-4o-2024-08-06', 'a1');
    expect((await migrate(client, { retentionDays: 30 })).applied.map((m) => m.name)).toEqual(namesFrom(7));
    await llmCall('gpt-4o-mini', 'a2'); // after: its key arrives through the view on agent_llm_calls
    const priced = await queryRows<{ model: string; cost: number }>(
      client,
      `SELECT l.model AS model, loopwatch_llm_cost(l.reported_cost_usd, l.input_tokens, l.cache_read_tokens, l.cache_creation_tokens, l.output_tokens, pr.price) AS cost
       FROM agent_llm_calls AS l LEFT JOIN loopwatch_model_key_prices AS pr ON loopwatch_model_key(l.model) = pr.model_key
       WHERE l.session_id = 'm-1' ORDER BY l.span_id`,
    );
    // 800k input at the input price, 200k cache reads at the cached price, 100k output
    expect(priced.map((r) => r.model)).toEqual(['openai/gpt-4o-2024-08-06', 'gpt-4o-mini']);
    expect(priced[0]!.cost).toBeCloseTo((800_000 * 2.5 + 200_000 * 1.25 + 100_000 * 10) / 1e6, 9);
    expect(priced[1]!.cost).toBeCloseTo((800_000 * 0.15 + 200_000 * 0.075 + 100_000 * 0.6) / 1e6, 9);
  });

  it('upgrades the error identity and the LLM attribution: small numbers kept, and the features kept under the old rules dropped for the next pass to recompute', async () => {
    // the store as version 7 left it: the old function, features and their watermark kept
    await client.command({ query: "CREATE OR REPLACE FUNCTION loopwatch_error_norm AS (msg) -> leftUTF8(trimBoth(replaceRegexpAll(replaceRegexpAll(lowerUTF8(msg), '[0-9a-f]{8,}|[0-9]+', '#'), '[ \\t\\r\\n]+', ' ')), 200)" });
    await client.command({ query: 'DELETE FROM loopwatch_schema_migrations WHERE version >= 8' });
    await client.command({ query: "INSERT INTO agent_call_features (session_id, span_id, ts, end_ts, version) VALUES ('e-1', 's1', now64(9), now64(9), 1)" });
    await client.command({ query: "INSERT INTO loopwatch_detector_state (detector, watermark) VALUES ('_features', now64(3)), ('repeat', now64(3))" });
    const norm = async () => (await queryRows<{ n: string }>(client, "SELECT loopwatch_error_norm('5 tests failed') AS n"))[0]!.n;
    expect(await norm()).toBe('# tests failed');

    expect((await migrate(client, { retentionDays: 30 })).applied.map((m) => m.name)).toEqual(namesFrom(8));
    expect(await norm()).toBe('5 tests failed');
    expect(await queryRows(client, 'SELECT session_id FROM agent_call_features')).toEqual([]);
    const marks = await queryRows<{ detector: string }>(client, 'SELECT detector FROM loopwatch_detector_state FINAL ORDER BY detector');
    expect(marks.map((m) => m.detector)).toEqual(['repeat']);
  });

  it('upgrades the kept features to the occurrence count: the column before the version, and the features kept without it dropped for the next pass to recompute', async () => {
    // the store as version 8 left it: features without the column, their watermark kept
    await client.command({ query: 'ALTER TABLE agent_call_features DROP COLUMN IF EXISTS occurrence' });
    await client.command({ query: 'CREATE OR REPLACE VIEW loopwatch_call_features AS SELECT * EXCEPT (version) FROM agent_call_features FINAL' });
    await client.command({ query: 'DELETE FROM loopwatch_schema_migrations WHERE version >= 9' });
    await client.command({ query: "INSERT INTO agent_call_features (session_id, span_id, ts, end_ts, version) VALUES ('o-1', 's1', now64(9), now64(9), 1)" });
    await client.command({ query: "INSERT INTO loopwatch_detector_state (detector, watermark) VALUES ('_features', now64(3)), ('redundant', now64(3))" });

    expect((await migrate(client, { retentionDays: 30 })).applied.map((m) => m.name)).toEqual(namesFrom(9));
    expect(await featureColumns()).toEqual([...(await callColumns()), 'version']);
    expect(await queryRows(client, 'SELECT session_id FROM agent_call_features')).toEqual([]);
    const view = await queryRows<{ name: string }>(client, 'DESCRIBE TABLE loopwatch_call_features');
    expect(view.map((c) => c.name)).toContain('occurrence');
    const marks = await queryRows<{ detector: string }>(client, "SELECT detector FROM loopwatch_detector_state FINAL WHERE detector IN ('_features', 'redundant') ORDER BY detector");
    expect(marks.map((m) => m.detector)).toEqual(['redundant']);
  });

  it('upgrades the model keys to the longer Bedrock geographies: a global. model stored before and one stored after are priced', async () => {
    // the store as version 10 left it: the old key function, an LLM call of a global. profile stored under its old key
    await client.command({ query: "CREATE OR REPLACE FUNCTION loopwatch_model_key AS (m) -> replaceRegexpOne(lowerUTF8(arrayElement(splitByChar('/', m), -1)), '^([a-z]{2}\\.)?anthropic\\.', '')" });
    await client.command({ query: 'DELETE FROM loopwatch_schema_migrations WHERE version >= 11' });
    await client.command({ query: "INSERT INTO model_prices (model, match, input_per_mtok, output_per_mtok, cached_input_per_mtok) VALUES ('claude-sonnet-4-5', 'prefix', 3, 15, 0.3)" });
    const llmCall = (model: string, span: string) =>
      client.command({ query: `INSERT INTO agent_llm_calls (session_id, span_id, ts, end_ts, model, input_tokens, output_tokens, total_tokens) VALUES ('b-1', '${span}', now64(9), now64(9), '${model}', 1000000, 0, 1000000)` });
    await llmCall('global.anthropic.claude-sonnet-4-5-20250929-v1:0', 'b1');
    expect((await queryRows<{ k: string }>(client, "SELECT loopwatch_model_key('global.anthropic.claude-sonnet-4-5-20250929-v1:0') AS k"))[0]!.k).toBe('global.anthropic.claude-sonnet-4-5-20250929-v1:0');

    expect((await migrate(client, { retentionDays: 30 })).applied.map((m) => m.name)).toEqual(namesFrom(11));
    await llmCall('apac.anthropic.claude-sonnet-4-5-20250929-v1:0', 'b2'); // after: its key through the view on agent_llm_calls
    const priced = await queryRows<{ cost: number }>(
      client,
      `SELECT loopwatch_llm_cost(l.reported_cost_usd, l.input_tokens, l.cache_read_tokens, l.cache_creation_tokens, l.output_tokens, pr.price) AS cost
       FROM agent_llm_calls AS l LEFT JOIN loopwatch_model_key_prices AS pr ON loopwatch_model_key(l.model) = pr.model_key
       WHERE l.session_id = 'b-1' ORDER BY l.span_id`,
    );
    expect(priced.map((r) => r.cost)).toEqual([3, 3]);
  });

  it('upgrades the error identity to ids that mix letters and digits: the features kept under the old rule dropped for the next pass to recompute', async () => {
    // the store as version 13 left it: 008's function, features and their watermark kept
    const v8 = readFileSync(join(packageRoot, 'queries/schema/008_error_identity_llm_attribution.sql'), 'utf8');
    await client.command({ query: /CREATE OR REPLACE FUNCTION loopwatch_error_norm[^;]*/.exec(v8)![0] });
    await client.command({ query: 'DELETE FROM loopwatch_schema_migrations WHERE version >= 14' });
    await client.command({ query: "INSERT INTO agent_call_features (session_id, span_id, ts, end_ts, version) VALUES ('i-1', 's1', now64(9), now64(9), 1)" });
    await client.command({ query: "INSERT INTO loopwatch_detector_state (detector, watermark) VALUES ('_features', now64(3)), ('error_loop', now64(3))" });
    const norm = async () => (await queryRows<{ n: string }>(client, "SELECT loopwatch_error_norm('503 (request id: req_8KzQ3vHtPlMn7)') AS n"))[0]!.n;
    expect(await norm()).toBe('503 (request id: req_8kzq3vhtplmn7)');

    expect((await migrate(client, { retentionDays: 30 })).applied.map((m) => m.name)).toEqual(namesFrom(14));
    expect(await norm()).toBe('503 (request id: #)');
    expect(await queryRows(client, "SELECT session_id FROM agent_call_features WHERE session_id = 'i-1'")).toEqual([]);
    const marks = await queryRows<{ detector: string }>(client, "SELECT detector FROM loopwatch_detector_state FINAL WHERE detector IN ('_features', 'error_loop') ORDER BY detector");
    expect(marks.map((m) => m.detector)).toEqual(['error_loop']);
  });

  it('upgrades the prices to cache writes of their own: the column added, the old 5-argument cost replaced, kept features dropped for the next pass to reprice', async () => {
    // the store as version 15 left it: model_prices without the column, 007's view and function, features and their watermark kept
    const v7 = readFileSync(join(packageRoot, 'queries/schema/007_llm_cost.sql'), 'utf8');
    await client.command({ query: /CREATE VIEW IF NOT EXISTS loopwatch_model_key_prices[^;]*/.exec(v7)![0].replace('CREATE VIEW IF NOT EXISTS', 'CREATE OR REPLACE VIEW') });
    await client.command({ query: /CREATE FUNCTION IF NOT EXISTS loopwatch_llm_cost[^;]*/.exec(v7)![0].replace('CREATE FUNCTION IF NOT EXISTS', 'CREATE OR REPLACE FUNCTION') });
    await client.command({ query: 'ALTER TABLE model_prices DROP COLUMN IF EXISTS cache_write_per_mtok' });
    await client.command({ query: 'DELETE FROM loopwatch_schema_migrations WHERE version >= 16' });
    await client.command({ query: "INSERT INTO model_prices (model, match, input_per_mtok, output_per_mtok, cached_input_per_mtok) VALUES ('claude-opus-4-5', 'prefix', 5, 25, 0.5)" });
    await client.command({ query: "INSERT INTO agent_llm_calls (session_id, span_id, ts, end_ts, model, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, total_tokens) VALUES ('w-1', 'w1', now64(9), now64(9), 'claude-opus-4-5-20251101', 1000000, 0, 0, 400000, 1000000)" });
    await client.command({ query: "INSERT INTO agent_call_features (session_id, span_id, ts, end_ts, version) VALUES ('w-1', 's1', now64(9), now64(9), 1)" });
    await client.command({ query: "INSERT INTO loopwatch_detector_state (detector, watermark) VALUES ('_features', now64(3)), ('runaway', now64(3))" });

    expect((await migrate(client, { retentionDays: 30 })).applied.map((m) => m.name)).toEqual(namesFrom(16));
    // the price file's entry, as the collector loads it at start: Anthropic's writes at 1.25x input
    await client.command({ query: "INSERT INTO model_prices (model, match, input_per_mtok, output_per_mtok, cached_input_per_mtok, cache_write_per_mtok) VALUES ('claude-opus-4-5', 'prefix', 5, 25, 0.5, 6.25)" });
    const [priced] = await queryRows<{ cost: number }>(
      client,
      `SELECT loopwatch_llm_cost(l.reported_cost_usd, l.input_tokens, l.cache_read_tokens, l.cache_creation_tokens, l.output_tokens, pr.price) AS cost
       FROM agent_llm_calls AS l LEFT JOIN loopwatch_model_key_prices AS pr ON loopwatch_model_key(l.model) = pr.model_key
       WHERE l.session_id = 'w-1'`,
    );
    // 600k input at $5, 400k cache writes at $6.25 per million (before: all 1M at $5)
    expect(priced!.cost).toBeCloseTo(0.6 * 5 + 0.4 * 6.25, 9);
    expect(await queryRows(client, "SELECT session_id FROM agent_call_features WHERE session_id = 'w-1'")).toEqual([]);
    const marks = await queryRows<{ detector: string }>(client, "SELECT detector FROM loopwatch_detector_state FINAL WHERE detector IN ('_features', 'runaway') ORDER BY detector");
    expect(marks.map((m) => m.detector)).toEqual(['runaway']);
  });

  it('upgrades the tool view to cuts that end on a whole character: a store at 017 gets 018\'s view and function, once', async () => {
    // a tool call whose arguments have a 3-byte character across the 8,192-byte limit
    const toolSpan = (span: string) => client.command({
      query: `INSERT INTO otel_traces (Timestamp, TraceId, SpanId, SpanName, SpanKind, ServiceName, SpanAttributes, Duration)
              VALUES (now64(9), 't-${span}', '${span}', 'execute_tool search', 'Internal', 'agent',
                      map('gen_ai.operation.name', 'execute_tool', 'gen_ai.tool.name', 'search', 'gen_ai.conversation.id', 'u-${span}',
                          'gen_ai.tool.call.arguments', {args:String}), 1000)`,
      query_params: { args: `${'x'.repeat(8191)}€ and more` },
    });
    const stored = async (span: string) =>
      (await queryRows<{ valid: number; bytes: number }>(client, 'SELECT isValidUTF8(arguments) AS valid, length(arguments) AS bytes FROM agent_tool_calls WHERE span_id = {span:String}', { span }))[0];
    const mvDefinition = async () =>
      (await queryRows<{ q: string }>(client, "SELECT create_table_query AS q FROM system.tables WHERE database = currentDatabase() AND name = 'agent_tool_calls_mv'"))[0]!.q;
    const hasFunction = async () =>
      (await queryRows<{ n: number }>(client, "SELECT count() AS n FROM system.functions WHERE name = 'loopwatch_utf8_left'"))[0]!.n > 0;
    const migrations = loadMigrations({ retentionDays: 30 });
    const newest = Math.max(...migrations.map((m) => m.version));
    // the view as the release makes it (the store is at the newest version here); the engine keeps
    // a view with the SQL functions it calls written out
    const release = await mvDefinition();
    expect(release).toContain('substring(args_raw, 1, greatest(8192 - multiIf(bitAnd(reinterpretAsUInt8(substring(args_raw, 8192 + 1, 1)), 192) != 128, 0');
    // the store as version 17 left it: 017's view and the definitions it recorded, no cut function
    // (the migrations after 018 stay applied: this upgrade is 018's alone)
    await client.command({ query: 'DELETE FROM loopwatch_schema_migrations WHERE version = 18' });
    await client.command({ query: "DELETE FROM loopwatch_schema_definitions WHERE name = 'loopwatch_utf8_left'" });
    expect(await syncDefinitions(client, migrations.filter((m) => m.version !== 18), false)).toEqual(['agent_tool_calls_mv']);
    await client.command({ query: 'DROP FUNCTION loopwatch_utf8_left' });
    expect(await hasFunction()).toBe(false);
    expect(await mvDefinition()).toContain('substring(args_raw, 1, 8192) AS arguments');
    await toolSpan('u8-old');
    expect(await stored('u8-old')).toEqual({ valid: 0, bytes: 8192 }); // two bytes of the euro sign's three

    const upgrade = await migrate(client, { retentionDays: 30 });
    expect(upgrade.applied.map((m) => m.name)).toEqual(['utf8_cuts']);
    expect(upgrade.version).toBe(newest);
    // its definition differs from the one 017 recorded: made again at the upgrade's end, as 018 has it
    expect([...upgrade.remade].sort()).toEqual(['agent_tool_calls_mv', 'loopwatch_utf8_left']);
    expect(await hasFunction()).toBe(true);
    expect(await mvDefinition()).toBe(release);
    await toolSpan('u8-new');
    expect(await stored('u8-new')).toEqual({ valid: 1, bytes: 8191 });
    // recorded: the next start makes nothing again
    expect(await migrate(client, { retentionDays: 30 })).toEqual({ applied: [], remade: [], fresh: false, version: newest });
  });

  it('upgrades the model keys and prices to 020: the view registering keys as calls arrive made again with the new key (it holds the function\'s body), Claude ids with dots priced before and after', async () => {
    const migrations = loadMigrations({ retentionDays: 30 });
    const keysView = async () =>
      (await queryRows<{ q: string }>(client, "SELECT create_table_query AS q FROM system.tables WHERE database = currentDatabase() AND name = 'loopwatch_model_keys_mv'"))[0]!.q;
    const release = await keysView();
    expect(release).toContain("startsWith(");
    // the store as 019 left it: its definitions made and recorded, 020 not applied
    await client.command({ query: 'DELETE FROM loopwatch_schema_migrations WHERE version = 20' });
    await syncDefinitions(client, migrations.filter((m) => m.version !== 20), false);
    expect(await keysView()).not.toContain("startsWith(");
    await client.command({ query: "INSERT INTO model_prices (model, match, input_per_mtok, output_per_mtok) VALUES ('claude-opus-4-5', 'prefix', 5, 25), ('claude-opus-4', 'prefix', 15, 75)" });
    const llmCall = (model: string, span: string) =>
      client.command({ query: `INSERT INTO agent_llm_calls (session_id, span_id, ts, end_ts, model, input_tokens, output_tokens, total_tokens) VALUES ('o-1', '${span}', now64(9), now64(9), '${model}', 1000000, 0, 1000000)` });
    const costs = async () => (await queryRows<{ cost: number }>(
      client,
      `SELECT loopwatch_llm_cost(l.reported_cost_usd, l.input_tokens, l.cache_read_tokens, l.cache_creation_tokens, l.output_tokens, pr.price) AS cost
       FROM agent_llm_calls AS l LEFT JOIN loopwatch_model_key_prices AS pr ON loopwatch_model_key(l.model) = pr.model_key
       WHERE l.session_id = 'o-1' ORDER BY l.span_id`,
    )).map((r) => r.cost);
    await llmCall('anthropic/claude-opus-4.5', 'o1');
    expect(await costs()).toEqual([15]); // claude-opus-4's price: 3x

    const upgrade = await migrate(client, { retentionDays: 30 });
    expect(upgrade.applied.map((m) => m.name)).toEqual(['operator_prices']);
    expect(upgrade.remade).toEqual(expect.arrayContaining(['loopwatch_model_key', 'loopwatch_llm_cost', 'loopwatch_model_key_prices', 'loopwatch_model_keys_mv']));
    expect(await keysView()).toBe(release);
    await llmCall('openrouter/anthropic/claude-opus-4.5', 'o2'); // after: registered by the view made again
    expect(await costs()).toEqual([5, 5]);
    expect(await migrate(client, { retentionDays: 30 })).toEqual({ applied: [], remade: [], fresh: false, version: Math.max(...migrations.map((m) => m.version)) });
  });

  it('upgrades the LLM view to input counts that leave the cache out (019): a store at 018 gets the view once, kept features dropped for the next pass to reprice', async () => {
    // a Strands Agents LLM call: Bedrock's input count, the cache left out
    const llmSpan = (span: string) => client.command({
      query: `INSERT INTO otel_traces (Timestamp, TraceId, SpanId, SpanName, SpanKind, ServiceName, SpanAttributes, Duration)
              VALUES (now64(9), 't-${span}', '${span}', 'chat', 'Internal', 'agent',
                      map('gen_ai.operation.name', 'chat', 'gen_ai.system', 'strands-agents', 'gen_ai.request.model', 'us.anthropic.claude-sonnet-4-5-20250929-v1:0',
                          'gen_ai.conversation.id', 'c-${span}', 'gen_ai.usage.input_tokens', '50', 'gen_ai.usage.output_tokens', '400',
                          'gen_ai.usage.cache_read_input_tokens', '20000', 'gen_ai.usage.cache_write_input_tokens', '3000'), 1000)`,
    });
    const stored = async (span: string) =>
      (await queryRows<{ i: string; r: string; w: string }>(client,
        'SELECT toString(input_tokens) AS i, toString(cache_read_tokens) AS r, toString(cache_creation_tokens) AS w FROM agent_llm_calls WHERE span_id = {span:String}', { span }))[0];
    const mvDefinition = async () =>
      (await queryRows<{ q: string }>(client, "SELECT create_table_query AS q FROM system.tables WHERE database = currentDatabase() AND name = 'agent_llm_calls_mv'"))[0]!.q;
    const migrations = loadMigrations({ retentionDays: 30 });
    const newest = Math.max(...migrations.map((m) => m.version));
    const release = await mvDefinition();
    // the store without 019: 015's LLM view and the definitions it recorded, features and their watermark kept
    // (the migrations after 019 stay applied: this upgrade is 019's alone)
    await client.command({ query: 'DELETE FROM loopwatch_schema_migrations WHERE version = 19' });
    expect(await syncDefinitions(client, migrations.filter((m) => m.version !== 19), false)).toEqual(['agent_llm_calls_mv']);
    expect(await mvDefinition()).not.toBe(release);
    await llmSpan('c-old');
    expect(await stored('c-old')).toEqual({ i: '50', r: '20000', w: '0' }); // the writes' name not read, the input cut at 0 when priced
    await client.command({ query: "INSERT INTO agent_call_features (session_id, span_id, ts, end_ts, version) VALUES ('c-1', 's1', now64(9), now64(9), 1)" });
    await client.command({ query: "INSERT INTO loopwatch_detector_state (detector, watermark) VALUES ('_features', now64(3)), ('runaway', now64(3))" });

    const upgrade = await migrate(client, { retentionDays: 30 });
    expect(upgrade.applied.map((m) => m.name)).toEqual(['cache_tokens_by_source']);
    expect(upgrade.version).toBe(newest);
    // its definition differs from the one 018 recorded: made again at the upgrade's end, as 019 has it
    expect(upgrade.remade).toEqual(['agent_llm_calls_mv']);
    expect(await mvDefinition()).toBe(release);
    await llmSpan('c-new');
    expect(await stored('c-new')).toEqual({ i: '23050', r: '20000', w: '3000' });
    // the kept features held the old counts' shares: dropped, and the watermark of the pass that made them
    expect(await queryRows(client, "SELECT session_id FROM agent_call_features WHERE session_id = 'c-1'")).toEqual([]);
    const marks = await queryRows<{ detector: string }>(client, "SELECT detector FROM loopwatch_detector_state FINAL WHERE detector IN ('_features', 'runaway') ORDER BY detector");
    expect(marks.map((m) => m.detector)).toEqual(['runaway']);
    // recorded: the next start makes nothing again
    expect(await migrate(client, { retentionDays: 30 })).toEqual({ applied: [], remade: [], fresh: false, version: newest });
  });

  it('refuses a store a newer release migrated (going back would run the old rules on the new data without a word)', async () => {
    const newest = Math.max(...loadMigrations({ retentionDays: 30 }).map((m) => m.version));
    await client.insert({ table: 'loopwatch_schema_migrations', values: [{ version: 999, name: 'from_the_future' }], format: 'JSONEachRow' });
    try {
      await expect(migrate(client, { retentionDays: 30 })).rejects.toThrow(
        `the store was migrated by a newer Loopwatch (schema version 999; this release knows up to ${newest}): run that release or a later one; going back is not supported`);
    } finally {
      await client.command({ query: 'DELETE FROM loopwatch_schema_migrations WHERE version = 999' });
    }
    expect((await migrate(client, { retentionDays: 30 })).applied).toEqual([]);
  });

  it('makes again, as the migrations left them, the views and functions a migrated store lacks (a dropped view, a lost function), and reports a missing table', async () => {
    const definition = async (name: string) =>
      (await queryRows<{ q: string }>(client, 'SELECT create_table_query AS q FROM system.tables WHERE database = currentDatabase() AND name = {name:String}', { name }))[0]?.q;
    const before = { mv: await definition('agent_tool_calls_mv'), view: await definition('loopwatch_call_features') };
    expect(before.mv).toBeDefined();
    expect(await restoreMissingObjects(client, { retentionDays: 30 })).toEqual({ restored: [], failed: {} });

    await client.command({ query: 'DROP VIEW agent_tool_calls_mv' });
    await client.command({ query: 'DROP VIEW loopwatch_call_features' });
    await client.command({ query: 'DROP FUNCTION loopwatch_error_norm' });
    await client.command({ query: "INSERT INTO loopwatch_detector_state (detector, watermark) VALUES ('_features', now64(3))" });
    const { restored, failed } = await restoreMissingObjects(client, { retentionDays: 30 });
    expect([...restored].sort()).toEqual(['agent_tool_calls_mv', 'loopwatch_call_features', 'loopwatch_error_norm']);
    expect(failed).toEqual({});
    // the last definitions (the view as 009 made it, the function as 008 did), nothing deleted
    expect(await definition('agent_tool_calls_mv')).toBe(before.mv);
    expect(await definition('loopwatch_call_features')).toBe(before.view);
    expect((await queryRows<{ n: string }>(client, "SELECT loopwatch_error_norm('5 tests failed') AS n"))[0]!.n).toBe('5 tests failed');
    const marks = await queryRows<{ detector: string }>(client, "SELECT detector FROM loopwatch_detector_state FINAL WHERE detector = '_features'");
    expect(marks).toHaveLength(1);
    expect(await restoreMissingObjects(client, { retentionDays: 30 })).toEqual({ restored: [], failed: {} });
    // a table is not made again (an empty one would take the name of a detached one): said, the rest goes on
    await client.command({ query: 'DETACH TABLE model_prices' });
    await client.command({ query: 'DROP VIEW otel_traces_trace_id_ts_mv' });
    try {
      const r = await restoreMissingObjects(client, { retentionDays: 30 });
      expect(r.failed).toEqual({ model_prices: 'table missing, not made again here (an empty one would take its name): ATTACH TABLE model_prices if it was detached' });
      expect(r.restored).toEqual(['otel_traces_trace_id_ts_mv']);
    } finally {
      await client.command({ query: 'ATTACH TABLE model_prices' });
    }
  });

  it('upgrades a store that applied the first version of 012 (without turn_start and turn_end), which 013 could not follow', async () => {
    await client.command({ query: 'ALTER TABLE agent_call_features DROP COLUMN IF EXISTS turn_pauses, DROP COLUMN IF EXISTS turn_end, DROP COLUMN IF EXISTS turn_start' });
    await client.command({ query: 'DELETE FROM loopwatch_schema_migrations WHERE version >= 13' });
    expect((await migrate(client, { retentionDays: 30 })).applied.map((m) => m.version)).toEqual(versionsFrom(13));
    expect(await featureColumns()).toEqual([...(await callColumns()), 'version']);
  });

  it('makes again the views and functions a store made from other statements than the release ends with (migrations changed after it applied them), once', async () => {
    const norm = async () => (await queryRows<{ n: string }>(client, "SELECT loopwatch_error_norm('request failed: HTTP_401_UNAUTHORIZED') AS n"))[0]!.n;
    const toolCalls = async (span: string) =>
      (await queryRows<{ n: number }>(client, 'SELECT count() AS n FROM agent_tool_calls WHERE span_id = {span:String}', { span }))[0]!.n;
    // an MCP server's span as the OpenTelemetry Collector's exporter writes it: not a call
    const serverSpan = async (span: string) => client.command({ query: `INSERT INTO otel_traces (Timestamp, TraceId, SpanId, SpanName, SpanKind, ServiceName, SpanAttributes, Duration)
      VALUES (now64(9), 't-${span}', '${span}', 'tools/call read_file', 'SPAN_KIND_SERVER', 'mcp-server',
              map('gen_ai.operation.name', 'execute_tool', 'gen_ai.tool.name', 'read_file', 'mcp.method.name', 'tools/call', 'gen_ai.conversation.id', 's-${span}'), 1000)` });
    const expected = await norm();
    expect(expected).toBe('request failed: http_401_unauthorized');
    await serverSpan('mcp-now');
    expect(await toolCalls('mcp-now')).toBe(0);
    // the store as the first versions of 014 and 017 left it: the old error rule, the view without the exporter's kind name
    const mv = schemaObjects(loadMigrations({ retentionDays: 30 })).find((o) => o.name === 'agent_tool_calls_mv')!.statements[0]!;
    await client.command({ query: 'DROP VIEW agent_tool_calls_mv' });
    await client.command({ query: mv.replace("SpanKind IN ('Server', 'SPAN_KIND_SERVER')", "SpanKind IN ('Server')") });
    await client.command({ query: "CREATE OR REPLACE FUNCTION loopwatch_error_norm AS (m) -> replaceRegexpAll(m, '[A-Z0-9_]+', '#')" });
    await serverSpan('mcp-old');
    expect(await toolCalls('mcp-old')).toBe(1);
    expect(await norm()).toBe('request failed: #');
    // a store from before the definitions were recorded
    await client.command({ query: 'TRUNCATE TABLE loopwatch_schema_definitions' });
    const first = await migrate(client, { retentionDays: 30 });
    expect(first.applied).toEqual([]);
    expect(first.remade).toEqual(expect.arrayContaining(['loopwatch_error_norm', 'agent_tool_calls_mv', 'agent_llm_calls_mv']));
    expect(await norm()).toBe(expected);
    await serverSpan('mcp-new');
    expect(await toolCalls('mcp-new')).toBe(0);
    // recorded: the next start makes nothing again
    expect(await migrate(client, { retentionDays: 30 })).toEqual({ applied: [], remade: [], fresh: false, version: Math.max(...loadMigrations({ retentionDays: 30 }).map((m) => m.version)) });
  });

  it('knows each object by its last definition: made again later, altered after, dropped', () => {
    const m = (version: number, statements: string[]) => ({ version, name: `m${version}`, statements });
    const objects = schemaObjects([
      m(1, ['CREATE TABLE IF NOT EXISTS t (a UInt8) ENGINE = Memory', 'CREATE VIEW IF NOT EXISTS v AS SELECT 1', 'CREATE FUNCTION IF NOT EXISTS f AS (x) -> x', 'CREATE VIEW IF NOT EXISTS old AS SELECT 1']),
      m(2, ['ALTER TABLE t ADD COLUMN IF NOT EXISTS b UInt8', 'CREATE OR REPLACE VIEW v AS SELECT 2', 'DROP VIEW IF EXISTS old', 'TRUNCATE TABLE IF EXISTS t', "DELETE FROM t WHERE a = 1"]),
    ]);
    expect(objects).toEqual([
      { name: 't', kind: 'table', statements: ['CREATE TABLE IF NOT EXISTS t (a UInt8) ENGINE = Memory', 'ALTER TABLE t ADD COLUMN IF NOT EXISTS b UInt8'] },
      { name: 'f', kind: 'function', statements: ['CREATE FUNCTION IF NOT EXISTS f AS (x) -> x'] },
      { name: 'v', kind: 'view', statements: ['CREATE OR REPLACE VIEW v AS SELECT 2'] },
    ]);
    // the real migrations: every object the store has after them, once
    const names = schemaObjects(loadMigrations({ retentionDays: 30 })).map((o) => o.name);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toEqual(expect.arrayContaining(['otel_traces', 'agent_tool_calls_mv', 'agent_call_features', 'loopwatch_call_features', 'loopwatch_error_norm']));
    expect(names).not.toContain('loopwatch_detector_calls');
  });
});
