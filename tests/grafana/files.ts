// Loads the Grafana provisioning files, dashboards and alert rules the tests check.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const grafanaDir = join(repoRoot, 'grafana');

export type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export const readYaml = (path: string): Json => parse(readFileSync(join(repoRoot, path), 'utf8')) as Json;

export function dashboards(): { file: string; json: Json }[] {
  const dir = join(grafanaDir, 'dashboards');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((file) => ({ file, json: JSON.parse(readFileSync(join(dir, file), 'utf8')) as Json }));
}

/** Every panel, rows' nested panels included. */
export function panelsOf(d: Json): Json[] {
  const out: Json[] = [];
  for (const p of (d.panels ?? []) as Json[]) {
    out.push(p);
    for (const inner of (p.panels ?? []) as Json[]) out.push(inner);
  }
  return out;
}

export interface AlertQuery {
  uid: string;
  title: string;
  rawSql: string;
  from: number;
  to: number;
  threshold: { type: string; params: number[] };
  rule: Json;
}

export function alertRules(): AlertQuery[] {
  const doc = readYaml('grafana/provisioning/alerting/loopwatch-rules.yaml');
  const out: AlertQuery[] = [];
  for (const g of doc.groups as Json[]) {
    for (const r of g.rules as Json[]) {
      const data = r.data as Json[];
      const a = data.find((q) => q.refId === 'A')!;
      const c = data.find((q) => q.refId === r.condition)!;
      out.push({
        uid: r.uid, title: r.title, rawSql: a.model.rawSql,
        from: a.relativeTimeRange.from, to: a.relativeTimeRange.to,
        threshold: c.model.conditions[0].evaluator, rule: r,
      });
    }
  }
  return out;
}

/** Grafana's threshold expression on one value. */
export function thresholdFires(t: { type: string; params: number[] }, v: number): boolean {
  const [a = 0, b = 0] = t.params;
  switch (t.type) {
    case 'gt': return v > a;
    case 'lt': return v < a;
    case 'within_range': return v > a && v < b;
    case 'outside_range': return v < a || v > b;
    default: throw new Error(`threshold ${t.type}`);
  }
}
