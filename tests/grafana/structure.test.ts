// Structure of the Grafana files and the compose stack (no Grafana, no Docker needed):
// YAML parses, uids are unique, every datasource reference resolves to the provisioned
// datasource, every template variable a query uses exists, the dashboards JSON matches its
// source, the alert rules shown in docs/grafana.md are the provisioned ones, and
// docker-compose.yml mounts files that exist.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DASHBOARDS, renderDashboard } from '../../grafana/build-dashboards.js';
import { alertRules, dashboards, panelsOf, readYaml, repoRoot, type Json } from './files.js';

const ds = readYaml('grafana/provisioning/datasources/clickhouse.yaml');
const datasource = (ds.datasources as Json[])[0]!;
const DS_UID = datasource.uid as string;

const BUILTIN_VARS = new Set(['__all', '__interval', '__interval_ms', '__range', '__range_s', '__from', '__to', '__value', '__data', '__field', '__series', '__dashboard', '__org', '__user', '__timeFilter']);

/** Names used as Grafana template variables ($x, ${x}, ${x:fmt}, [[x]]) in a query, minus plugin macros. */
function variablesUsed(sql: string): string[] {
  const names = new Set<string>();
  const re = /\$(\w+)|\[\[(\w+?)(?::\w+)?\]\]|\$\{(\w+)(?:\.[^:^}]+)?(?::[^}]+)?\}/g;
  for (const m of sql.matchAll(re)) {
    const n = m[1] ?? m[2] ?? m[3];
    if (n && !n.startsWith('__')) names.add(n);
  }
  return [...names];
}

describe('datasource provisioning', () => {
  it('is the ClickHouse plugin over HTTP on 8123 with a read-only user and the OTel trace mapping', () => {
    expect(ds.apiVersion).toBe(1);
    expect(ds.datasources).toHaveLength(1);
    expect(datasource.type).toBe('grafana-clickhouse-datasource');
    expect(DS_UID).toBe('loopwatch-clickhouse');
    const j = datasource.jsonData as Json;
    expect(j.protocol).toBe('http');
    expect(j.port).toBe(8123);
    expect(j.host).toBe('${LOOPWATCH_GRAFANA_CH_HOST}');
    expect(j.username).toBe('${LOOPWATCH_GRAFANA_CH_USER}');
    expect(datasource.secureJsonData.password).toBe('${LOOPWATCH_GRAFANA_CH_PASSWORD}');
    expect(j.traces).toMatchObject({
      defaultTable: 'otel_traces', otelEnabled: true, otelVersion: 'latest', durationUnit: 'nanoseconds',
      traceIdColumn: 'TraceId', spanIdColumn: 'SpanId', parentSpanIdColumn: 'ParentSpanId', serviceNameColumn: 'ServiceName',
      operationNameColumn: 'SpanName', startTimeColumn: 'Timestamp', durationColumn: 'Duration', tagsColumn: 'SpanAttributes',
      serviceTagsColumn: 'ResourceAttributes', statusCodeColumn: 'StatusCode', kindColumn: 'SpanKind',
      traceEventsColumnPrefix: 'Events', traceLinksColumnPrefix: 'Links', traceTimestampTableSuffix: '_trace_id_ts',
    });
  });

  it('maps trace columns that exist in otel_traces', () => {
    const schema = readFileSync(join(repoRoot, 'queries/schema/001_otel_traces.sql'), 'utf8');
    const t = (datasource.jsonData as Json).traces as Json;
    for (const [k, v] of Object.entries(t)) {
      if (k.endsWith('Column')) expect(schema, `${k}: ${String(v)}`).toMatch(new RegExp(`\\n\\s+${String(v)} `));
    }
    expect(schema).toContain(`CREATE TABLE IF NOT EXISTS ${String(t.defaultTable)}${String(t.traceTimestampTableSuffix)}`);
  });

  it('has a read-only ClickHouse user for Grafana with its password from the environment', () => {
    const xml = readFileSync(join(repoRoot, 'grafana/clickhouse/users.d/grafana.xml'), 'utf8');
    expect(xml).toMatch(/<readonly>1<\/readonly>/);
    expect(xml).toMatch(/<password from_env="LOOPWATCH_GRAFANA_CH_PASSWORD"\s*\/>/);
    expect(xml).toMatch(/<max_execution_time>[\s\S]*<changeable_in_readonly\/>[\s\S]*<\/max_execution_time>/);
    expect(xml).toMatch(/GRANT SELECT ON default\.\*/);
    expect(xml).toMatch(/<custom_loopwatch_waste_budget_usd_per_hour from_env="LOOPWATCH_WASTE_BUDGET_USD_PER_HOUR"\s*\/>/);
    const cfg = readFileSync(join(repoRoot, 'grafana/clickhouse/config.d/loopwatch.xml'), 'utf8');
    expect(cfg).toMatch(/<custom_settings_prefixes>[^<]*custom_[^<]*<\/custom_settings_prefixes>/);
  });
});

describe('dashboards', () => {
  const all = dashboards();

  it('are the five Loopwatch dashboards, generated from grafana/build-dashboards.ts', () => {
    expect(all.map((d) => d.file)).toEqual(Object.keys(DASHBOARDS).sort());
    for (const { file, json } of all) {
      const expected = renderDashboard(DASHBOARDS[file]!);
      expect(JSON.stringify(json, null, 2) + '\n', `${file} is stale: run npx tsx grafana/build-dashboards.ts`).toBe(expected);
    }
    expect(all.map((d) => d.json.title).sort()).toEqual([
      'Loopwatch / Loops & waste', 'Loopwatch / Models', 'Loopwatch / Overview', 'Loopwatch / Sessions', 'Loopwatch / Tools',
    ]);
  });

  it('have unique dashboard uids and unique panel ids within each dashboard', () => {
    const uids = all.map((d) => d.json.uid as string);
    expect(new Set(uids).size).toBe(uids.length);
    for (const u of uids) expect(u).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    for (const { file, json } of all) {
      const ids = panelsOf(json).map((p) => p.id as number);
      expect(new Set(ids).size, file).toBe(ids.length);
    }
  });

  it('point every panel, target, variable and annotation at the provisioned datasource', () => {
    for (const { file, json } of all) {
      for (const p of panelsOf(json)) {
        if (p.type === 'row') continue;
        expect(p.datasource, `${file}: ${p.title}`).toEqual({ type: datasource.type, uid: DS_UID });
        expect((p.targets as Json[]).length).toBeGreaterThan(0);
        for (const t of p.targets as Json[]) {
          expect(t.datasource.uid, `${file}: ${p.title}`).toBe(DS_UID);
          expect(t.editorType).toBe('sql');
          expect(typeof t.rawSql).toBe('string');
          expect([0, 1]).toContain(t.format);
          expect(t.format === 0 ? 'timeseries' : 'table').toBe(t.queryType);
          expect(p.type === 'timeseries' ? 0 : 1, `${file}: ${p.title} format`).toBe(t.format);
        }
        for (const o of (p.fieldConfig?.overrides ?? []) as Json[]) {
          for (const prop of o.properties as Json[]) {
            if (prop.id !== 'links') continue;
            for (const link of prop.value as Json[]) {
              if (link.internal) expect(link.internal.datasourceUid).toBe(DS_UID);
            }
          }
        }
      }
      for (const v of json.templating.list as Json[]) expect(v.datasource.uid, `${file}: $${v.name}`).toBe(DS_UID);
      for (const a of json.annotations.list as Json[]) {
        if (a.builtIn) continue;
        expect(a.datasource.uid).toBe(DS_UID);
      }
    }
  });

  it('define agent, model and service variables on tool and LLM calls, and every variable a query uses', () => {
    for (const { file, json } of all) {
      const vars = (json.templating.list as Json[]).map((v) => v.name as string);
      expect(vars, file).toEqual(['agent', 'model', 'service']);
      for (const v of json.templating.list as Json[]) {
        expect(v.query as string).toContain('FROM agent_tool_calls');
        expect(v.query as string).toContain('FROM agent_llm_calls'); // an agent that only calls models is a choice too
        expect(v.multi).toBe(true);
        expect(v.includeAll).toBe(true);
      }
      const queries: [string, string][] = [];
      for (const p of panelsOf(json)) for (const t of (p.targets ?? []) as Json[]) queries.push([String(p.title), t.rawSql as string]);
      for (const a of json.annotations.list as Json[]) if (a.target?.rawSql) queries.push([a.name as string, a.target.rawSql as string]);
      for (const v of json.templating.list as Json[]) queries.push([`$${String(v.name)}`, v.query as string]);
      for (const [title, sql] of queries) {
        for (const name of variablesUsed(sql)) {
          expect(vars.includes(name) || BUILTIN_VARS.has(name), `${file}: ${title} uses undefined $${name}`).toBe(true);
        }
        // a macro and its _ms variant in one query expand in Go's random map order: never mix them
        for (const m of ['fromTime', 'toTime', 'timeFilter', 'timeInterval']) {
          expect(new RegExp(`\\$__${m}\\b`).test(sql) && sql.includes(`$__${m}_ms`), `${file}: ${title} mixes $__${m} and $__${m}_ms`).toBe(false);
        }
        // a variable used in a filter goes through $__conditionalAll so that All means no filter
        for (const name of vars) {
          if (sql.includes(`\${${name}:singlequote}`)) expect(sql, `${file}: ${title}`).toContain(`$__conditionalAll(`);
        }
      }
    }
  });

  it('link trace ids to the plugin trace view on otel_traces (Sessions, Loops & waste)', () => {
    const withLinks = all.filter(({ json }) =>
      panelsOf(json).some((p) => (p.fieldConfig?.overrides ?? []).some((o: Json) => o.matcher.options === 'trace_id')),
    );
    expect(withLinks.map((d) => d.json.uid)).toEqual(expect.arrayContaining(['loopwatch-sessions', 'loopwatch-loops']));
    const sessions = all.find((d) => d.json.uid === 'loopwatch-sessions')!.json;
    const scorecard = panelsOf(sessions).find((p) => p.title === 'Session scorecard')!;
    const link = scorecard.fieldConfig.overrides.find((o: Json) => o.matcher.options === 'trace_id').properties[0].value[0];
    expect(link.internal.query.builderOptions).toMatchObject({
      table: 'otel_traces', queryType: 'traces',
      meta: { isTraceIdMode: true, traceId: '${__value.raw}', otelEnabled: true },
    });
    expect(scorecard.targets[0].rawSql).toMatch(/\btrace_id\b/);
    // the plugin's own links name the datasource by its name (the uid resolves it; the name is shown)
    expect(link.internal.datasourceName).toBe(datasource.name);
  });
});

describe('alert rules', () => {
  const doc = readYaml('grafana/provisioning/alerting/loopwatch-rules.yaml');
  const rules = alertRules();

  it('are three rules with unique uids on the provisioned datasource, each a query and a threshold', () => {
    expect(doc.apiVersion).toBe(1);
    expect(rules.map((r) => r.uid)).toEqual(['loopwatch-loop-detected', 'loopwatch-waste-over-budget', 'loopwatch-model-degradation']);
    for (const r of rules) {
      const data = r.rule.data as Json[];
      expect(new Set(data.map((d) => d.refId)).size).toBe(data.length);
      const a = data.find((d) => d.refId === 'A')!;
      expect(a.datasourceUid).toBe(DS_UID);
      expect(a.model.datasource.uid).toBe(DS_UID);
      expect(a.model.format).toBe(1);
      const c = data.find((d) => d.refId === r.rule.condition)!;
      expect(c.datasourceUid).toBe('__expr__');
      expect(c.model.type).toBe('threshold');
      expect(c.model.expression).toBe('A');
      expect(r.rule.noDataState).toBe('OK');
      expect(r.rule.labels.team).toBe('loopwatch');
      // Grafana alerting has no template variables
      expect(variablesUsed(r.rawSql)).toEqual([]);
    }
  });

  it('key on loop spans, waste cost per hour over a budget, and degradation findings', () => {
    const [loop, waste, degradation] = rules;
    expect(loop!.rawSql).toContain("SpanName = 'loopwatch.loop'");
    expect(loop!.rawSql).toContain("SpanAttributes['loop.agent'] AS agent");
    expect(loop!.from).toBe(300);
    expect(waste!.rawSql).toMatch(/sum\(wasted_cost_usd \* /); // each loop's share of the hour
    expect(waste!.rawSql).toContain("getSettingOrDefault('custom_loopwatch_waste_budget_usd_per_hour'");
    expect(waste!.from).toBe(3600);
    expect(degradation!.rawSql).toContain("detector = 'degradation'");
  });

  it('link each rule to its dashboard panel (absolute links in notifications), no relative runbook_url', () => {
    const panelOf = (r: Json) => {
      const d = dashboards().find(({ json }) => json.uid === r.dashboardUid);
      expect(d, `${String(r.uid)}: dashboard ${String(r.dashboardUid)}`).toBeDefined();
      return panelsOf(d!.json).find((p) => p.id === r.panelId)?.title as string | undefined;
    };
    expect(rules.map((r) => [r.uid, panelOf(r.rule)])).toEqual([
      ['loopwatch-loop-detected', 'Findings'],
      ['loopwatch-waste-over-budget', 'Wasted cost by detector over time'],
      ['loopwatch-model-degradation', 'Degradation findings'],
    ]);
    // Grafana does not expand annotations, so a runbook_url could only be relative: useless in a mail or a webhook
    for (const r of rules) expect(Object.keys(r.rule.annotations as Json)).not.toContain('runbook_url');
  });

  it('are shown in docs/grafana.md as provisioned: each rule’s SQL is the first sql block after its uid', () => {
    const md = readFileSync(join(repoRoot, 'docs', 'grafana.md'), 'utf8');
    const lines = (s: string) => s.split('\n').map((l) => l.trimEnd());
    for (const r of rules) {
      const at = md.indexOf(`(\`${r.uid}\`)`);
      expect(at, `${r.uid} in docs/grafana.md`).toBeGreaterThan(0);
      const block = /```sql\n([\s\S]*?)\n```/.exec(md.slice(at))?.[1];
      expect(lines(block ?? ''), r.uid).toEqual(lines(r.rawSql.trim()));
    }
  });

  it('route to a contact point whose settings come from the environment', () => {
    const cp = readYaml('grafana/provisioning/alerting/contact-points.yaml');
    const receivers = (cp.contactPoints as Json[])[0]!.receivers as Json[];
    expect(receivers.map((r) => r.type)).toContain('webhook');
    expect(receivers[0]!.settings.url).toBe('${LOOPWATCH_ALERT_WEBHOOK_URL}');
    const pol = readYaml('grafana/provisioning/alerting/policies.yaml');
    const names = (cp.contactPoints as Json[]).map((c) => c.name);
    const policy = (pol.policies as Json[])[0]!;
    expect(names).toContain(policy.receiver);
    for (const r of policy.routes as Json[]) expect(names).toContain(r.receiver);
  });
});

describe('docker-compose.yml and Dockerfile', () => {
  const compose = readYaml('docker-compose.yml');
  const services = compose.services as Json;
  const env = (s: string) => services[s].environment as Record<string, string>;

  it('run ClickHouse, the collector built from this repository, and Grafana with the plugin', () => {
    expect(Object.keys(services).sort()).toEqual(['clickhouse', 'collector', 'grafana']);
    expect(services.clickhouse.image).toMatch(/^clickhouse\/clickhouse-server:/);
    expect(services.grafana.image).toMatch(/^grafana\/grafana:/);
    // the plugin pinned to a release that runs on the pinned Grafana
    expect(env('grafana').GF_INSTALL_PLUGINS).toMatch(/^grafana-clickhouse-datasource \d+\.\d+\.\d+$/);
    expect(services.collector.build.context).toBe('.');
    expect(existsSync(join(repoRoot, services.collector.build.dockerfile as string))).toBe(true);
    expect(env('collector').LOOPWATCH_CLICKHOUSE_URL).toBe('http://clickhouse:8123');
    expect(services.collector.command).toEqual(['node', 'dist/collector/src/cli/main.js', 'up', '--host', '0.0.0.0']);
    expect(services.collector.depends_on.clickhouse.condition).toBe('service_healthy');
    // beyond loopback the collector refuses to start without API keys: the stack requires one
    expect(env('collector').LOOPWATCH_INGEST_KEY_HASHES).toMatch(/^\$\{LOOPWATCH_INGEST_KEY_HASHES:\?/);
    expect(services.clickhouse.healthcheck.test).toBeDefined();
  });

  it('publish the OTLP, ClickHouse HTTP and Grafana ports', () => {
    const ports = (s: string) => (services[s].ports as string[]).map((p) => p.split(':').slice(-1)[0]);
    expect(ports('collector')).toContain('4318');
    expect(ports('collector')).toContain('4317');
    expect(ports('clickhouse')).toContain('8123');
    expect(ports('grafana')).toContain('3000');
  });

  it('mount files and directories that exist, where Grafana and ClickHouse read them', () => {
    const named = Object.keys(compose.volumes as Json);
    const mounts: Record<string, string> = {};
    for (const [name, s] of Object.entries(services) as [string, Json][]) {
      for (const v of (s.volumes ?? []) as string[]) {
        const [src, dst] = v.split(':') as [string, string];
        if (named.includes(src)) continue;
        expect(src.startsWith('./'), `${name}: ${v} must be relative to the repository`).toBe(true);
        expect(existsSync(join(repoRoot, src)), `${name}: ${src} is missing`).toBe(true);
        mounts[dst] = src;
      }
    }
    expect(mounts['/etc/clickhouse-server/users.d/grafana.xml']).toBe('./grafana/clickhouse/users.d/grafana.xml');
    expect(mounts['/etc/clickhouse-server/config.d/loopwatch.xml']).toBe('./grafana/clickhouse/config.d/loopwatch.xml');
    expect(statSync(join(repoRoot, mounts['/etc/grafana/provisioning/datasources']!)).isDirectory()).toBe(true);
    expect(mounts['/etc/grafana/provisioning/alerting']).toBe('./grafana/provisioning/alerting');
    // the dashboard provider reads the directory the dashboards are mounted at
    const provider = (readYaml('grafana/provisioning/dashboards/loopwatch.yaml').providers as Json[])[0]!;
    expect(mounts[provider.options.path as string]).toBe('./grafana/dashboards');
    // the home dashboard is one of them
    const home = env('grafana').GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH!;
    expect(existsSync(join(repoRoot, 'grafana/dashboards', home.slice((provider.options.path as string).length + 1)))).toBe(true);
  });

  it('give every ${VAR} the provisioning files use a value in the grafana or clickhouse service', () => {
    const gEnv = env('grafana');
    for (const f of ['grafana/provisioning/datasources/clickhouse.yaml', 'grafana/provisioning/alerting/contact-points.yaml']) {
      const text = readFileSync(join(repoRoot, f), 'utf8').split('\n').filter((l) => !l.trim().startsWith('#')).join('\n');
      for (const m of text.matchAll(/\$\{(\w+)\}/g)) expect(gEnv[m[1]!], `${f}: ${m[1]}`).toBeDefined();
    }
    const xml = readFileSync(join(repoRoot, 'grafana/clickhouse/users.d/grafana.xml'), 'utf8');
    for (const m of xml.matchAll(/from_env="(\w+)"/g)) expect(env('clickhouse')[m[1]!], m[1]).toBeDefined();
    // the collector and the server agree on the collector's user
    expect(env('collector').LOOPWATCH_CLICKHOUSE_USER).toBe(env('clickhouse').CLICKHOUSE_USER);
    expect(env('collector').LOOPWATCH_CLICKHOUSE_PASSWORD).toBe(env('clickhouse').CLICKHOUSE_PASSWORD);
    expect(gEnv.LOOPWATCH_GRAFANA_CH_PASSWORD).toBe(env('clickhouse').LOOPWATCH_GRAFANA_CH_PASSWORD);
    expect(gEnv.LOOPWATCH_GRAFANA_CH_HOST).toBe('clickhouse');
    expect(gEnv.LOOPWATCH_GRAFANA_CH_USER).toBe('grafana');
    expect(xml).toContain('<grafana>');
  });

  it('build the collector with node:20, npm ci and npm run build, and start `up --host 0.0.0.0`', () => {
    const df = readFileSync(join(repoRoot, 'Dockerfile'), 'utf8');
    expect(df).toMatch(/^FROM node:20/m);
    expect(df).toMatch(/^RUN npm ci$/m);
    expect(df).toMatch(/^RUN npm run build$/m);
    expect(df).toContain('CMD ["node", "dist/collector/src/cli/main.js", "up", "--host", "0.0.0.0"]');
    // everything the build copies exists
    for (const m of df.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
      for (const src of m[1]!.split(/\s+/)) expect(existsSync(join(repoRoot, src)), src).toBe(true);
    }
    // the runtime files the collector reads are in the image
    expect(df).toContain('COPY --from=build /app/queries ./queries');
    expect(df).toContain('COPY --from=build /app/collector/proto ./collector/proto');
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as Json;
    expect(pkg.scripts.build).toBeDefined();
    expect(pkg.bin.loopwatch).toBe('dist/collector/src/cli/main.js');
    const ignore = readFileSync(join(repoRoot, '.dockerignore'), 'utf8').split('\n');
    expect(ignore).toContain('node_modules');
    expect(ignore).not.toContain('queries');
  });
});
