// An agent whose export the collector refuses part-way through the request (a batch over its
// body limit: 413, answered before the body is read, and the connection closed) goes on and ends
// as it would without Loopwatch; it says the collector refused the spans. Before, the exporter's
// socket failed writing the rest with nobody listening, and the agent died of it. A real agent
// process, the real SDK and exporter, a real collector with a small body limit.
import { execFile } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../collector/src/paths.js';
import { assertBuilt } from '../cli/helpers.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

let tc: TestCollector;
beforeAll(async () => {
  assertBuilt();
  tc = await startTestCollector({ detect: { enabled: false }, limits: { maxBodyBytes: 64 * 1024 } });
});
afterAll(async () => {
  await tc?.close();
});

const AGENT = `
import { traceTool, withSession } from 'loopwatch/instrumentation';
const build = traceTool('build', async () => { throw new Error('x'.repeat(2_000_000)); });
await withSession('refused', async () => { try { await build({}); } catch { process.stdout.write('caught\\n'); } });
setTimeout(() => process.stdout.write('still running\\n'), 1500); // after the export was refused
`;

describe('an export the collector refuses mid-request', () => {
  it('does not end the agent', async () => {
    const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, ['--input-type=module', '-e', AGENT], {
        cwd: packageRoot,
        // the span's 2 MB message kept whole (the default limits would cut it to 4,096 characters), so the batch is over 64 KiB
        env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: tc.url, OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: '10000000', LOOPWATCH_MAX_CONTENT_LENGTH: '10000000', LOOPWATCH_SESSION_ID: undefined },
        timeout: 30_000,
      }, (_err, stdout, stderr) => resolve({ code: child.exitCode, stdout, stderr }));
    });
    expect(run.stderr).not.toMatch(/EPIPE|Uncaught/);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toBe('caught\nstill running\n');
    expect(run.stderr).toMatch(/the collector refused spans to .*: 413 Payload Too Large/);
    expect(await tc.collector.metrics.value('loopwatch_requests_rejected_total', 'http')).toBeGreaterThan(0);
  });
});
