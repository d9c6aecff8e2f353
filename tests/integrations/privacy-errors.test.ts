// What leaves the process besides arguments and results: error messages and stacks (redacted and
// cut whether capture is on or not), other instrumentations' content (removed with capture off,
// on any span and in their gen_ai.* events), and a redact hook that fails (nothing it failed on is
// sent, and the agent's call goes on). Real SDK exporting to a real collector; the OpenAI SDK
// against a loopback server.
import { trace } from '@opentelemetry/api';
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { configureCapture, traceTool, withSession } from '../../instrumentation/src/api.js';
import { instrumentOpenAI } from '../../instrumentation/src/integrations/openai.js';
import { DEFAULT_MAX_CONTENT_LENGTH, maxContentLengthFromEnv, WITHHELD_ERROR_TEXT } from '../../instrumentation/src/options.js';
import { normalizeErrorMessage } from '../../queries/src/detector-defaults.js';
import { exportFailure, shownUrl } from '../../instrumentation/src/sdk.js';
import { fakeApi, startPipeline, type FakeApi, type Pipeline } from './helpers.js';

let p: Pipeline;
let api: FakeApi;
let openai: OpenAI;

beforeAll(async () => {
  p = await startPipeline('privacy-errors-agent');
  api = await fakeApi((req) => {
    const body = req.body as { model: string; stream?: boolean; messages: Array<{ content: string }> };
    // a provider error that quotes the prompt back
    if (body.model === 'gpt-refuses') return { status: 400, json: { error: { message: `prompt rejected: ${body.messages[0]!.content}`, type: 'invalid_request_error' } } };
    const call = { id: 'call_1', type: 'function', function: { name: 'read_file', arguments: '{"path":"a.ts"}' } };
    if (body.stream) {
      return { sse: [
        { data: { id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices: [{ index: 0, delta: { role: 'assistant', tool_calls: [{ index: 0, ...call }] }, finish_reason: null }] } },
        { data: { id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] } },
        { data: { id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o', choices: [], usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 } } },
        { data: '[DONE]' },
      ] };
    }
    return { json: {
      id: 'c2', object: 'chat.completion', created: 1, model: 'gpt-4o',
      choices: [{ index: 0, finish_reason: 'tool_calls', logprobs: null, message: { role: 'assistant', content: null, refusal: null, tool_calls: [call] } }],
      usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
    } };
  });
  openai = instrumentOpenAI(new OpenAI({ apiKey: 'test-key', baseURL: api.url, maxRetries: 0 }));
});
afterEach(() => {
  configureCapture({ captureContent: false, redact: undefined, maxContentLength: 4096 });
  vi.restoreAllMocks();
});
afterAll(async () => {
  await p?.close();
  await api?.close();
});

/** Every span of the session as exported: attributes, status message and events, as one text. */
async function exported(session: string): Promise<{ text: string; status: string[] }> {
  await p.landed();
  const rows = await p.tc.rows<{ attrs: string; status: string; events: string }>(
    `SELECT toJSONString(SpanAttributes) AS attrs, StatusMessage AS status, toJSONString(\`Events.Attributes\`) AS events
     FROM otel_traces WHERE SpanAttributes['gen_ai.conversation.id'] = {s:String} ORDER BY Timestamp`, { s: session });
  return { text: rows.map((r) => `${r.attrs}\n${r.status}\n${r.events}`).join('\n'), status: rows.map((r) => r.status) };
}

const escape = (t: string) => t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const readFile = traceTool('read_file', async (args: { path: string }) => {
  throw new Error(`ENOENT: no such file or directory, open '${args.path}' ${'x'.repeat(200)}`);
});

describe('error text', () => {
  it('capture off: a failing tool\'s message and stack go through the redact hook (kind error) and the length limit', async () => {
    const kinds = new Set<string>();
    configureCapture({ maxContentLength: 80, redact: (text, { kind }) => (kinds.add(kind), text.replace(/ARGSECRET_\w+/g, '[path]')) });
    const session = `priv-err-${Date.now()}`;
    await withSession(session, () => readFile({ path: 'ARGSECRET_home' }).catch(() => undefined));
    const { text, status } = await exported(session);
    expect(kinds).toEqual(new Set(['error']));
    expect(text).not.toContain('ARGSECRET');
    // cut, with the error's identity kept in the mark
    expect(status[0]).toMatch(new RegExp(`^${escape(`${`ENOENT: no such file or directory, open '[path]' ${'x'.repeat(200)}`.slice(0, 80)}`)}…\\[truncated ~[g-v]{10}\\]$`));
    expect(text).toContain('exception.stacktrace');
    // the detectors see the error as sent
    const [call] = await p.tc.rows<{ error_message: string }>(`SELECT error_message FROM agent_tool_calls FINAL WHERE session_id = {s:String}`, { s: session });
    expect(call!.error_message).toBe(status[0]);
  });

  it('a redact hook that throws: the error text is withheld, said once without the hook\'s message, and the call fails as the tool did', async () => {
    const warned = vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    configureCapture({ redact: (text) => JSON.parse(`{${text}`) as string });
    const session = `priv-err-throw-${Date.now()}`;
    await expect(withSession(session, () => readFile({ path: 'ARGSECRET_x' }))).rejects.toThrow(/ENOENT/);
    const { text, status } = await exported(session);
    expect(status[0]).toMatch(new RegExp(`^${escape(WITHHELD_ERROR_TEXT)} ~[g-v]{10}$`));
    expect(text).not.toContain('ARGSECRET');
    const said = warned.mock.calls.map((c) => String(c[0])).join('\n');
    expect(said).toMatch(/the redact hook threw \(SyntaxError\)/);
    expect(said).not.toContain('ARGSECRET');
  });

  it('a provider error that quotes the prompt goes through the redact hook too', async () => {
    configureCapture({ redact: (text) => text.replace(/PROMPTSECRET_\w+/g, '[prompt]') });
    const session = `priv-err-llm-${Date.now()}`;
    await withSession(session, () => openai.chat.completions.create({ model: 'gpt-refuses', messages: [{ role: 'user', content: 'PROMPTSECRET_1' }] }).catch(() => undefined));
    const { text, status } = await exported(session);
    expect(text).not.toContain('PROMPTSECRET');
    expect(status.some((s) => s.includes('prompt rejected: [prompt]'))).toBe(true);
  });
});

describe('error identity through redaction and cutting', () => {
  it('errors a hook withholds, or that differ only past the cut, stay different errors (in SQL and the guard alike)', async () => {
    const fails = traceTool('deploy', async (args: { env: string }) => {
      throw new Error(`deployment to the cluster refused: quota exceeded in ${args.env}`);
    });
    const identities = async (opts: Parameters<typeof configureCapture>[0]) => {
      configureCapture(opts);
      const session = `priv-ident-${Date.now()}-${Math.random()}`;
      for (const env of ['staging', 'production']) await withSession(session, () => fails({ env }).catch(() => undefined));
      await p.landed();
      const rows = await p.tc.rows<{ msg: string; sql: string }>(
        `SELECT error_message AS msg, loopwatch_error_norm(error_message) AS sql FROM agent_tool_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
      configureCapture({ redact: undefined, maxContentLength: 4096 });
      return rows.map((r) => ({ sql: r.sql, guard: normalizeErrorMessage(r.msg) }));
    };
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    // a hook written for arguments only: it throws on error text
    for (const ids of [await identities({ redact: (t) => JSON.stringify(JSON.parse(t)) }), await identities({ maxContentLength: 20 })]) {
      expect(ids).toHaveLength(2);
      expect(ids[0]!.sql).not.toBe(ids[1]!.sql);
      expect(ids[0]!.guard).toBe(ids[0]!.sql);
      expect(ids[1]!.guard).toBe(ids[1]!.sql);
    }
  });
});

describe('a redact hook that throws on captured content', () => {
  it('does not break a streamed LLM call, nor lose a non-streamed one\'s span', async () => {
    vi.spyOn(console, 'warn').mockImplementation(() => undefined);
    configureCapture({ captureContent: true, redact: () => {
      throw new Error('hook bug');
    } });
    const session = `priv-hook-llm-${Date.now()}`;
    await withSession(session, async () => {
      const stream = await openai.chat.completions.create({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'go' }] });
      let chunks = 0;
      for await (const _ of stream) chunks++;
      expect(chunks).toBe(3);
      await openai.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'go' }] });
    });
    await p.landed();
    const llm = await p.tc.rows<{ n: string }>(`SELECT toString(count()) AS n FROM agent_llm_calls FINAL WHERE session_id = {s:String}`, { s: session });
    expect(llm[0]!.n).toBe('2');
    const { text } = await exported(session);
    expect(text).not.toContain('gen_ai.tool.call.arguments');
    expect(text).toContain('loopwatch.tool.args_hash');
  });
});

describe("other instrumentations' content, capture off", () => {
  it('is removed on any span (OpenInference, indexed gen_ai.prompt.N, Traceloop) and from gen_ai.* events; the rest stays', async () => {
    const session = `priv-other-${Date.now()}`;
    withSession(session, () => {
      const other = trace.getTracer('other-instrumentation');
      const span = other.startSpan('ChatOpenAI', { attributes: {
        'openinference.span.kind': 'LLM', 'llm.model_name': 'gpt-4o', 'input.value': 'OTHERSECRET_1', 'output.value': 'OTHERSECRET_2',
        'llm.input_messages.0.message.content': 'OTHERSECRET_3', 'gen_ai.prompt.0.content': 'OTHERSECRET_4', 'traceloop.entity.input': 'OTHERSECRET_5',
      } });
      span.addEvent('gen_ai.content.prompt', { 'gen_ai.prompt': 'OTHERSECRET_6' });
      span.addEvent('gen_ai.user.message', { content: 'OTHERSECRET_7', 'gen_ai.system': 'openai' });
      span.end();
    });
    const { text } = await exported(session);
    expect(text).not.toContain('OTHERSECRET');
    expect(text).toContain('llm.model_name');
    expect(text).toContain('gen_ai.system');
  });

  it('attributes that only begin like content names stay on spans that are not GenAI spans', async () => {
    const session = `priv-unrelated-${Date.now()}`;
    const kept = { 'message.content_type': 'application/json', 'message.content_length': 12, 'input.value_count': 3, 'tool.parameters_count': 2, 'llm.tools_enabled': true, 'gen_ai.prompt_tokens': 7 };
    withSession(session, () => trace.getTracer('http-instrumentation').startSpan('POST /upload', { attributes: { ...kept, 'input.value': 'OTHERSECRET_8' } }).end());
    const { text } = await exported(session);
    for (const key of Object.keys(kept)) expect(text, key).toContain(key);
    expect(text).not.toContain('OTHERSECRET');
  });

  it('capture on: each text of an array of texts is redacted too', async () => {
    configureCapture({ captureContent: true, redact: (t) => t.replace(/sk-[A-Z0-9]+/g, '[key]') });
    const session = `priv-array-${Date.now()}`;
    withSession(session, () => trace.getTracer('other-instrumentation').startSpan('llm', { attributes: { 'openinference.span.kind': 'LLM', 'llm.prompts': ['my key is sk-SECRET123', 'fine'] } }).end());
    const { text } = await exported(session);
    expect(text).not.toContain('sk-SECRET123');
    expect(text).toContain('[key]');
  });
});

describe('options and messages', () => {
  it('maxContentLength: a positive whole number; a cut never splits a surrogate pair', async () => {
    expect(() => configureCapture({ maxContentLength: Number.NaN })).toThrow(/positive whole number/);
    expect(() => configureCapture({ maxContentLength: -1 })).toThrow(RangeError);
    configureCapture({ maxContentLength: 5 });
    const session = `priv-cut-${Date.now()}`;
    const failing = traceTool('emoji', async () => {
      throw new Error('abcd😀efg');
    });
    await withSession(session, () => failing().catch(() => undefined));
    const { status } = await exported(session);
    expect(status[0]).toMatch(/^abcd…\[truncated ~[g-v]{10}\]$/);
  });

  it('LOOPWATCH_MAX_CONTENT_LENGTH: a positive whole number in decimal digits, else reported and the default used', () => {
    const said: string[] = [];
    const report = (m: string) => said.push(m);
    expect(maxContentLengthFromEnv({}, report)).toBe(DEFAULT_MAX_CONTENT_LENGTH);
    expect(maxContentLengthFromEnv({ LOOPWATCH_MAX_CONTENT_LENGTH: ' 200 ' }, report)).toBe(200);
    expect(said).toEqual([]);
    // Number() read 0x10 as 16 and 1e3 as 1000
    for (const bad of ['0x10', '1e3', '0', '-5', '2.5', 'lots']) expect(maxContentLengthFromEnv({ LOOPWATCH_MAX_CONTENT_LENGTH: bad }, report)).toBe(DEFAULT_MAX_CONTENT_LENGTH);
    expect(said).toHaveLength(6);
    expect(said[0]).toBe('LOOPWATCH_MAX_CONTENT_LENGTH="0x10" ignored (a positive whole number of characters, in decimal digits): using 4096');
  });

  it('an exporter URL is shown without its user info or query', () => {
    expect(shownUrl('http://u:URLSECRET@127.0.0.1:4318/v1/traces?token=TOKSECRET')).toBe('http://127.0.0.1:4318/v1/traces (credentials and query not shown)');
    expect(shownUrl('http://127.0.0.1:4318/v1/traces')).toBe('http://127.0.0.1:4318/v1/traces');
    const said = exportFailure(Object.assign(new Error('Unauthorized'), { code: 401 }), 'http://u:URLSECRET@collector:4318/v1/traces');
    expect(said).toMatch(/^the collector refused spans to http:\/\/collector:4318\/v1\/traces \(credentials and query not shown\): 401/);
    expect(said).not.toContain('URLSECRET');
  });
});
