// Expands a Grafana panel / alert query the way grafana-clickhouse-datasource does, so its SQL
// can run on the embedded engine without Grafana. Three stages, in the plugin's order:
//
// 1. Frontend, CHDatasource.applyTemplateVariables: `$__conditionalAll(cond, $var)` becomes
//    `1=1` when the variable's current value is '' or '$__all' (All), else `cond`. The macro is
//    found with lastIndexOf and its arguments split on top-level commas (getMacroArgs).
// 2. Frontend, templateSrv.replace: `$var`, `${var}`, `${var:format}`. The plugin's default
//    formatter joins a multi-value as 'a','b' and leaves a single value raw; `singlequote`
//    quotes each value (escaping ') and joins them with commas. All without a custom allValue
//    means every option value.
// 3. Backend, the plugin's Go macros (pkg/macros/macros.go) through sqlutil.Interpolate:
//    `$__name` followed by a word boundary, arguments (when a '(' follows at once) up to the
//    balanced closing parenthesis, split on commas and trimmed:
//      $__timeFilter(c)     -> c >= toDateTime(<from s>) AND c <= toDateTime(<to s>)
//      $__timeFilter_ms(c)  -> c >= fromUnixTimestamp64Milli(<from ms>) AND c <= fromUnixTimestamp64Milli(<to ms>)
//      $__dateFilter(c)     -> c >= toDate('<from date>') AND c <= toDate('<to date>')
//      $__dateTimeFilter(d, t) / $__dt(d, t) -> (date filter on d) AND (time filter on t)
//      $__fromTime / $__toTime       -> toDateTime(<s>)
//      $__fromTime_ms / $__toTime_ms -> fromUnixTimestamp64Milli(<ms>)
//      $__timeInterval(c)    -> toStartOfInterval(toDateTime(c), INTERVAL <max(interval s, 1)> second)
//      $__timeInterval_ms(c) -> toStartOfInterval(toDateTime64(c, 3), INTERVAL <max(interval ms, 1)> millisecond)
//      $__interval_s         -> <max(interval s, 1)>
//    plus sqlutil's defaults the plugin does not override ($__timeFrom, $__timeTo: RFC 3339).
// Alert rules run stage 3 only (no template variables in alerting).

export interface VariableValue {
  /** The variable's current value: a string, an array (multi-value) or '$__all'. */
  current: string | string[];
  /** Every option the variable offers (what All stands for). */
  options?: string[];
}

export interface ExpandOptions {
  from: Date;
  to: Date;
  /** Grafana's $__interval for the panel, in milliseconds. */
  intervalMs?: number;
  variables?: Record<string, VariableValue>;
}

const ALL = '$__all';

/** Arguments of the macro whose '(' is at `open`: top-level comma split, as getMacroArgs does. */
function frontendMacroArgs(query: string, open: number): { args: string[]; end: number } | null {
  const args: string[] = [];
  let depth = 0;
  let last = open + 1;
  for (let i = open; i < query.length; i++) {
    const ch = query[i];
    if (ch === '(') depth++;
    else if (ch === ')') depth--;
    if (ch === ',' && depth === 1) {
      args.push(query.slice(last, i));
      last = i + 1;
    }
    if (depth === 0) {
      args.push(query.slice(last, i));
      return { args, end: i + 1 };
    }
  }
  return null;
}

export function applyConditionalAll(rawQuery: string, variables: Record<string, VariableValue>): string {
  const macro = '$__conditionalAll(';
  let query = rawQuery;
  let idx = query.lastIndexOf(macro);
  while (idx !== -1) {
    const parsed = frontendMacroArgs(query, idx + macro.length - 1);
    if (!parsed || parsed.args.length !== 2) return query;
    const [phraseArg, varArg] = parsed.args as [string, string];
    const name = varArg.trim().slice(1);
    const v = variables[name];
    const value = v === undefined ? undefined : Array.isArray(v.current) ? v.current.join(',') : v.current;
    const phrase = value === '' || value === ALL ? '1=1' : phraseArg;
    query = query.slice(0, idx) + phrase + query.slice(parsed.end);
    idx = query.lastIndexOf(macro);
  }
  return query;
}

function values(v: VariableValue): string[] {
  const cur = Array.isArray(v.current) ? v.current : [v.current];
  if (cur.length === 1 && cur[0] === ALL) return v.options ?? [];
  return cur;
}

function formatValue(v: VariableValue, format: string | undefined): string {
  const vals = values(v);
  const multi = Array.isArray(v.current) || (v.current === ALL);
  switch (format) {
    case undefined:
      // the plugin's formatter: arrays -> 'a','b'; a single value as it is
      return multi ? `'${vals.join("','")}'` : (vals[0] ?? '');
    case 'singlequote':
      return vals.map((s) => `'${s.replace(/'/g, "\\'")}'`).join(',');
    case 'doublequote':
      return vals.map((s) => `"${s.replace(/"/g, '\\"')}"`).join(',');
    case 'raw':
    case 'csv':
      return vals.join(',');
    case 'pipe':
      return vals.join('|');
    default:
      throw new Error(`variable format ${format} not implemented in the test expander`);
  }
}

/** templateSrv.replace: $var, ${var}, ${var:format}, [[var]]; unknown names stay as they are. */
export function replaceVariables(query: string, variables: Record<string, VariableValue>): string {
  const re = /\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}/g;
  return query.replace(re, (match, name1?: string, name2?: string, fmt2?: string, name3?: string, _path?: string, fmt3?: string) => {
    const name = name1 ?? name2 ?? name3;
    if (!name) return match;
    const v = variables[name];
    if (!v) return match;
    return formatValue(v, fmt2 ?? fmt3);
  });
}

// --- backend (Go) macros --------------------------------------------------------------

const sec = (d: Date) => Math.floor(d.getTime() / 1000);
const toDateTime = (d: Date) => `toDateTime(${sec(d)})`;
const toDateTime64 = (d: Date) => `fromUnixTimestamp64Milli(${d.getTime()})`;
const toDate = (d: Date) => `toDate('${d.toISOString().slice(0, 10)}')`;
const rfc3339 = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z');

type MacroFn = (args: string[], o: Required<Pick<ExpandOptions, 'from' | 'to' | 'intervalMs'>>) => string;

function want(name: string, args: string[], n: number): void {
  if (args.length !== n) throw new Error(`$__${name}: expected ${n} argument(s), received ${args.length}`);
}

const MACROS: Record<string, MacroFn> = {
  fromTime: (_a, o) => toDateTime(o.from),
  toTime: (_a, o) => toDateTime(o.to),
  fromTime_ms: (_a, o) => toDateTime64(o.from),
  toTime_ms: (_a, o) => toDateTime64(o.to),
  timeFilter: (a, o) => (want('timeFilter', a, 1), `${a[0]} >= ${toDateTime(o.from)} AND ${a[0]} <= ${toDateTime(o.to)}`),
  timeFilter_ms: (a, o) => (want('timeFilter_ms', a, 1), `${a[0]} >= ${toDateTime64(o.from)} AND ${a[0]} <= ${toDateTime64(o.to)}`),
  dateFilter: (a, o) => (want('dateFilter', a, 1), `${a[0]} >= ${toDate(o.from)} AND ${a[0]} <= ${toDate(o.to)}`),
  dateTimeFilter: (a, o) => (
    want('dateTimeFilter', a, 2),
    `(${a[0]} >= ${toDate(o.from)} AND ${a[0]} <= ${toDate(o.to)}) AND (${a[1]} >= ${toDateTime(o.from)} AND ${a[1]} <= ${toDateTime(o.to)})`
  ),
  dt: (a, o) => MACROS.dateTimeFilter!(a, o),
  timeInterval: (a, o) => (want('timeInterval', a, 1), `toStartOfInterval(toDateTime(${a[0]}), INTERVAL ${Math.max(Math.floor(o.intervalMs / 1000), 1)} second)`),
  timeInterval_ms: (a, o) => (want('timeInterval_ms', a, 1), `toStartOfInterval(toDateTime64(${a[0]}, 3), INTERVAL ${Math.max(Math.floor(o.intervalMs), 1)} millisecond)`),
  interval_s: (_a, o) => `${Math.max(Math.floor(o.intervalMs / 1000), 1)}`,
  // sqlutil defaults the plugin leaves in place
  timeFrom: (a, o) => (want('timeFrom', a, 1), `${a[0]} >= '${rfc3339(o.from)}'`),
  timeTo: (a, o) => (want('timeTo', a, 1), `${a[0]} <= '${rfc3339(o.to)}'`),
};

/** sqlutil.getMacroMatches: `$__name\b`, then, when a '(' follows the name at once, the
 * arguments up to the balanced ')' (grafana-plugin-sdk-go#859: a parenthesis further on is
 * not the macro's). */
function macroMatches(input: string, name: string): { text: string; args: string | null }[] {
  const re = new RegExp(`\\$__${name}\\b`, 'g');
  const out: { text: string; args: string | null }[] = [];
  for (let m = re.exec(input); m; m = re.exec(input)) {
    const start = m.index;
    const rest = input.slice(start);
    const nameLen = m[0].length;
    if (rest[nameLen] !== '(') {
      out.push({ text: m[0], args: null });
      continue;
    }
    let depth = 0;
    let end = 0;
    for (let i = nameLen; i < rest.length; i++) {
      const ch = rest[i];
      if (ch === '(') depth++;
      else if (ch === ')' && --depth === 0) {
        end = i + 1;
        break;
      }
    }
    if (end === 0) throw new Error(`$__${name}: unbalanced parentheses`);
    out.push({ text: rest.slice(0, end), args: rest.slice(nameLen + 1, end - 1) });
  }
  return out;
}

/** Go ranges over the macro map in random order and replaces each match with ReplaceAll, so
 * a query holding both `$__x` and `$__x_ms` can come out wrong (`$__x`'s text is a prefix of
 * the other). Here the longer names go first, the order in which such a query comes out
 * right; the dashboards never mix the two (tests/grafana/structure.test.ts). */
const MACRO_ORDER = Object.keys(MACROS).sort((a, b) => b.length - a.length);

export function applyBackendMacros(sql: string, o: Required<Pick<ExpandOptions, 'from' | 'to' | 'intervalMs'>>): string {
  let out = sql;
  for (const name of MACRO_ORDER) {
    const fn = MACROS[name]!;
    for (const m of macroMatches(out, name)) {
      const args = m.args === null ? [] : m.args.split(',').map((a) => a.trim());
      out = out.split(m.text).join(fn(args, o)); // strings.ReplaceAll
    }
  }
  const left = /\$__\w+/.exec(out);
  if (left) throw new Error(`unexpanded macro ${left[0]} in: ${out}`);
  return out;
}

/** A dashboard panel's query as the plugin sends it to ClickHouse. */
export function expandPanelQuery(sql: string, opts: ExpandOptions): string {
  const variables = opts.variables ?? {};
  const afterFrontend = replaceVariables(applyConditionalAll(sql, variables), variables);
  return applyBackendMacros(afterFrontend, { from: opts.from, to: opts.to, intervalMs: opts.intervalMs ?? 60_000 });
}

/** An alert rule's query: no template variables, backend macros only; the time range is the
 * rule's relativeTimeRange ending now. */
export function expandAlertQuery(sql: string, relativeFromSeconds: number, relativeToSeconds = 0, now = new Date()): string {
  const to = new Date(now.getTime() - relativeToSeconds * 1000);
  const from = new Date(now.getTime() - relativeFromSeconds * 1000);
  return applyBackendMacros(sql, { from, to, intervalMs: 1000 });
}
