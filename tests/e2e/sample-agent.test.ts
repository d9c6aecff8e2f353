// (a) An instrumented agent process -> OTLP/HTTP -> collector -> rows in agent_tool_calls.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../collector/src/paths.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

const run = promisify(execFile);
let tc: TestCollector;

beforeAll(async () => {
  tc = await startTestCollector();
});
afterAll(async () => {
  await tc.close();
});

describe('instrumented sample agent end to end', () => {
  it('lands every tool call, normalized, in agent_tool_calls', async () => {
    const session = `e2e-${Date.now()}`;
    const { stdout } = await run(
      process.execPath,
      ['--import', 'loopwatch/instrumentation', join(packageRoot, 'dist/instrumentation/examples/sample-agent.js'), session],
      { cwd: packageRoot, env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: tc.url, OTEL_SERVICE_NAME: 'sample-agent-svc' } },
    );
    expect(stdout.trim()).toBe(session);
    await tc.collector.flush();

    const rows = await tc.rows<{ tool: string; n: string; args: string; results: string; errors: string; agent: string; service: string; convention: string }>(
      `SELECT tool, count() AS n, uniqExact(args_hash) AS args, uniqExact(result_hash) AS results,
              countIf(status = 'error') AS errors, any(agent) AS agent, any(service) AS service, any(convention) AS convention
       FROM agent_tool_calls FINAL WHERE session_id = {s:String} GROUP BY tool ORDER BY tool`,
      { s: session },
    );
    const byTool = Object.fromEntries(rows.map((r) => [r.tool, r]));
    expect(Object.keys(byTool)).toEqual(['edit_file', 'read_file', 'run_shell', 'run_tests', 'write_file']);
    expect(Number(byTool.write_file!.n)).toBe(5);
    expect(Number(byTool.write_file!.args)).toBe(1); // same arguments every time -> one hash
    expect(Number(byTool.edit_file!.n)).toBe(3);
    expect(Number(byTool.run_shell!.errors)).toBe(5);
    expect(byTool.write_file!.agent).toBe('sample-coder');
    expect(byTool.write_file!.service).toBe('sample-agent-svc');
    expect(byTool.write_file!.convention).toBe('genai');

    const [err] = await tc.rows<{ error_type: string; error_message: string }>(
      `SELECT error_type, error_message FROM agent_tool_calls FINAL WHERE session_id = {s:String} AND tool = 'run_shell' LIMIT 1`,
      { s: session },
    );
    expect(err!.error_message).toContain('command not found');
    // raw arguments stay in the process unless capture is switched on
    const [raw] = await tc.rows<{ n: string }>(`SELECT countIf(arguments != '') AS n FROM agent_tool_calls WHERE session_id = {s:String}`, { s: session });
    expect(Number(raw!.n)).toBe(0);
  });
});
