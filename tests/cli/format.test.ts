// What the CLI's text output shows of times, costs and findings: pure functions of what the
// read API answers (the commands that print them run in the other CLI tests).
import { describe, expect, it } from 'vitest';
import { ms, usd } from '../../collector/src/cli/format.js';
import { renderSession, type SessionDetail } from '../../collector/src/cli/session.js';

describe('text output', () => {
  it('durations round once: no 1m60s, 60.0s, 1000ms or 1000µs', () => {
    expect(ms(119_700)).toBe('2m0s');
    expect(ms(59_960)).toBe('1m0s');
    expect(ms(59_940)).toBe('59.9s');
    expect(ms(90_400)).toBe('1m30s');
    expect(ms(999.6)).toBe('1.0s');
    expect(ms(0.9996)).toBe('1.0ms');
    expect(ms(0.5)).toBe('500µs');
    expect(ms(3_599_600)).toBe('1h0m');
    expect(ms(86_400_000)).toBe('24h0m');
  });

  it('a cheap call costs something: not $0.0000', () => {
    expect(usd(0.000021)).toBe('$0.000021');
    expect(usd(0.0004)).toBe('$0.0004');
    expect(usd(0.0000004)).toBe('<$0.000001');
    expect(usd(0)).toBe('$0');
    expect(usd(1.234)).toBe('$1.23');
    expect(usd(-0.5)).toBe('-$0.50'); // a refund or a correction, not a tiny cost
  });

  it('each finding has its own mark past 26 findings', () => {
    const findings = Array.from({ length: 30 }, (_, i) => ({
      finding_id: `f${i}`, detector: 'stuck', tools: [`tool_${i}`], repeats: 5, wasted_calls: 4, wasted_tokens: 0, wasted_cost_usd: 0, wasted_time_ms: 0,
      first_span_id: `s${i}`, last_span_id: `s${i}`, first_ts: '2026-12-05T10:00:00Z', last_ts: '2026-12-05T10:00:00Z', message: '',
    }));
    const text = renderSession({ session_id: 's', scorecard: null, total_calls: 0, offset: 0, calls: [], findings } as unknown as SessionDetail);
    const marks = text.split('\n').filter((l) => / stuck /.test(l)).map((l) => l.trim().split(' ')[0]);
    expect(marks).toHaveLength(30);
    expect(new Set(marks).size).toBe(30);
  });

  it('a session several agents share: the header lists them, each call and finding says whose it is; one agent: no column', () => {
    const call = (i: number, agent: string) => ({
      kind: 'tool', ts: `2026-12-05T10:00:0${i}Z`, end_ts: `2026-12-05T10:00:0${i}Z`, duration_ms: 5, span_id: `s${i}`, name: 'read_file', agent,
      args_hash: 'aaaaaaaaaaaaaaaa', result_hash: 'bbbbbbbbbbbbbbbb', status: 'ok', error_type: '', error_message: '', arguments: '', result: '',
    });
    const finding = { finding_id: 'f', detector: 'stuck', agent: 'looper', tools: ['read_file'], repeats: 3, wasted_calls: 2, wasted_tokens: 0, wasted_cost_usd: 0, wasted_time_ms: 0,
      first_span_id: 's1', last_span_id: 's3', first_ts: '2026-12-05T10:00:01Z', last_ts: '2026-12-05T10:00:03Z', message: '' };
    const scorecard = { agent: 'reader', service: 'svc', model: '', calls: 4, llm_calls: 0, errors: 0, loops_entered: 1, tokens: 0, cost_usd: 0, wall_time_s: 3, waste_ratio: 0.5, ended_cleanly: 1, started_at: '2026-12-05T10:00:00Z' };
    const shared = renderSession({ session_id: 's', scorecard, total_calls: 4, offset: 0, calls: [call(0, 'reader'), call(1, 'looper'), call(2, 'looper'), call(3, 'looper')], findings: [finding] } as unknown as SessionDetail);
    expect(shared).toContain('agents reader, looper');
    expect(shared).toMatch(/stuck\s+looper: read_file/);
    const timeline = shared.split('\n').filter((l) => /args#/.test(l));
    expect(timeline.map((l) => /(reader|looper)\s+tool/.exec(l)?.[1])).toEqual(['reader', 'looper', 'looper', 'looper']);
    const alone = renderSession({ session_id: 's', scorecard: { ...scorecard, agent: 'looper' }, total_calls: 1, offset: 0, calls: [call(1, 'looper')], findings: [finding] } as unknown as SessionDetail);
    expect(alone).toContain('agent looper  service svc');
    expect(alone).not.toMatch(/looper\s+tool/);
    // a later page of a shared session with one agent's calls only: the scorecard's agent is another, so the agents are named
    const page = renderSession({ session_id: 's', scorecard, total_calls: 4, offset: 3, calls: [call(3, 'looper')], findings: [] } as unknown as SessionDetail);
    expect(page).toContain('agents reader, looper');
    expect(page).toMatch(/looper\s+tool read_file/);
  });

  it('a session with many findings: only those of the calls shown are listed and get a margin column, the rest counted', () => {
    const call = (i: number, name: string) => ({
      kind: 'tool', ts: `2026-12-05T10:00:0${i}Z`, end_ts: `2026-12-05T10:00:0${i}Z`, duration_ms: 5, span_id: `c${i}`, name, agent: 'a',
      args_hash: 'aaaaaaaaaaaaaaaa', result_hash: 'bbbbbbbbbbbbbbbb', status: 'ok', error_type: '', error_message: '', arguments: '', result: '',
    });
    const finding = (i: number, tool: string, day: string) => ({
      finding_id: `f${i}`, detector: 'runaway', agent: 'a', tools: [tool], repeats: 3, wasted_calls: 2, wasted_tokens: 0, wasted_cost_usd: 0, wasted_time_ms: 0,
      first_span_id: `x${i}`, last_span_id: `y${i}`, first_ts: `${day}T10:00:00Z`, last_ts: `${day}T10:00:09Z`, message: '',
    });
    // 2 findings on the calls shown, 300 on other calls of the session (another day)
    const findings = [finding(0, 'read_file', '2026-12-05'), ...Array.from({ length: 300 }, (_, i) => finding(i + 1, 'read_file', '2026-12-04')), finding(301, 'write_file', '2026-12-05')];
    const text = renderSession({ session_id: 'big', scorecard: null, total_calls: 9000, offset: 0, calls: [call(1, 'read_file'), call(2, 'write_file'), call(3, 'search')], findings } as unknown as SessionDetail);
    const listed = text.split('\n').filter((l) => / runaway /.test(l));
    expect(listed).toHaveLength(2);
    expect(text).toContain('… 300 more findings not on the calls shown (`npx loopwatch findings --session big`)');
    const timeline = text.split('\n').filter((l) => /args#/.test(l));
    expect(timeline.map((l) => l.slice(0, 3))).toEqual(['A  ', ' B ', '   ']); // two margin columns and a space, not 302
  });
});
