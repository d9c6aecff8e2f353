// An instrumented agent process as users run it. How it ends: one that does not end by running
// out of work (Ctrl-C on a loop, a LoopDetectedError nobody caught, process.exit(), no collector)
// still delivers or reports its last spans, and ends the way it would have ended without
// Loopwatch (instrumentation/src/exit.ts). And which session its calls get outside withSession.
// Real child processes with the real SDK and exporter, a real collector on loopback.
import { execFile } from 'node:child_process';
import { connect, createServer, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../collector/src/paths.js';
import { DEFAULT_EXIT_FLUSH_MS, exitFlushMsFromEnv } from '../../instrumentation/src/exit.js';
import { assertBuilt, freePort } from '../cli/helpers.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

let tc: TestCollector;
beforeAll(async () => {
  assertBuilt();
  tc = await startTestCollector({ detect: { enabled: false } });
});
afterAll(async () => {
  await tc.close();
});

// The agent: `calls` traced tool calls in a session, all in one tick (so none is exported yet),
// then it ends as `how` says.
const AGENT = `
import { loopwatch, traceTool, withSession } from 'loopwatch/instrumentation';
const [session, how, calls] = process.argv.slice(1);
const readFile = traceTool('read_file', (a) => ({ text: 'x' + a.i }));
const writeFile = traceTool('write_file', (a) => ({ ok: true }));
// an application that handles SIGTERM: it flushes, as the docs say to before process.exit(), and exits 3
if (how === 'app-handler') process.on('SIGTERM', async () => { process.stdout.write('app handled SIGTERM\\n'); await loopwatch().flush(); process.exit(3); });
const run = () => {
  if (how === 'halt') for (;;) writeFile({ path: 'a.ts' }); // the guard stops it; nobody catches the error
  for (let i = 0; i < Number(calls); i++) readFile({ i });
};
if (how === 'no-session') run();
else withSession({ sessionId: session, agent: 'exit-test' }, run);
if (how === 'flush') { await loopwatch().flush(); process.stdout.write('flushed\\n'); }
// a drained server's last steps: flush, shut down, then its own (a final log line)
if (how === 'drain') { await loopwatch().flush(); process.stdout.write('flushed\\n'); await loopwatch().shutdown(); process.stdout.write('shut down\\n'); }
if (how === 'shutdown') { await loopwatch().shutdown(); process.stdout.write('shut down\\n'); }
if (how === 'signal') process.kill(process.pid, 'SIGINT');
if (how === 'app-handler') { process.kill(process.pid, 'SIGTERM'); setTimeout(() => {}, 10_000); }
if (how === 'exit') process.exit(0);
if (how === 'signal-timers') {
  // the agent's timers keep firing while Loopwatch sends its last spans after Ctrl-C
  const tick = traceTool('tick', () => process.stdout.write('tick ran\\n'));
  let refused = false;
  setInterval(() => { try { tick(); } catch (e) { if (!refused) { refused = true; process.stdout.write('refused: ' + e.name + '\\n'); } } }, 5);
  setTimeout(() => process.kill(process.pid, 'SIGINT'), 50);
}
`;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function runAgent(session: string, how: string, calls: number, env: Record<string, string> = {}, endpoint = tc.url): Promise<Run> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      ['--input-type=module', '-e', AGENT, session, how, String(calls)],
      {
        cwd: packageRoot,
        env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_SERVICE_NAME: 'agent-process-test', LOOPWATCH_GUARD: undefined, LOOPWATCH_EXIT_FLUSH_MS: undefined, LOOPWATCH_SESSION_ID: undefined, LOOPWATCH_AGENT: undefined, ...env },
        timeout: 30_000,
      },
      (_err, stdout, stderr) => resolve({ code: child.exitCode, signal: child.signalCode, stdout, stderr }),
    );
  });
}

async function stored(session: string): Promise<{ tool: string; status: string; error_type: string }[]> {
  await tc.collector.flush();
  return tc.rows(`SELECT tool, status, error_type FROM agent_tool_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
}

describe('an instrumented agent that ends abruptly', () => {
  it('Ctrl-C: the pending spans are exported, then the process dies of the signal as it would have', async () => {
    // (a long wait allowed: on a loaded machine the collector may take over the default 2 s to answer)
    const r = await runAgent('exit-sigint', 'signal', 50, { LOOPWATCH_EXIT_FLUSH_MS: '20000' });
    expect(r.signal, r.stderr).toBe('SIGINT');
    expect(await stored('exit-sigint')).toHaveLength(50);
  });

  it('while the last spans are sent after Ctrl-C, no traced tool call starts (without Loopwatch the process would be gone)', async () => {
    const nobody = `http://127.0.0.1:${await freePort()}`; // the export retries: the wait lasts
    const r = await runAgent('exit-sigint-timers', 'signal-timers', 0, {}, nobody);
    expect(r.signal, r.stderr).toBe('SIGINT');
    const lines = r.stdout.trim().split('\n');
    const at = lines.indexOf('refused: ProcessEndingError');
    expect(at, r.stdout).toBeGreaterThan(0);
    expect(lines.slice(at + 1)).toEqual([]);
  });

  it('LOOPWATCH_EXIT_FLUSH_MS=0 installs nothing: the same Ctrl-C loses the spans still in the batch', async () => {
    const r = await runAgent('exit-sigint-off', 'signal', 50, { LOOPWATCH_EXIT_FLUSH_MS: '0' });
    expect(r.signal).toBe('SIGINT');
    expect(await stored('exit-sigint-off')).toHaveLength(0);
  });

  it('a LoopDetectedError nobody catches: printed, exit 1, and the loop and the stopped call are stored', async () => {
    const r = await runAgent('exit-halt', 'halt', 0, { LOOPWATCH_GUARD: 'halt', LOOPWATCH_EXIT_FLUSH_MS: '20000' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('LoopDetectedError');
    expect(r.stderr).toContain('Loopwatch halted a looping tool call');
    const calls = await stored('exit-halt');
    expect(calls.length).toBeGreaterThan(2);
    expect(calls.every((c) => c.tool === 'write_file')).toBe(true);
    expect(calls.at(-1)).toMatchObject({ status: 'error', error_type: 'LoopDetectedError' });
    expect(calls.slice(0, -1).every((c) => c.status === 'ok')).toBe(true);
  });

  it('an application that handles SIGTERM itself decides how the process ends (Loopwatch does not re-raise the signal)', async () => {
    const r = await runAgent('exit-app-handler', 'app-handler', 20);
    expect(r.stdout).toContain('app handled SIGTERM');
    expect({ code: r.code, signal: r.signal }).toEqual({ code: 3, signal: null });
    expect(await stored('exit-app-handler')).toHaveLength(20);
  });

  it('process.exit() cannot wait: the spans it leaves behind are reported on stderr', async () => {
    const r = await runAgent('exit-process-exit', 'exit', 20);
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('[loopwatch] 20 spans not exported: the process exited before they were sent');
  });

  it('a full export queue: the spans the batch processor drops are reported as dropped, with the setting, not as unsent', async () => {
    // 200 calls in one tick into a queue of 50: one batch goes to the exporter, the next 50 wait, the rest are dropped
    const r = await runAgent('exit-queue-full', 'exit', 200, { OTEL_BSP_MAX_QUEUE_SIZE: '50' });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('[loopwatch] dropping spans: the export queue is full (50 spans waiting');
    const dropped = Number(/\[loopwatch\] (\d+) spans dropped: the export queue was full \(OTEL_BSP_MAX_QUEUE_SIZE\)/.exec(r.stderr)?.[1]);
    const unsent = Number(/\[loopwatch\] (\d+) spans not exported: the process exited before they were sent/.exec(r.stderr)?.[1]);
    expect(dropped, r.stderr).toBeGreaterThan(0);
    expect(dropped + unsent, r.stderr).toBe(200);
  });

  it('OTEL_EXPORTER_OTLP_PROTOCOL=grpc or OTEL_TRACES_EXPORTER=console: said not to be used, and the spans still reach the collector', async () => {
    const r = await runAgent('exit-protocol', 'flush', 3, { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_TRACES_EXPORTER: 'console' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('[loopwatch] OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not used: Loopwatch exports OTLP/HTTP protobuf');
    expect(r.stderr).toContain('[loopwatch] OTEL_TRACES_EXPORTER=console is not used');
    expect(await stored('exit-protocol')).toHaveLength(3);
  });

  it('no collector: the agent still ends cleanly (exit 0, its own flush() resolves), says where it could not export to, and does not stay up retrying', async () => {
    const port = await freePort();
    // the exporter would retry for up to 30 s (five attempts over about 13 s); the wait at the end is 500 ms
    const r = await runAgent('exit-no-collector', 'flush', 20, { LOOPWATCH_EXIT_FLUSH_MS: '500', OTEL_EXPORTER_OTLP_TIMEOUT: '30000' }, `http://127.0.0.1:${port}`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('flushed\n');
    expect(r.stderr).toContain(`[loopwatch] cannot export spans to http://127.0.0.1:${port}/v1/traces: connect ECONNREFUSED`);
    expect(r.stderr).toContain('[loopwatch] 20 spans not exported: the collector did not take them within 500 ms of the end of the process (LOOPWATCH_EXIT_FLUSH_MS)');
    // the process ended while the exporter still retried: its last attempt never finished
    expect(r.stderr).not.toContain('could not be exported');
    expect(r.stderr).not.toContain('Unhandled');
  });

  it('no collector: a drained server\'s flush() then shutdown() both resolve, and its steps after them run (exit 0)', async () => {
    const port = await freePort();
    // the flush gives up on the spans at the end of the work; the shutdown, out of work again with
    // the same spans given up on, is let go at once (it never settled: the process ended at the
    // await, 13 under top-level await, the application's last steps never run)
    const drained = await runAgent('exit-drain', 'drain', 20, { LOOPWATCH_EXIT_FLUSH_MS: '500', OTEL_EXPORTER_OTLP_TIMEOUT: '30000' }, `http://127.0.0.1:${port}`);
    expect(drained.code, drained.stderr).toBe(0);
    expect(drained.stdout).toBe('flushed\nshut down\n');
    expect(drained.stderr).toContain('[loopwatch] 20 spans not exported: the collector did not take them within 500 ms of the end of the process (LOOPWATCH_EXIT_FLUSH_MS)');
    // shutdown() alone, the same
    const shut = await runAgent('exit-shutdown', 'shutdown', 20, { LOOPWATCH_EXIT_FLUSH_MS: '500', OTEL_EXPORTER_OTLP_TIMEOUT: '30000' }, `http://127.0.0.1:${port}`);
    expect(shut.code, shut.stderr).toBe(0);
    expect(shut.stdout).toBe('shut down\n');
  });

  it('an endpoint that is the collector\'s OTLP/gRPC port: the agent is told to use the HTTP port', async () => {
    const r = await runAgent('exit-grpc-port', 'flush', 3, { LOOPWATCH_EXIT_FLUSH_MS: '500' }, `http://${tc.collector.grpcAddress}`);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\[loopwatch\] cannot export spans to http:\/\/[^ ]+\/v1\/traces: the server does not answer HTTP\/1\.1 \(.*\): is it the OTLP\/gRPC port\? OTLP\/HTTP goes to the collector's HTTP port/);
  });

  it('a collector that refuses the first attempt: the exporter retries and delivers within the wait at the end, nothing is reported', async () => {
    // the first connection is reset (a collector restarting), the next ones reach the collector
    const target = new URL(tc.url);
    let connections = 0;
    const proxy = createServer((client) => {
      if (connections++ === 0) return void client.resetAndDestroy();
      const upstream = connect(Number(target.port), target.hostname);
      client.pipe(upstream).pipe(client);
      const close = () => (client.destroy(), upstream.destroy());
      client.on('error', close);
      upstream.on('error', close);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = proxy.address() as AddressInfo;
      const r = await runAgent('exit-retried', 'calls', 20, { LOOPWATCH_EXIT_FLUSH_MS: '20000' }, `http://127.0.0.1:${port}`);
      expect(r.code, r.stderr).toBe(0);
      expect(connections).toBeGreaterThan(1);
      expect(r.stderr).not.toContain('not exported');
      expect(r.stderr).not.toContain('cannot export');
      expect(await stored('exit-retried')).toHaveLength(20);
    } finally {
      proxy.close();
    }
  });
});

describe('the session of calls made outside withSession', () => {
  const NUDGE = 'runs outside a session and outside any span: each such call is a trace of its own, so loops across calls cannot be found';

  it('none: each call is its own trace and session, and the agent is told once how to fix it', async () => {
    const r = await runAgent('unused', 'no-session', 5);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr.split(NUDGE)).toHaveLength(2); // said once, for 5 calls
    expect(r.stderr).toContain('[loopwatch] "execute_tool read_file" ' + NUDGE);
    await tc.collector.flush();
    // (the agent is then the service name)
    const rows = await tc.rows<{ sessions: number; traces: number; calls: number; same: number }>(
      `SELECT uniqExact(session_id) AS sessions, uniqExact(trace_id) AS traces, count() AS calls, countIf(session_id = trace_id) AS same
       FROM agent_tool_calls FINAL WHERE service = 'agent-process-test' AND agent = 'agent-process-test'`,
    );
    expect(rows[0]).toEqual({ sessions: 5, traces: 5, calls: 5, same: 5 });
  });

  it('LOOPWATCH_SESSION_ID (and LOOPWATCH_AGENT) put them in one session, and nothing is said', async () => {
    const r = await runAgent('unused', 'no-session', 5, { LOOPWATCH_SESSION_ID: 'nightly-run-7', LOOPWATCH_AGENT: 'nightly' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).not.toContain(NUDGE);
    const rows = await stored('nightly-run-7');
    expect(rows).toHaveLength(5);
    const [agent] = await tc.rows<{ agent: string }>(`SELECT any(agent) AS agent FROM agent_tool_calls FINAL WHERE session_id = 'nightly-run-7'`);
    expect(agent!.agent).toBe('nightly');
  });
});

describe('LOOPWATCH_EXIT_FLUSH_MS', () => {
  it('takes milliseconds from 0 to 60000; anything else is reported and the default used', () => {
    const warned: string[] = [];
    const warn = (m: string) => warned.push(m);
    expect(exitFlushMsFromEnv({}, warn)).toBe(DEFAULT_EXIT_FLUSH_MS);
    expect(exitFlushMsFromEnv({ LOOPWATCH_EXIT_FLUSH_MS: ' 500 ' }, warn)).toBe(500);
    expect(exitFlushMsFromEnv({ LOOPWATCH_EXIT_FLUSH_MS: '0' }, warn)).toBe(0);
    expect(warned).toEqual([]);
    // decimal digits only (Number() read 0x10 as 16 and 1e3 as 1000)
    for (const bad of ['-1', '2.5', 'soon', '60001', '0x10', '1e3']) expect(exitFlushMsFromEnv({ LOOPWATCH_EXIT_FLUSH_MS: bad }, warn)).toBe(DEFAULT_EXIT_FLUSH_MS);
    expect(warned).toHaveLength(6);
    expect(warned[2]).toBe('LOOPWATCH_EXIT_FLUSH_MS="soon" ignored (an integer from 0 to 60000 milliseconds): using 2000');
  });
});
