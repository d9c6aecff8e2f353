// Argument/result capture: off by default (hashes only); on = truncated and redacted text.
// Through the real exporter to a real collector, for traceTool and the integrations built on it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configureCapture, traceTool, withSession } from '../../instrumentation/src/api.js';
import { startPipeline, type Pipeline } from './helpers.js';

let p: Pipeline;
beforeAll(async () => {
  p = await startPipeline('privacy-agent');
});
afterAll(async () => {
  configureCapture({ captureContent: false, redact: undefined });
  await p?.close();
});

const login = traceTool('login', async (args: { user: string; password: string }) => ({ token: `tok-${args.user}-SECRET`, note: 'x'.repeat(100) }));

async function rowsOf(session: string) {
  await p.landed();
  const calls = await p.tc.rows<{ arguments: string; result: string; has_args: number; has_result: number }>(
    `SELECT arguments, result, has_args, has_result FROM agent_tool_calls FINAL WHERE session_id = {s:String}`, { s: session });
  const raw = await p.tc.rows<{ attrs: string }>(
    `SELECT toJSONString(SpanAttributes) AS attrs FROM otel_traces WHERE SpanAttributes['gen_ai.conversation.id'] = {s:String}`, { s: session });
  return { calls, raw: raw.map((r) => r.attrs).join('\n') };
}

describe('capture options', () => {
  it('off (default): only hashes leave the process', async () => {
    const session = `priv-off-${Date.now()}`;
    await withSession(session, () => login({ user: 'ann', password: 'hunter2' }));
    const { calls, raw } = await rowsOf(session);
    expect(calls).toEqual([{ arguments: '', result: '', has_args: 1, has_result: 1 }]);
    expect(raw).not.toContain('hunter2');
    expect(raw).not.toContain('SECRET');
    expect(raw).toContain('loopwatch.tool.args_hash');
  });

  it('on: arguments and results are redacted, then cut at maxContentLength', async () => {
    configureCapture({
      captureContent: true,
      maxContentLength: 40,
      redact: (text, info) => (info.kind === 'arguments' ? text.replace(/"password":"[^"]*"/, '"password":"***"') : text.replace(/SECRET/g, '[redacted]')),
    });
    const session = `priv-on-${Date.now()}`;
    try {
      await withSession(session, () => login({ user: 'ann', password: 'hunter2' }));
    } finally {
      configureCapture({ captureContent: false, redact: undefined, maxContentLength: 4096 });
    }
    const { calls, raw } = await rowsOf(session);
    expect(calls[0]!.arguments).toBe('{"password":"***","user":"ann"}');
    expect(calls[0]!.result).toBe(`${'{"note":"' + 'x'.repeat(31)}…[truncated]`);
    expect(raw).not.toContain('hunter2');
  });

  it('on: each value is serialized once, for its hash and its text alike', async () => {
    let reads = 0;
    const lookup = traceTool('lookup', async (args: { readonly q: string }) => args.q.length);
    const args = { get q() {
      reads++;
      return 'weather';
    } };
    configureCapture({ captureContent: true });
    const session = `priv-once-${Date.now()}`;
    try {
      await withSession(session, () => lookup(args));
    } finally {
      configureCapture({ captureContent: false, redact: undefined, maxContentLength: 4096 });
    }
    expect(reads).toBe(2); // once by the tool itself, once by the instrumentation
    const { calls } = await rowsOf(session);
    expect(calls[0]!.arguments).toBe('{"q":"weather"}');
  });
});

