// Evaluates a provisioned alert rule the way Grafana does for a SQL datasource returning a
// table: the query (plugin macros expanded over the rule's relative time range) gives one
// row per alert instance, its string columns the labels and its single numeric column the
// value; the threshold expression decides which instances fire.
import type { TestCollector } from '../helpers/collector.js';
import { thresholdFires, type AlertQuery } from './files.js';
import { expandAlertQuery } from './macros.js';

export interface Instance {
  labels: Record<string, string>;
  value: number;
  firing: boolean;
}

const NUMERIC = /^(Nullable\()?(U?Int\d+|Float\d+|Decimal.*)\)?$/;

export async function evaluateRule(tc: TestCollector, rule: AlertQuery, now = new Date()): Promise<Instance[]> {
  const sql = expandAlertQuery(rule.rawSql, rule.from, rule.to, now);
  const rs = await tc.collector.store.client.query({ query: sql, format: 'JSON' });
  const out = (await rs.json()) as { meta: { name: string; type: string }[]; data: Record<string, unknown>[] };
  const numeric = out.meta.filter((m) => NUMERIC.test(m.type));
  const labels = out.meta.filter((m) => !NUMERIC.test(m.type));
  // Grafana's numeric-table rule: exactly one number column, every other column a string
  if (numeric.length !== 1) throw new Error(`${rule.uid}: ${numeric.length} numeric columns`);
  for (const l of labels) if (!/String/.test(l.type)) throw new Error(`${rule.uid}: label column ${l.name} is ${l.type}`);
  return out.data.map((row) => {
    const value = Number(row[numeric[0]!.name]);
    return {
      labels: Object.fromEntries(labels.map((l) => [l.name, String(row[l.name])])),
      value,
      firing: thresholdFires(rule.threshold, value),
    };
  });
}
