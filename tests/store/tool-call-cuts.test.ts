// A tool call keeps the first 8,192 bytes of its arguments and 2,048 of its result (schema 018):
// the cut ends on a whole character. It counted bytes and split a character of 2, 3 or 4 bytes
// across the limit, storing half of it (not valid UTF-8). Real collector, spans over OTLP/HTTP
// JSON, the view in the embedded engine; values compared byte for byte.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

const ARGS_LIMIT = 8192;
const RESULT_LIMIT = 2048;

let tc: TestCollector;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
});
afterAll(async () => {
  await tc?.close();
});

let spans = 0;
/** Sends one tool span per value pair (GenAI conventions) in one request, each its own session; returns the sessions. */
async function sendCalls(session: string, calls: { args: string; result: string }[]): Promise<string[]> {
  const now = BigInt(Date.now()) * 1_000_000n;
  const attr = (key: string, v: string) => ({ key, value: { stringValue: v } });
  const sessions = calls.map((_, i) => `${session}-${i}`);
  const body = {
    resourceSpans: [{
      resource: { attributes: [attr('service.name', 'utf8-cuts')] },
      scopeSpans: [{
        scope: { name: 'utf8-cuts' },
        spans: calls.map((c, i) => {
          const n = ++spans;
          return {
            traceId: n.toString(16).padStart(32, '0'), spanId: n.toString(16).padStart(16, 'a'), name: 'execute_tool search', kind: 1,
            startTimeUnixNano: String(now + BigInt(i) * 1000n), endTimeUnixNano: String(now + BigInt(i) * 1000n + 500n),
            attributes: [
              attr('gen_ai.operation.name', 'execute_tool'), attr('gen_ai.tool.name', 'search'), attr('gen_ai.conversation.id', sessions[i]!),
              attr('gen_ai.tool.call.arguments', c.args), attr('gen_ai.tool.call.result', c.result),
            ],
            status: { code: 1 },
          };
        }),
      }],
    }],
  };
  const res = await fetch(`${tc.url}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(res.status).toBe(200);
  await tc.collector.flush();
  return sessions;
}

interface Stored { session_id: string; args_hex: string; args_bytes: number; args_valid: number; result_hex: string; result_bytes: number; result_valid: number }
async function stored(sessions: string[]): Promise<Map<string, Stored>> {
  const rows = await tc.rows<Stored>(
    `SELECT session_id, hex(arguments) AS args_hex, length(arguments) AS args_bytes, isValidUTF8(arguments) AS args_valid,
            hex(result) AS result_hex, length(result) AS result_bytes, isValidUTF8(result) AS result_valid
     FROM agent_tool_calls FINAL WHERE session_id IN {s:Array(String)}`, { s: sessions });
  return new Map(rows.map((r) => [r.session_id, r]));
}
const hex = (s: string) => Buffer.from(s, 'utf8').toString('hex').toUpperCase();
const bytes = (s: string) => Buffer.byteLength(s, 'utf8');

/** A JSON-shaped value whose character `ch` starts after `before` bytes, with text after it. */
const value = (before: number, ch: string) => `{"q":"${'x'.repeat(before - 6)}${ch}${'y'.repeat(40)}"}`;

describe('a tool call\'s arguments and result cut at their byte limits', () => {
  // every place a character of each width can lie across the limit: 1 to width-1 of its bytes before it
  const straddling = [
    { ch: 'é', width: 2 }, // U+00E9
    { ch: '€', width: 3 }, // U+20AC
    { ch: '😀', width: 4 }, // U+1F600
  ].flatMap(({ ch, width }) => Array.from({ length: width - 1 }, (_, i) => ({ ch, width, inside: i + 1 })));

  it.each(straddling)('a $width-byte character ($ch) with $inside of its bytes before the limit is left out whole: the longest valid prefix, within the limit', async ({ ch, width, inside }) => {
    expect(bytes(ch)).toBe(width);
    const args = value(ARGS_LIMIT - inside, ch);
    const result = value(RESULT_LIMIT - inside, ch);
    const [session] = await sendCalls(`straddle-${width}-${inside}`, [{ args, result }]);
    const row = (await stored([session!])).get(session!)!;
    expect(row).toMatchObject({ args_valid: 1, result_valid: 1 });
    // the bytes before the character, and nothing of it
    expect(row.args_hex).toBe(hex(args.slice(0, args.indexOf(ch))));
    expect(row.result_hex).toBe(hex(result.slice(0, result.indexOf(ch))));
    expect(Number(row.args_bytes)).toBe(ARGS_LIMIT - inside);
    expect(Number(row.result_bytes)).toBe(RESULT_LIMIT - inside);
  });

  it('a character that ends at the limit is kept, and text of many multi-byte characters is cut after the last whole one', async () => {
    const endsAtLimit = (limit: number, ch: string) => value(limit - bytes(ch), ch);
    const calls = [
      { args: endsAtLimit(ARGS_LIMIT, '😀'), result: endsAtLimit(RESULT_LIMIT, '€') },
      // 3,000 x 3 bytes: 2,730 whole (8,190 bytes); 700 x 3 bytes: 682 whole (2,046 bytes)
      { args: '中'.repeat(3000), result: '中'.repeat(700) },
      // mixed widths: 4-byte emoji after 2 ASCII bytes, cut inside the 2,048th emoji of the arguments
      { args: `ab${'😀'.repeat(2100)}`, result: `a${'é'.repeat(1100)}` },
    ];
    const sessions = await sendCalls('multi', calls);
    const rows = await stored(sessions);
    const expected = [
      { args: endsAtLimit(ARGS_LIMIT, '😀').slice(0, ARGS_LIMIT - 4 + 2), result: endsAtLimit(RESULT_LIMIT, '€').slice(0, RESULT_LIMIT - 3 + 1) },
      { args: '中'.repeat(2730), result: '中'.repeat(682) },
      { args: `ab${'😀'.repeat(2047)}`, result: `a${'é'.repeat(1023)}` },
    ];
    // the first: the character is the last thing kept (the JS slice above counts UTF-16 units: the emoji is 2, the euro sign 1)
    expect(expected[0]!.args.endsWith('😀')).toBe(true);
    expect(expected[0]!.result.endsWith('€')).toBe(true);
    expect(bytes(expected[0]!.args)).toBe(ARGS_LIMIT);
    expect(bytes(expected[0]!.result)).toBe(RESULT_LIMIT);
    expect(bytes(expected[2]!.args)).toBe(8190);
    expect(bytes(expected[2]!.result)).toBe(2047);
    sessions.forEach((s, i) => {
      const row = rows.get(s)!;
      expect(row, s).toMatchObject({ args_valid: 1, result_valid: 1, args_hex: hex(expected[i]!.args), result_hex: hex(expected[i]!.result) });
      expect(Number(row.args_bytes)).toBeLessThanOrEqual(ARGS_LIMIT);
      expect(Number(row.result_bytes)).toBeLessThanOrEqual(RESULT_LIMIT);
    });
  });

  it('ASCII is cut at the limit as before, and values within it (multi-byte ones too) are kept as they are', async () => {
    const longAscii = { args: `{"q":"${'a'.repeat(9000)}"}`, result: 'r'.repeat(3000) };
    const within = { args: `{"q":"naïve café ${'€'.repeat(100)} 😀"}`, result: '{"ok":true,"text":"日本語"}' };
    const atLimit = { args: 'b'.repeat(ARGS_LIMIT), result: 'c'.repeat(RESULT_LIMIT) };
    const sessions = await sendCalls('ascii', [longAscii, within, atLimit]);
    const rows = await stored(sessions);
    const expected = [
      { args: longAscii.args.slice(0, ARGS_LIMIT), result: longAscii.result.slice(0, RESULT_LIMIT) },
      within,
      atLimit,
    ];
    sessions.forEach((s, i) => {
      expect(rows.get(s), s).toMatchObject({ args_valid: 1, result_valid: 1, args_hex: hex(expected[i]!.args), result_hex: hex(expected[i]!.result) });
    });
  });

  it('a value that was not valid UTF-8 is cut without an error and within the limit, not repaired', async () => {
    // written to otel_traces directly, as another pipeline's exporter could (the collector's
    // decoding of OTLP leaves no invalid UTF-8): an insert the view failed on would be refused
    const x = (n: number) => Buffer.alloc(n, 'x');
    const values = [
      Buffer.concat([x(ARGS_LIMIT - 4), Buffer.alloc(6, 0x80), Buffer.from('z')]), // continuation bytes alone across the limit
      Buffer.concat([x(ARGS_LIMIT - 1), Buffer.from([0xf0]), Buffer.from('abc')]), // a lead byte alone at the limit
      Buffer.concat([Buffer.from([0xff, 0xfe, 0xc3]), x(ARGS_LIMIT - 4), Buffer.from('é')]), // invalid before, a whole character across
    ];
    for (const [i, v] of values.entries()) {
      await tc.collector.store.client.command({
        query: `INSERT INTO otel_traces (Timestamp, TraceId, SpanId, SpanName, SpanKind, ServiceName, SpanAttributes, Duration)
                VALUES (now64(9), {t:String}, {s:String}, 'execute_tool search', 'Internal', 'other-pipeline',
                        map('gen_ai.operation.name', 'execute_tool', 'gen_ai.tool.name', 'search', 'gen_ai.conversation.id', {s:String},
                            'gen_ai.tool.call.arguments', unhex({v:String}), 'gen_ai.tool.call.result', unhex({v:String})), 1000)`,
        query_params: { t: `invalid-trace-${i}`, s: `invalid-${i}`, v: v.toString('hex') },
      });
    }
    const rows = await stored(values.map((_, i) => `invalid-${i}`));
    const kept = [
      ARGS_LIMIT, // no byte that starts a character in the four up to the one after the cut: cut at the limit
      ARGS_LIMIT, // the byte after the cut starts a character: cut at the limit, the lone lead byte kept
      ARGS_LIMIT - 1, // the 2-byte character across the limit left out, the invalid bytes before it kept
    ];
    const resultKept = [RESULT_LIMIT, RESULT_LIMIT, RESULT_LIMIT];
    values.forEach((v, i) => {
      const row = rows.get(`invalid-${i}`)!;
      expect(row, `invalid-${i}`).toBeDefined();
      expect([row.args_hex.length / 2, row.result_hex.length / 2], `invalid-${i}`).toEqual([kept[i], resultKept[i]]);
      expect(row.args_hex).toBe(v.subarray(0, kept[i]).toString('hex').toUpperCase());
      expect(row.result_hex).toBe(v.subarray(0, resultKept[i]).toString('hex').toUpperCase());
    });
  });
});
