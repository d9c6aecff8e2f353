// A small instrumented "coding agent" used by the tests and by `loopwatch demo`. It calls its
// tools the way a stuck agent does: it writes the same file again and again, then alternates
// run_tests / edit_file, and finally retries a command that cannot succeed. Each tool call is
// preceded by a (simulated, offline) model call that asks for it, recorded as a GenAI
// `chat gpt-4o-mini` span with token usage and cost, as instrumentOpenAI would record it.
// Run: OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 node --import loopwatch/instrumentation dist/instrumentation/examples/sample-agent.js
import { loopwatch, startChatSpan, traceTool, withSession, wrapTools } from 'loopwatch/instrumentation';

const files = new Map<string, string>();

const tools = wrapTools({
  read_file: ({ path }: { path: string }) => files.get(path) ?? '',
  write_file: ({ path, content }: { path: string; content: string }) => {
    files.set(path, content);
    return { ok: true };
  },
  run_tests: async (_opts: { filter?: string }) => ({ passed: 3, failed: 1 }),
  edit_file: ({ path, patch }: { path: string; patch: string }) => {
    files.set(path, (files.get(path) ?? '') + patch);
    return { ok: true };
  },
});

const runShell = traceTool('run_shell', async (cmd: string) => {
  throw new Error(`command not found: ${cmd.split(' ')[0]}`);
});

let step = 0;
/** The model "deciding" on the next tool call: the context grows with every step. */
function think(tool: string | undefined): void {
  step++;
  const chat = startChatSpan({ provider: 'openai', model: 'gpt-4o-mini' });
  chat.end({
    responseModel: 'gpt-4o-mini-2024-07-18',
    responseId: `chatcmpl-sample-${step}`,
    finishReasons: [tool ? 'tool_calls' : 'stop'],
    usage: { inputTokens: 1500 + 400 * step, outputTokens: 60, cacheReadTokens: step > 1 ? 1024 : 0 },
    toolCalls: tool ? [{ id: `call_${step}`, name: tool }] : [],
  });
}

export async function runSampleAgent(sessionId: string, opts: { writes?: number; cycles?: number; retries?: number } = {}): Promise<void> {
  await withSession({ sessionId, agent: 'sample-coder' }, async () => {
    think('read_file');
    tools.read_file({ path: 'src/app.ts' });
    for (let i = 0; i < (opts.writes ?? 5); i++) {
      think('write_file');
      tools.write_file({ path: 'src/app.ts', content: 'export const x = 1;\n' });
    }
    for (let i = 0; i < (opts.cycles ?? 3); i++) {
      think('run_tests');
      await tools.run_tests({});
      think('edit_file');
      tools.edit_file({ path: 'src/app.ts', patch: '// fix\n' });
    }
    // five: the default retryStormMinRun, so the retries are a finding like the two loops above
    for (let i = 0; i < (opts.retries ?? 5); i++) {
      think('run_shell');
      await runShell('pnpx deploy --prod').catch(() => undefined);
    }
    think(undefined);
  });
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop() ?? '')) {
  const sessionId = process.argv[2] ?? `sample-${Date.now()}`;
  await runSampleAgent(sessionId);
  await loopwatch()?.flush();
  process.stdout.write(`${sessionId}\n`);
}
