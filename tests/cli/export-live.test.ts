// A session still receiving calls, paged and exported: the calls API pages after a cursor (the
// last call's ts and span id), so a late span that starts inside an earlier page (a parent
// exported after its children) neither repeats a call nor drops one, as offsets did. A real
// collector, the compiled CLI.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseSessionFile } from '../../collector/src/export/session-file.js';
import type { CallRow } from '../../collector/src/api/queries.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { tempDirs } from '../helpers/temp-dirs.js';
import { buildSession, insertSpans } from '../detectors/helpers.js';
import { assertBuilt, cli } from './helpers.js';

let tc: TestCollector;
const tempDir = tempDirs();

beforeAll(async () => {
  assertBuilt();
  tc = await startTestCollector({ detect: { enabled: false } });
});
afterAll(async () => {
  await tc?.close();
});

const page = async (session: string, q: string) => {
  const r = await fetch(`${tc.url}/api/v1/sessions/${session}/calls?${q}`);
  expect(r.status, q).toBe(200);
  return ((await r.json()) as { calls: CallRow[] }).calls;
};

describe('paging a session that receives calls meanwhile', () => {
  it('after a cursor: every call once, the late one (before the cursor) not in the pages after it', async () => {
    const client = tc.collector.store.client;
    const s = buildSession('live-paging', Array.from({ length: 5 }, (_, i) => ({ tool: 'read_file', args: { i }, result: `r${i}` })), { startMs: Date.now() - 60_000 });
    await insertSpans(client, s.rows.filter((r) => !String(r.SpanName).startsWith('invoke_agent')));
    const first = await page('live-paging', 'limit=4');
    expect(first).toHaveLength(4);
    // a call that starts before all of them arrives (with the session's root span)
    const late = buildSession('live-paging', [{ tool: 'plan', args: {}, result: 'p', tokensIn: 0, tokensOut: 0 }], { startMs: Date.now() - 120_000 });
    await insertSpans(client, late.rows);
    const last = first[first.length - 1]!;
    const rest: CallRow[] = [];
    for (let after = last; ; ) {
      const p = await page('live-paging', `limit=4&after_ts=${encodeURIComponent(after.ts)}&after_span=${after.span_id}`);
      rest.push(...p);
      if (p.length < 4) break;
      after = p[p.length - 1]!;
    }
    const ids = [...first, ...rest].map((c) => c.span_id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toHaveLength(10); // 5 tool calls and the 5 LLM calls before them
    expect(new Set(ids)).toEqual(new Set(s.rows.filter((r) => !String(r.SpanName).startsWith('invoke_agent')).map((r) => r.SpanId as string)));
    // by offset, the page after the first repeats its last call now
    expect((await page('live-paging', 'limit=4&offset=4'))[0]!.span_id).toBe(last.span_id);
    // the export pages by cursor too; the file replays (with the late call: 11)
    const out = join(tempDir('lw-export-live-'), 'live.jsonl');
    const r = await cli(['export', 'live-paging', '-o', out, '--url', tc.url]);
    expect(r.code, r.stderr).toBe(0);
    const f = parseSessionFile(readFileSync(out, 'utf8'));
    expect(f.toolCalls.length + f.llmCalls.length).toBe(11);
  });

  it('a cursor needs both its parts, and a time as the API gives it', async () => {
    for (const q of ['after_span=abc', 'after_ts=2026-12-06T01:00:00.000000000Z', 'after_ts=yesterday&after_span=abc']) {
      const r = await fetch(`${tc.url}/api/v1/sessions/live-paging/calls?${q}`);
      expect(r.status, q).toBe(400);
    }
  });
});

describe('the read API\'s session export', () => {
  it('streams a session of several pages, every call once in order, and ends whole', async () => {
    const n = 6000; // 12,000 calls with their LLM calls: three pages of 5,000
    const s = buildSession('big-export', Array.from({ length: n }, (_, i) => ({ tool: 'read_file', args: { i }, result: `r${i}` })), { startMs: Date.now() - 3_600_000 });
    await insertSpans(tc.collector.store.client, s.rows);
    const res = await fetch(`${tc.url}/api/v1/sessions/big-export/export`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/x-ndjson/);
    const f = parseSessionFile(await res.text());
    expect(f.toolCalls).toHaveLength(n);
    expect(f.llmCalls).toHaveLength(n);
    const ids = f.toolCalls.map((c) => c.span_id);
    expect(new Set(ids)).toEqual(new Set(s.rows.filter((r) => String(r.SpanName).startsWith('execute_tool')).map((r) => r.SpanId as string)));
  }, 120_000);
});
