// Report figures at their edges, against hand-computed answers (a review reproduced each as wrong):
// a model filter, tool calls past UTC midnight, a store in another time zone, a model used without
// tools, file lists and cut arguments, a final LLM call that failed. Spans as the collector
// writes them, inserted into otel_traces so that the real views normalize them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runDetectors } from '../../collector/src/detect/run-detectors.js';
import { loadReport, runReport } from '../../queries/src/reports.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { buildSession, dt64, insertSpans, type BuiltSession } from '../detectors/helpers.js';

let tc: TestCollector;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
});
afterAll(async () => {
  await tc?.close();
});

const DAY = 86_400_000;
// a UTC midnight four days ago
const midnight = Math.floor(Date.now() / DAY) * DAY - 4 * DAY;
const utcDay = (ms: number) => new Date(ms).toISOString().slice(0, 10);
const row = (s: BuiltSession, i: number) => s.rows[s.toolRowIndex[i]!]! as { SpanAttributes: Record<string, string> };

/** An LLM call span of the session's trace (no tool call with it), at `ms`, lasting `durMs`. */
function llmSpan(s: BuiltSession, ms: number, durMs: number, opts: { model?: string; error?: string; id: string }) {
  const model = opts.model ?? 'gpt-4o';
  return {
    Timestamp: dt64(BigInt(ms) * 1_000_000n), TraceId: s.traceId, SpanId: opts.id, ParentSpanId: s.rootSpanId, TraceState: '',
    SpanName: `chat ${model}`, SpanKind: 'Client', ServiceName: 'test-agent-svc', ResourceAttributes: { 'service.name': 'test-agent-svc' },
    ScopeName: 'test', ScopeVersion: '', Duration: String(durMs * 1_000_000),
    SpanAttributes: { 'gen_ai.conversation.id': s.sessionId, 'gen_ai.agent.name': 'test-agent', 'gen_ai.operation.name': 'chat', 'gen_ai.request.model': model,
      'gen_ai.usage.input_tokens': '100', 'gen_ai.usage.output_tokens': '10' },
    StatusCode: opts.error ? 'Error' : 'Unset', StatusMessage: opts.error ?? '',
    'Events.Timestamp': [], 'Events.Name': [], 'Events.Attributes': [], 'Links.TraceId': [], 'Links.SpanId': [], 'Links.TraceState': [], 'Links.Attributes': [],
  };
}

describe('model-reliability', () => {
  it('a model filter keeps only the tool calls that model requested', async () => {
    const s = buildSession('edge-model-filter', [
      { tool: 'fetch', model: 'edge-mini' },
      { tool: 'deploy', model: 'edge-haiku', error: { type: 'DeployError', message: 'quota' } },
      { tool: 'deploy', model: 'edge-haiku' },
    ], { startMs: midnight + 12 * 3600_000 });
    await insertSpans(tc.collector.store.client, s.rows);
    const range = { from: midnight, to: midnight + DAY };
    const [mini] = await runReport(tc.collector.store.client, 'model-reliability', { ...range, model: 'edge-mini' });
    expect(mini).toMatchObject({ model: 'edge-mini', tool_calls: 1, tool_errors: 0, recovery_rate: null });
    const [haiku] = await runReport(tc.collector.store.client, 'model-reliability', { ...range, model: 'edge-haiku' });
    expect(haiku).toMatchObject({ tool_calls: 2, tool_errors: 1, recovery_rate: 1 });
  });

  it('a tool call an LLM call without a model requested is no model\'s, not the named model\'s before it', async () => {
    const s = buildSession('edge-no-model', [
      { tool: 'fetch', model: 'edge-named' },
      { tool: 'deploy', model: '', error: { type: 'DeployError', message: 'quota' } },
    ], { startMs: midnight + 13 * 3600_000 });
    await insertSpans(tc.collector.store.client, s.rows);
    const rows = await runReport(tc.collector.store.client, 'model-reliability', { from: midnight, to: midnight + DAY });
    expect(rows.filter((r) => r.model === 'edge-named')).toMatchObject([{ tool_calls: 1, tool_errors: 0 }]);
    expect(rows.filter((r) => r.model === '')).toEqual([]);
  });

  it('a call the LoopGuard halted before it ran is no tool call of the model, nor a failure', async () => {
    const s = buildSession('edge-halted', [
      { tool: 'deploy', model: 'edge-halt', error: { type: 'DeployError', message: 'quota' } },
      { tool: 'deploy', model: 'edge-halt', error: { type: 'LoopDetectedError', message: 'Loopwatch halted a looping tool call: error_loop' } },
      { tool: 'fetch', model: 'edge-halt' },
    ], { startMs: midnight + 14 * 3600_000 });
    await insertSpans(tc.collector.store.client, s.rows);
    const rows = await runReport(tc.collector.store.client, 'model-reliability', { from: midnight, to: midnight + DAY, model: 'edge-halt' });
    expect(rows).toMatchObject([{ model: 'edge-halt', tool_calls: 2, tool_errors: 1, tool_error_rate: 0.5, recovery_rate: 0 }]);
    // the session's scorecard: a call, but no error; counted apart as halted
    const [card] = await runReport(tc.collector.store.client, 'session-scorecard', { from: midnight, to: midnight + DAY, session_id: 'edge-halted', limit: 1 });
    expect(card).toMatchObject({ calls: 3, errors: 1, halted: 1, failed_tools: 1, retries: 0 });
  });

  it('tool calls just past UTC midnight count with the LLM call that requested them, on its day, whatever the store\'s zone', async () => {
    // the LLM call at 23:59:50 runs 15 s: its tool call starts after midnight, and so does the retry it needs no LLM call for
    const s = buildSession('edge-midnight', [
      { tool: 'deploy', model: 'edge-night', llmMs: 15_000, error: { type: 'DeployError', message: 'quota' } },
      { tool: 'deploy', model: 'edge-night', tokensIn: 0, tokensOut: 0 },
    ], { startMs: midnight + DAY - 10_000 });
    await insertSpans(tc.collector.store.client, s.rows);
    const range = { from: midnight, to: midnight + 2 * DAY, model: 'edge-night' };
    const expected = [{ day: utcDay(midnight), model: 'edge-night', sessions: 1, tool_calls: 2, tool_errors: 1, recovery_rate: 1 }];
    expect(await runReport(tc.collector.store.client, 'model-reliability', range)).toMatchObject(expected);
    // the same SQL in a store whose zone is Tokyo: the same UTC day
    const { sql } = loadReport('model-reliability');
    const rs = await tc.collector.store.client.query({
      query: sql, format: 'JSONEachRow', clickhouse_settings: { session_timezone: 'Asia/Tokyo' },
      query_params: { from: (range.from / 1000).toFixed(3), to: (range.to / 1000).toFixed(3), model: 'edge-night', agent: '' },
    });
    const tokyo = await rs.json<{ day: string; tool_calls: string | number }>();
    expect(tokyo.map((r) => [r.day, Number(r.tool_calls)])).toEqual([[utcDay(midnight), 2]]);
    // a range of that day alone holds them too (its tool calls start after it), and the next day's none
    expect(await runReport(tc.collector.store.client, 'model-reliability', { from: midnight, to: midnight + DAY, model: 'edge-night' })).toMatchObject(expected);
    expect(await runReport(tc.collector.store.client, 'model-reliability', { from: midnight + DAY, to: midnight + 2 * DAY, model: 'edge-night' })).toEqual([]);
  });
});

describe('degradation', () => {
  it('a model used without tools is judged on its latency', async () => {
    const client = tc.collector.store.client;
    // seven days of 60 chat calls of 100 ms, then a day of 60 at 300 ms: three times slower
    const days = 8;
    const start = midnight - 4 * DAY; // the judged day is the last, three days before today
    for (let d = 0; d < days; d++) {
      const s = buildSession(`edge-chat-${d}`, [], { startMs: start + d * DAY + 3600_000 });
      const rows = Array.from({ length: 60 }, (_, i) => llmSpan(s, start + d * DAY + 3600_000 + i * 60_000, d === days - 1 ? 300 : 100, { model: 'edge-chat', id: `${d.toString(16).padStart(8, '0')}${i.toString(16).padStart(8, '0')}` }));
      await insertSpans(client, rows);
    }
    const r = await runDetectors(client, { full: true });
    expect(r.errors).toEqual({});
    const found = await tc.rows<{ session_id: string; tools: string[] }>(`SELECT session_id, tools FROM agent_findings FINAL WHERE detector = 'degradation' AND model = 'edge-chat'`);
    expect(found).toEqual([{ session_id: `model:edge-chat@${utcDay(start + (days - 1) * DAY)}`, tools: ['latency_p50'] }]);
  });
});

describe('session-scorecard', () => {
  it('newest first is the most recently active first: a session that started first and is still going leads', async () => {
    const t = midnight + 5 * 3600_000;
    // A starts first and calls again two hours later; B starts an hour after A and stops
    const a = buildSession('edge-order-a', [{ tool: 'poll', model: 'edge-order' }, { tool: 'poll', model: 'edge-order', args: { n: 2 } }], { startMs: t, gapMs: 2 * 3600_000, agent: 'edge-order' });
    const b = buildSession('edge-order-b', [{ tool: 'poll', model: 'edge-order' }], { startMs: t + 3600_000, agent: 'edge-order' });
    await insertSpans(tc.collector.store.client, [...a.rows, ...b.rows]);
    const range = { from: t - 1000, to: t + 4 * 3600_000, agent: 'edge-order' };
    expect((await runReport(tc.collector.store.client, 'session-scorecard', { ...range, limit: 2, newest_first: 1 })).map((r) => r.session_id)).toEqual(['edge-order-a', 'edge-order-b']);
    expect((await runReport(tc.collector.store.client, 'session-scorecard', { ...range, limit: 1, newest_first: 1 })).map((r) => r.session_id)).toEqual(['edge-order-a']);
    // by start, oldest first, when not newest first
    expect((await runReport(tc.collector.store.client, 'session-scorecard', range)).map((r) => r.session_id)).toEqual(['edge-order-a', 'edge-order-b']);
  });

  it('files from lists and from arguments cut at the length limit; a command given as a list', async () => {
    const s = buildSession('edge-files', [
      { tool: 'read_file', args: { path: 'a.ts' } },
      { tool: 'read_files', args: { paths: ['d.ts', 'e.ts'] } },
      { tool: 'write_file', args: { path: 'big.ts', content: 'x'.repeat(9000) } },
      { tool: 'shell', args: { command: ['bash', '-lc', 'npm test'] } },
    ], { startMs: midnight + 12 * 3600_000 });
    // the big write's arguments as another instrumentation records them (path first): cut past 8,192 characters, no longer JSON
    const args = [{ path: 'a.ts' }, { paths: ['d.ts', 'e.ts'] }, { path: 'big.ts', content: 'x'.repeat(9000) }, { command: ['bash', '-lc', 'npm test'] }];
    args.forEach((a, i) => (row(s, i).SpanAttributes['gen_ai.tool.call.arguments'] = JSON.stringify(a)));
    await insertSpans(tc.collector.store.client, s.rows);
    const [r] = await runReport(tc.collector.store.client, 'session-scorecard', { from: midnight, to: midnight + DAY, session_id: 'edge-files' });
    expect(r).toMatchObject({ files: ['a.ts', 'big.ts', 'd.ts', 'e.ts'], files_touched: 4, commands: ['bash -lc npm test'] });
  });

  it('a session whose final LLM call failed did not end cleanly, also a streamed one that ran the last tool call; a tool\'s own LLM call that failed is not the agent\'s', async () => {
    const at = midnight + 12 * 3600_000;
    const scorecard = async (id: string) =>
      (await runReport(tc.collector.store.client, 'session-scorecard', { from: midnight, to: midnight + DAY, session_id: id }))[0];
    const final = buildSession('edge-final-llm', [{ tool: 'read_file', args: { path: 'a.ts' } }], { startMs: at });
    await insertSpans(tc.collector.store.client, [...final.rows, llmSpan(final, at + 10_000, 50, { error: 'overloaded', id: 'ffffffff00000001' })]);
    expect(await scorecard('edge-final-llm')).toMatchObject({ calls: 1, errors: 0, ended_cleanly: 0 });
    // the streamed LLM call that asked for the last tool call failed after it
    const streamed = buildSession('edge-streamed-llm', [{ tool: 'read_file', args: { path: 'a.ts' }, streamed: true }], { startMs: at });
    const chat = streamed.rows.find((r) => String(r.SpanName).startsWith('chat'))! as { StatusCode: string; StatusMessage: string };
    chat.StatusCode = 'Error';
    chat.StatusMessage = 'stream broke';
    await insertSpans(tc.collector.store.client, streamed.rows);
    expect(await scorecard('edge-streamed-llm')).toMatchObject({ calls: 1, errors: 0, ended_cleanly: 0 });
    // a summarizer the tool ran (its child span) failed; the tool call and the session went on fine
    const inner = buildSession('edge-inner-llm', [{ tool: 'summarize', args: { doc: 'a' }, innerLlmTokens: 100, durMs: 80 }], { startMs: at });
    const innerChat = inner.rows.find((r) => r.ParentSpanId === inner.spanIds[0])! as { StatusCode: string; StatusMessage: string };
    innerChat.StatusCode = 'Error';
    innerChat.StatusMessage = 'summarizer overloaded';
    await insertSpans(tc.collector.store.client, inner.rows);
    expect(await scorecard('edge-inner-llm')).toMatchObject({ calls: 1, errors: 0, ended_cleanly: 1 });
  });
});
