// Realistic agent spans (GenAI semconv tool and chat spans) as OTLP protobuf requests, for the
// benchmarks. Deterministic: the same arguments give the same bytes.
import { randomBytes } from 'node:crypto';
import { encodeTraceRequest } from '../collector/src/ingest/otlp-proto.js';

const TOOLS = ['read_file', 'write_file', 'edit_file', 'run_tests', 'run_shell', 'search_code'];

function attr(key: string, value: string | number) {
  return { key, value: typeof value === 'number' ? { intValue: value } : { stringValue: value } };
}

export function makeRequests(totalSpans: number, spansPerRequest: number, sessions = 1000): Uint8Array[] {
  const requests: Uint8Array[] = [];
  const start = BigInt(Date.now()) * 1_000_000n;
  let n = 0;
  while (n < totalSpans) {
    const spans = [];
    const count = Math.min(spansPerRequest, totalSpans - n);
    for (let i = 0; i < count; i++, n++) {
      const session = `bench-session-${n % sessions}`;
      const traceId = Buffer.alloc(16);
      traceId.writeUInt32BE((n % sessions) + 1, 12);
      const t = start + BigInt(n) * 1_000_000n;
      const isChat = n % 4 === 0;
      const tool = TOOLS[n % TOOLS.length]!;
      spans.push({
        traceId,
        spanId: randomBytes(8),
        parentSpanId: randomBytes(8),
        name: isChat ? 'chat gpt-4o' : `execute_tool ${tool}`,
        kind: 1,
        startTimeUnixNano: t.toString(),
        endTimeUnixNano: (t + 250_000n).toString(),
        attributes: isChat
          ? [attr('gen_ai.operation.name', 'chat'), attr('gen_ai.request.model', 'gpt-4o'), attr('gen_ai.provider.name', 'openai'),
             attr('gen_ai.usage.input_tokens', 1000 + (n % 500)), attr('gen_ai.usage.output_tokens', 100 + (n % 50)),
             attr('gen_ai.conversation.id', session), attr('gen_ai.agent.name', 'bench-agent')]
          : [attr('gen_ai.operation.name', 'execute_tool'), attr('gen_ai.tool.name', tool), attr('gen_ai.tool.call.id', `call_${n}`),
             attr('loopwatch.tool.args_hash', (n % 97).toString(16).padStart(16, '0')),
             attr('loopwatch.tool.result_hash', (n % 89).toString(16).padStart(16, '0')),
             attr('gen_ai.conversation.id', session), attr('gen_ai.agent.name', 'bench-agent')],
        status: { code: n % 17 === 0 ? 2 : 0 },
      });
    }
    requests.push(
      encodeTraceRequest({
        resourceSpans: [{ resource: { attributes: [attr('service.name', 'bench-agent'), attr('host.name', 'bench')] }, scopeSpans: [{ scope: { name: 'loopwatch', version: '0.1.0' }, spans }] }],
      }),
    );
  }
  return requests;
}
