// The session file (loopwatch.session.v1) read back, and replayed through the loop rules: bad
// files are refused with the line and field at fault; the replay orders calls by start, leaves
// out calls a LoopGuard stopped, never takes an unknown result for "the same result", and
// attributes tokens and cost as the detector pass does (the requesting LLM call, by start, split
// evenly; an LLM call made inside a tool call charged to it).
import { describe, expect, it } from 'vitest';
import { costUsd } from '../../instrumentation/src/cost.js';
import { replaySession } from '../../collector/src/export/replay.js';
import { isoToNs, parseSessionFile, SessionFileError } from '../../collector/src/export/session-file.js';

const header = (calls?: number) => JSON.stringify({ type: 'session', format: 'loopwatch.session.v1', session_id: 's-1', ...(calls === undefined ? {} : { calls }) });
const at = (s: number) => `2026-12-01T10:00:${String(s).padStart(2, '0')}.000000000Z`;
let span = 0;
const tool = (s: number, name: string, fields: Record<string, unknown> = {}) =>
  JSON.stringify({ type: 'tool_call', ts: at(s), end_ts: at(s), span_id: `t${String(++span).padStart(15, '0')}`, tool: name, args_hash: 'aaaaaaaaaaaaaaaa', result_hash: 'bbbbbbbbbbbbbbbb', status: 'ok', ...fields });
const llm = (s: number, fields: Record<string, unknown> = {}) =>
  JSON.stringify({ type: 'llm_call', ts: at(s), end_ts: at(s), span_id: `l${String(++span).padStart(15, '0')}`, model: 'gpt-4o', input_tokens: 900, output_tokens: 100, total_tokens: 1000, cost_usd: 0.01, ...fields });
const file = (...lines: string[]) => lines.join('\n') + '\n';

describe('reading a session file', () => {
  it('refuses a bad file, naming the line and the field', () => {
    const cases: [string, RegExp][] = [
      ['', /empty file: no header line/],
      [file(tool(1, 'x')), /line 1: the file must start with a header line/],
      [file(JSON.stringify({ type: 'session', format: 'loopwatch.session.v9', session_id: 's' })), /line 1: format Invalid input: expected "loopwatch.session.v1"/],
      [file(header(), '{"type":"tool_call",'), /line 2: not JSON/],
      [file(header(), tool(1, 'x', { args_hash: 'ABC' })), /line 2: args_hash must be 16 lowercase hex digits/],
      [file(header(), tool(1, 'x', { ts: 'yesterday' })), /line 2: ts must be an ISO-8601 UTC time/],
      [file(header(), tool(1, 'x', { tool: '' })), /line 2: tool /],
      [file(header(), JSON.stringify({ type: 'span' })), /line 2: type must be "tool_call" or "llm_call", got "span"/],
      [file(header(3), tool(1, 'x'), tool(2, 'x')), /the header declares 3 calls, the file has 2 \(cut short\?\)/],
      // a call twice would be judged as a repeat the agent never made
      [file(header(2), tool(1, 'x', { span_id: 'dddddddddddddddd' }), tool(2, 'x', { span_id: 'dddddddddddddddd' })), /line 3: span dddddddddddddddd is in the file twice/],
    ];
    for (const [text, message] of cases) {
      expect(() => parseSessionFile(text), text).toThrow(SessionFileError);
      expect(() => parseSessionFile(text), text).toThrow(message);
    }
  });

  it('takes more calls than the header declares: a session that received calls while it was exported', () => {
    expect(parseSessionFile(file(header(1), tool(1, 'x'), tool(2, 'y'))).toolCalls).toHaveLength(2);
  });

  it('reads times to the nanosecond and orders calls by start', () => {
    expect(isoToNs('2026-12-01T10:00:00.123456789Z')).toBe(1796119200123456789n);
    expect(isoToNs('2026-12-01T10:00:00Z')).toBe(1796119200000000000n);
    expect(isoToNs('2026-12-01 10:00:00')).toBeUndefined();
    const f = parseSessionFile(file(header(3), tool(5, 'late'), tool(1, 'early'), llm(0)));
    expect(f.toolCalls.map((c) => c.tool)).toEqual(['early', 'late']);
    expect(f.llmCalls).toHaveLength(1);
  });
});

describe('replaying a session file', () => {
  it('a wall time exactly at the budget is not over it, whatever the start time (times to the nanosecond, as SQL)', () => {
    // for many start times: nanoseconds since the epoch are past 2^53, and as a Number the end
    // minus the start came out 256 ns over 500 ms for some of them
    for (let ms = 0; ms < 40; ms++) {
      const t = (offset: number) => new Date(Date.UTC(2026, 11, 1, 10, 0, 0) + ms * 1013 + offset).toISOString().replace('Z', '000000Z').replace(/\.(\d{3})000000Z$/, '.$1000000Z');
      const call = (i: number, from: number, to: number) =>
        JSON.stringify({ type: 'tool_call', ts: t(from), end_ts: t(to), span_id: `c${ms}${i}`.padEnd(16, '0'), tool: 'read', args_hash: `${i}`.padStart(16, 'a'), result_hash: `${i}`.padStart(16, 'b'), status: 'ok' });
      const r = replaySession(parseSessionFile(file(header(), call(1, 2, 7), call(2, 17, 502))), { budgetMaxWallTimeS: 0.5 });
      expect(r.findings.filter((f) => f.kind === 'runaway'), t(0)).toEqual([]);
    }
  });

  it('finds a stuck run, with the waste of the LLM calls that requested it', () => {
    // one LLM call requests calls 1-2, another 3-4: 1000 tokens and $0.01 each, split in two
    const f = parseSessionFile(file(header(), llm(0), tool(1, 'read'), tool(2, 'read'), llm(3), tool(4, 'read'), tool(5, 'read')));
    const r = replaySession(f);
    expect(r).toMatchObject({ sessionId: 's-1', toolCalls: 4, llmCalls: 2 });
    const stuck = r.findings.find((x) => x.kind === 'stuck')!;
    expect(stuck).toMatchObject({ repeats: 4, wastedCalls: 3, wastedTokens: 1500 });
    expect(stuck.wastedCostUsd).toBeCloseTo(0.015, 12);
  });

  it('a streamed LLM call is charged to the calls it asked for; one made inside a tool call, to that call', () => {
    // a turn streamed from 0 to 6 s asks for calls 1-2 (by its start); call 4 runs a model itself (50k tokens)
    const inner = tool(4, 'read');
    const innerSpan = (JSON.parse(inner) as { span_id: string }).span_id;
    const f = parseSessionFile(file(header(), llm(0, { end_ts: at(6) }), tool(1, 'read'), tool(2, 'read'), llm(3), inner,
      llm(4, { parent_span_id: innerSpan, total_tokens: 50_000, input_tokens: 50_000, output_tokens: 0, cost_usd: 0.5 }), tool(5, 'read')));
    const stuck = replaySession(f).findings.find((x) => x.kind === 'stuck')!;
    // wasted: calls 2, 4, 5 = 500 + (500 + 50,000) + 500
    expect(stuck).toMatchObject({ repeats: 4, wastedCalls: 3, wastedTokens: 51_500 });
    expect(stuck.wastedCostUsd).toBeCloseTo(0.005 + 0.505 + 0.005, 12);
  });

  it('an LLM call without a reported cost is priced from its tokens', () => {
    const f = parseSessionFile(file(header(), llm(0, { cost_usd: 0, input_tokens: 1_000_000, output_tokens: 0, total_tokens: 1_000_000 }), tool(1, 'read'), tool(2, 'read'), tool(3, 'read')));
    const stuck = replaySession(f).findings.find((x) => x.kind === 'stuck')!;
    // gpt-4o input at its list price (the shipped table), 2 of the 3 calls wasted
    const price = costUsd('gpt-4o', { inputTokens: 1_000_000 })!;
    expect(price).toBeGreaterThan(0);
    expect(stuck.wastedCostUsd).toBeCloseTo((2 / 3) * price, 12);
    expect(stuck.wastedTokens).toBeCloseTo((2 / 3) * 1_000_000, 6);
  });

  it('unknown results are never the same result; stopped calls are left out', () => {
    const unknown = { result_hash: undefined };
    const f = parseSessionFile(file(header(), tool(1, 'read', unknown), tool(2, 'read', unknown), tool(3, 'read', unknown)));
    expect(replaySession(f).findings.map((x) => x.kind)).not.toContain('stuck');
    const stopped = { status: 'error', error_type: 'LoopDetectedError', error_message: 'halted', result_hash: undefined };
    const g = parseSessionFile(file(header(), tool(1, 'read'), tool(2, 'read'), tool(3, 'x', stopped), tool(4, 'x', stopped), tool(5, 'x', stopped), tool(6, 'x', stopped)));
    const r = replaySession(g);
    expect(r.toolCalls).toBe(2);
    expect(r.findings).toEqual([]);
  });

  it('takes detector settings', () => {
    const f = parseSessionFile(file(header(), tool(1, 'read'), tool(2, 'read')));
    expect(replaySession(f).findings).toEqual([]);
    expect(replaySession(f, { stuckMinRun: 2 }).findings.map((x) => x.kind)).toEqual(['stuck']);
  });
});
