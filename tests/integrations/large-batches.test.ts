// A batch of spans larger than the collector's request body limit (content capture on, large
// arguments and results) is sent again in halves by the instrumentation's exporter, not lost.
// The real SDK and OTLP exporter against a real collector whose limit is set low (512 KiB) so
// that a few hundred calls cross it.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../collector/src/paths.js';
import { assertBuilt } from '../cli/helpers.js';
import { configureCapture, traceTool, withSession } from '../../instrumentation/src/api.js';
import { startLoopwatch, type LoopwatchHandle } from '../../instrumentation/src/sdk.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

let tc: TestCollector;
let lw: LoopwatchHandle;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false }, limits: { maxBodyBytes: 512 * 1024 } });
  lw = startLoopwatch({ endpoint: tc.url, serviceName: 'large-batches' });
});
afterAll(async () => {
  configureCapture({ captureContent: false });
  await lw?.shutdown();
  await tc?.close();
});

/**
 * Runs an agent script (after `const lw = await import(<the built instrumentation>)`) in a process
 * of its own, exporting to the test collector: the OpenTelemetry globals and the resource's
 * detection start fresh, as in an agent. Returns its stdout and stderr.
 */
async function runAgent(service: string, body: string, env: Record<string, string> = {}): Promise<{ stdout: string; stderr: string }> {
  assertBuilt();
  const index = JSON.stringify(join(packageRoot, 'dist', 'instrumentation', 'src', 'index.js'));
  return promisify(execFile)(process.execPath, ['--input-type=module', '-e', `const lw = await import(${index});\n${body}`], {
    cwd: packageRoot,
    env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: tc.url, OTEL_SERVICE_NAME: service, LOOPWATCH_GUARD: 'off', LOOPWATCH_SESSION_ID: '', LOOPWATCH_EXIT_FLUSH_MS: '0', ...env },
  });
}

describe('export batches over the collector limit', () => {
  it('are sent again in halves: every call is stored, none twice', async () => {
    configureCapture({ captureContent: true, maxContentLength: 4000 });
    const fetchPage = traceTool('fetch_page', async (a: { url: string; body: string }) => ({ html: `<p>${a.url}</p>${'y'.repeat(3990)}` }));
    const session = `large-${Date.now()}`;
    await withSession({ sessionId: session, agent: 'reader' }, async () => {
      for (let i = 0; i < 200; i++) await fetchPage({ url: `https://example.com/${i}`, body: 'x'.repeat(3990) }); // ~8 KB a span: 1.6 MB a batch
    });
    await lw.flush();
    await tc.collector.flush();
    const [stored] = await tc.rows<{ n: string; distinct_spans: string }>(
      `SELECT toString(count()) AS n, toString(uniqExact(span_id)) AS distinct_spans FROM agent_tool_calls FINAL WHERE session_id = {s:String}`, { s: session });
    expect(stored).toEqual({ n: '200', distinct_spans: '200' });
    expect(lw.droppedSpans()).toBe(0);
    // the collector did refuse the whole batch first: the halves are what got through
    const metrics = await (await fetch(`${tc.url}/metrics`)).text();
    expect(Number(/^loopwatch_requests_rejected_total\{[^}]*\} (\d+)/m.exec(metrics)?.[1] ?? 0)).toBeGreaterThan(0);
  });

  it('flush() waits for a full first batch still waiting on the resource: an agent that flushes after exactly 512 calls and exits loses none', async () => {
    const { stdout } = await runAgent('flush-512', `
      const read = lw.traceTool('read_file', async (p) => 'contents of ' + p);
      await lw.withSession('flush-512', async () => { for (let i = 0; i < 512; i++) await read('f' + i); });
      await lw.loopwatch().flush();
      process.stdout.write(JSON.stringify({ pending: lw.loopwatch().pendingSpans(), failed: lw.loopwatch().failedSpans() }));
      process.exit(0);`);
    expect(JSON.parse(stdout)).toEqual({ pending: 0, failed: 0 });
    await tc.collector.flush();
    expect(await tc.rows(`SELECT toUInt32(count()) AS n FROM agent_tool_calls FINAL WHERE session_id = 'flush-512'`)).toEqual([{ n: 512 }]);
  });

  it('a span alone over the limit fails alone: the others of its batch are stored, and only it is counted as failed', async () => {
    const { stdout } = await runAgent('one-too-large', `
      const fetchPage = lw.traceTool('fetch_page', async (a) => ({ html: a.big ? 'y'.repeat(300000) : 'small' }));
      await lw.withSession('one-too-large', async () => {
        for (let i = 0; i < 100; i++) await fetchPage({ url: 'u' + i, big: i === 50 ? 'x'.repeat(300000) : '' });
      });
      await lw.loopwatch().flush();
      process.stdout.write(JSON.stringify({ pending: lw.loopwatch().pendingSpans(), failed: lw.loopwatch().failedSpans() }));
      process.exit(0);`, { LOOPWATCH_CAPTURE_CONTENT: '1', LOOPWATCH_MAX_CONTENT_LENGTH: '300000', OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: '400000' });
    expect(JSON.parse(stdout)).toEqual({ pending: 0, failed: 1 });
    await tc.collector.flush();
    expect(await tc.rows(`SELECT toUInt32(count()) AS n FROM agent_tool_calls FINAL WHERE session_id = 'one-too-large'`)).toEqual([{ n: 99 }]);
  });

  it('a span that ends after shutdown is not waited for (the batch processor takes none then, and flush() resolves), and is said on stderr', async () => {
    const { stdout, stderr } = await runAgent('late-span', `
      const read = lw.traceTool('read_file', async (p) => 'contents of ' + p);
      await lw.withSession('late-span', () => read('a'));
      await lw.loopwatch().flush();
      await lw.loopwatch().shutdown();
      await lw.withSession('late-span', () => read('b'));
      const pending = lw.loopwatch().pendingSpans();
      await lw.loopwatch().flush();
      process.stdout.write(JSON.stringify({ pending, flushed: true }));`);
    expect(JSON.parse(stdout)).toEqual({ pending: 0, flushed: true });
    expect(stderr).toContain("[loopwatch] a span ended after Loopwatch shut down ('execute_tool read_file'): it is not exported");
  });
});
