// The test expander reproduces the plugin's macro expansion (cases from the plugin's own
// tests and documentation), so the SQL the other tests run is the SQL Grafana would send.
import { describe, expect, it } from 'vitest';
import { applyBackendMacros, applyConditionalAll, expandAlertQuery, expandPanelQuery, replaceVariables } from './macros.js';

const from = new Date('2026-01-01T00:00:00Z');
const to = new Date('2026-01-01T01:00:00Z');
const o = { from, to, intervalMs: 30_000 };

describe('backend macros (pkg/macros)', () => {
  it('time filters and bounds', () => {
    expect(applyBackendMacros('WHERE $__timeFilter(ts)', o)).toBe('WHERE ts >= toDateTime(1767225600) AND ts <= toDateTime(1767229200)');
    expect(applyBackendMacros('WHERE $__timeFilter_ms(ts)', o)).toBe(
      'WHERE ts >= fromUnixTimestamp64Milli(1767225600000) AND ts <= fromUnixTimestamp64Milli(1767229200000)',
    );
    expect(applyBackendMacros('$__fromTime, $__toTime, $__fromTime_ms', o)).toBe('toDateTime(1767225600), toDateTime(1767229200), fromUnixTimestamp64Milli(1767225600000)');
    expect(applyBackendMacros('$__dateFilter(d)', o)).toBe("d >= toDate('2026-01-01') AND d <= toDate('2026-01-01')");
    expect(applyBackendMacros('$__dt(d, t)', o)).toBe(
      "(d >= toDate('2026-01-01') AND d <= toDate('2026-01-01')) AND (t >= toDateTime(1767225600) AND t <= toDateTime(1767229200))",
    );
  });

  it('intervals: seconds, at least 1', () => {
    expect(applyBackendMacros('$__timeInterval(ts)', o)).toBe('toStartOfInterval(toDateTime(ts), INTERVAL 30 second)');
    expect(applyBackendMacros('$__timeInterval(ts)', { ...o, intervalMs: 200 })).toBe('toStartOfInterval(toDateTime(ts), INTERVAL 1 second)');
    expect(applyBackendMacros('$__timeInterval_ms(ts)', o)).toBe('toStartOfInterval(toDateTime64(ts, 3), INTERVAL 30000 millisecond)');
    expect(applyBackendMacros('$__interval_s', o)).toBe('30');
  });

  it('a macro without arguments leaves later parentheses alone', () => {
    expect(applyBackendMacros('ts >= $__fromTime AND ts <= $__toTime AND f(x) > 0', o)).toBe(
      'ts >= toDateTime(1767225600) AND ts <= toDateTime(1767229200) AND f(x) > 0',
    );
  });

  it('nested parentheses in arguments, and every occurrence', () => {
    expect(applyBackendMacros('$__timeFilter(toDateTime(ts)) OR $__timeFilter(toDateTime(ts))', o)).toBe(
      'toDateTime(ts) >= toDateTime(1767225600) AND toDateTime(ts) <= toDateTime(1767229200) OR toDateTime(ts) >= toDateTime(1767225600) AND toDateTime(ts) <= toDateTime(1767229200)',
    );
  });

  it('rejects a wrong argument count and leaves no macro unexpanded', () => {
    expect(() => applyBackendMacros('$__timeFilter(a, b)', o)).toThrow(/expected 1 argument/);
    expect(() => applyBackendMacros('$__unknownMacro(x)', o)).toThrow(/unexpanded macro/);
  });
});

describe('frontend: $__conditionalAll and template variables', () => {
  const sql = 'select stuff from table where $__conditionalAll(fieldVal in ($fieldVal), $fieldVal);';

  it('1=1 when All is selected or the value is empty', () => {
    expect(applyConditionalAll(sql, { fieldVal: { current: '$__all' } })).toBe('select stuff from table where 1=1;');
    expect(applyConditionalAll(sql, { fieldVal: { current: ['$__all'] } })).toBe('select stuff from table where 1=1;');
    expect(applyConditionalAll(sql, { fieldVal: { current: '' } })).toBe('select stuff from table where 1=1;');
  });

  it('the condition otherwise, every occurrence', () => {
    expect(applyConditionalAll(sql, { fieldVal: { current: "'val1', 'val2'" } })).toBe('select stuff from table where fieldVal in ($fieldVal);');
    const two = 'WHERE $__conditionalAll(a IN ($a), $a) AND $__conditionalAll(b IN (f(1, 2)), $b)';
    expect(applyConditionalAll(two, { a: { current: ['x'] }, b: { current: ['$__all'] } })).toBe('WHERE a IN ($a) AND 1=1');
  });

  it('formats: the plugin default quotes multi-values, singlequote quotes and escapes', () => {
    const vars = { m: { current: ['a', "b'c"] }, s: { current: 'x' } };
    expect(replaceVariables('IN ($m) = $s', vars)).toBe("IN ('a','b'c') = x");
    expect(replaceVariables('IN (${m:singlequote})', vars)).toBe("IN ('a','b\\'c')");
    expect(replaceVariables('${s:raw} $unknown', vars)).toBe('x $unknown');
  });

  it('All without a custom all value stands for every option', () => {
    expect(replaceVariables('IN (${m:singlequote})', { m: { current: ['$__all'], options: ['p', 'q'] } })).toBe("IN ('p','q')");
  });

  it('a panel query end to end; an alert query over its relative range', () => {
    const q = 'SELECT count() FROM t WHERE $__timeFilter(ts) AND $__conditionalAll(agent IN (${agent:singlequote}), $agent)';
    expect(expandPanelQuery(q, { from, to, variables: { agent: { current: ['coder'] } } })).toBe(
      "SELECT count() FROM t WHERE ts >= toDateTime(1767225600) AND ts <= toDateTime(1767229200) AND agent IN ('coder')",
    );
    expect(expandPanelQuery(q, { from, to, variables: { agent: { current: ['$__all'], options: ['coder'] } } })).toBe(
      'SELECT count() FROM t WHERE ts >= toDateTime(1767225600) AND ts <= toDateTime(1767229200) AND 1=1',
    );
    expect(expandAlertQuery('$__timeFilter(ts)', 300, 0, to)).toBe('ts >= toDateTime(1767228900) AND ts <= toDateTime(1767229200)');
  });
});
