// Shared by the integration tests: a real collector, Loopwatch's real SDK exporting OTLP to it,
// and a local HTTP server on loopback standing in for a provider's API.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startLoopwatch, type LoopwatchHandle } from '../../instrumentation/src/sdk.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

export interface Pipeline {
  tc: TestCollector;
  lw: LoopwatchHandle;
  /** Exports pending spans and waits until the collector stored them. */
  landed(): Promise<void>;
  close(): Promise<void>;
}

export async function startPipeline(serviceName: string): Promise<Pipeline> {
  const tc = await startTestCollector({ detect: { enabled: false } });
  const lw = startLoopwatch({ endpoint: tc.url, serviceName });
  return {
    tc,
    lw,
    async landed() {
      await lw.flush();
      await tc.collector.flush();
    },
    async close() {
      await lw.shutdown();
      await tc.close();
    },
  };
}

export interface FakeRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: unknown;
}

export interface FakeApi {
  url: string;
  requests: FakeRequest[];
  close(): Promise<void>;
}

/** An HTTP server on 127.0.0.1 answering JSON (or an SSE stream when the handler returns { sse }). */
export async function fakeApi(
  handler: (req: FakeRequest) => { status?: number; json?: unknown; sse?: Array<{ event?: string; data: unknown }> },
): Promise<FakeApi> {
  const requests: FakeRequest[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const r: FakeRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: text ? (JSON.parse(text) as unknown) : undefined };
      requests.push(r);
      const out = handler(r);
      if (out.sse) {
        res.writeHead(out.status ?? 200, { 'content-type': 'text/event-stream' });
        for (const e of out.sse) res.write(`${e.event ? `event: ${e.event}\n` : ''}data: ${typeof e.data === 'string' ? e.data : JSON.stringify(e.data)}\n\n`);
        res.end();
        return;
      }
      res.writeHead(out.status ?? 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(out.json ?? {}));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

/**
 * An OpenAI chat-completions API for one agent turn: the model asks for read_file({ path:
 * 'src/app.ts' }) until the conversation holds two tool results, then answers 'done'. Usage
 * 1000 + 50 tokens a call (200 of them cached).
 */
export function readFileTwiceApi(): Promise<FakeApi> {
  return fakeApi((req) => {
    const body = req.body as { messages: Array<{ role: string }> };
    const toolResults = body.messages.filter((m) => m.role === 'tool').length;
    const usage = { prompt_tokens: 1000, completion_tokens: 50, total_tokens: 1050, prompt_tokens_details: { cached_tokens: 200 } };
    if (toolResults < 2) {
      return { json: {
        id: `c${toolResults}`, object: 'chat.completion', created: 1, model: 'gpt-4o-mini-2024-07-18',
        choices: [{ index: 0, finish_reason: 'tool_calls', message: { role: 'assistant', content: null, tool_calls: [
          { id: `call_${toolResults}`, type: 'function', function: { name: 'read_file', arguments: '{"path":"src/app.ts"}' } },
        ] } }],
        usage,
      } };
    }
    return { json: { id: 'c9', object: 'chat.completion', created: 1, model: 'gpt-4o-mini-2024-07-18', choices: [{ index: 0, finish_reason: 'stop', message: { role: 'assistant', content: 'done' } }], usage } };
  });
}
