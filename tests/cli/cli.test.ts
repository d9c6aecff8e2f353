// The compiled `loopwatch` CLI against a real collector (embedded store, detectors on) fed by the
// real sample agent over OTLP: sessions, session timeline, findings, models, export, demo
// (against the running collector), --help and --json everywhere, errors and exit codes.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { tempDirs } from '../helpers/temp-dirs.js';
import { assertBuilt, CLI, cli, freePort, runSampleAgent, until } from './helpers.js';
import { packageRoot } from '../../collector/src/paths.js';
import { loadMigrations } from '../../collector/src/store/migrate.js';

let tc: TestCollector;
const tempDir = tempDirs();
const session = `cli-${Date.now()}`;
let exported = ''; // the export test's file, replayed by the replay test

beforeAll(async () => {
  assertBuilt();
  tc = await startTestCollector({ detect: { enabled: true, intervalMs: 200 } });
  await runSampleAgent(tc.url, session); // 17 tool calls, each asked for by a model call, and a final model call
  await tc.collector.flush();
  const api = `${tc.url}/api/v1/findings?session=${encodeURIComponent(session)}`;
  await until(async () => ((await (await fetch(api)).json()) as { findings: Array<{ detector: string }> }).findings.some((f) => f.detector === 'repeat'));
}, 90_000);
afterAll(async () => {
  await tc?.close();
});

describe('loopwatch CLI', () => {
  it('--help lists the commands, and every command has --help, --json and --url', async () => {
    const top = await cli(['--help']);
    expect(top.code).toBe(0);
    for (const cmd of ['up', 'demo', 'sessions', 'session', 'findings', 'models', 'export', 'replay', 'status']) expect(top.stdout).toContain(cmd);
    for (const cmd of ['demo', 'sessions', 'session', 'findings', 'models', 'export', 'status']) {
      const h = await cli([cmd, '--help']);
      expect(h.code, cmd).toBe(0);
      expect(h.stdout, cmd).toContain('--json');
      expect(h.stdout, cmd).toContain('--url');
    }
    const up = (await cli(['up', '--help'])).stdout;
    expect(up).toContain('--json');
    expect(up).toContain('--detectors <settings>');
    const replay = (await cli(['replay', '--help'])).stdout; // offline: no --url
    expect(replay).toContain('--json');
    expect(replay).toContain('--detectors <settings>');
  });

  it('sessions: the session, scored', async () => {
    const r = await cli(['sessions', '--json', '--url', tc.url]);
    expect(r.code, r.stderr).toBe(0);
    const s = (JSON.parse(r.stdout) as { sessions: Array<{ session_id: string; calls: number; errors: number; loops_entered: number; llm_calls: number }> }).sessions.find((x) => x.session_id === session);
    expect(s).toMatchObject({ calls: 17, errors: 5, llm_calls: 18 });
    expect((s as unknown as { cost_usd: number }).cost_usd).toBeGreaterThan(0);
    expect(s!.loops_entered).toBeGreaterThan(0);
    const text = await cli(['sessions', '--url', tc.url]);
    expect(text.stdout).toContain(session);
    // LOOPWATCH_URL works as --url
    expect((await cli(['sessions', '--json'], { LOOPWATCH_URL: tc.url })).code).toBe(0);
  });

  it('session <id>: the timeline in call order, loops highlighted', async () => {
    const r = await cli(['session', session, '--json', '--url', tc.url]);
    expect(r.code, r.stderr).toBe(0);
    const d = JSON.parse(r.stdout) as { total_calls: number; calls: Array<{ kind: string; name: string; loops: string[]; args_hash: string }>; findings: Array<{ detector: string }> };
    expect(d.total_calls).toBe(35);
    const tools = d.calls.filter((c) => c.kind === 'tool');
    expect(tools.map((c) => c.name)).toEqual([
      'read_file', 'write_file', 'write_file', 'write_file', 'write_file', 'write_file',
      'run_tests', 'edit_file', 'run_tests', 'edit_file', 'run_tests', 'edit_file',
      'run_shell', 'run_shell', 'run_shell', 'run_shell', 'run_shell',
    ]);
    expect(tools[1]!.args_hash).toMatch(/^[0-9a-f]{16}$/);
    expect(tools[2]!.loops).toContain('repeat');
    expect(tools[0]!.loops).toEqual([]);
    // model and tool calls alternate, in start order
    expect(d.calls.slice(0, 4).map((c) => `${c.kind}:${c.name}`)).toEqual(['llm:gpt-4o-mini-2024-07-18', 'tool:read_file', 'llm:gpt-4o-mini-2024-07-18', 'tool:write_file']);

    const text = await cli(['session', session, '--url', tc.url]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('loops and waste found:');
    expect(text.stdout).toMatch(/write_file .*⟲ .*repeat/);
    expect(text.stdout).toContain('command not found');
  });

  it('findings: filtered by session and detector', async () => {
    const r = await cli(['findings', '--json', '--url', tc.url, '--session', session]);
    expect(r.code).toBe(0);
    const f = (JSON.parse(r.stdout) as { findings: Array<{ detector: string; session_id: string; tools: string[]; wasted_calls: number }> }).findings;
    // the rewrites; the failing retries of run_shell are a repeat too
    const repeat = f.find((x) => x.detector === 'repeat' && x.tools[0] === 'write_file');
    expect(repeat).toMatchObject({ session_id: session, tools: ['write_file'] });
    expect(f.map((x) => x.detector)).toContain('retry_storm');
    expect(repeat!.wasted_calls).toBeGreaterThan(0);
    const only = JSON.parse((await cli(['findings', '--json', '--url', tc.url, '--detector', 'repeat'])).stdout) as { findings: Array<{ detector: string }> };
    expect(only.findings.every((x) => x.detector === 'repeat')).toBe(true);
    expect((await cli(['findings', '--url', tc.url])).stdout).toContain('repeat');
  });

  it('models: the per-model reliability table', async () => {
    const r = await cli(['models', '--json', '--url', tc.url]);
    expect(r.code, r.stderr).toBe(0);
    const m = (JSON.parse(r.stdout) as { models: Array<{ model: string; sessions: number; llm_calls: number; tool_calls: number; cost_usd: number }> }).models.find((x) => x.model === 'gpt-4o-mini-2024-07-18');
    expect(m).toMatchObject({ sessions: 1, llm_calls: 18, tool_calls: 17 });
    expect(m!.cost_usd).toBeGreaterThan(0);
    expect((await cli(['models', '--url', tc.url])).stdout).toContain('gpt-4o-mini-2024-07-18');
  });

  it('models --limit: the newest rows, and how many more there are (500 models over 30 days are 15,000 rows)', async () => {
    // two more models' LLM calls, a day ago and two days ago: three rows, the sample agent's the newest
    const now = Date.now();
    const llm = (model: string, daysAgo: number, n: number) => ({
      traceId: (n.toString(16) + 'a'.repeat(32)).slice(0, 32), spanId: (n.toString(16) + 'b'.repeat(16)).slice(0, 16), name: `chat ${model}`, kind: 3,
      startTimeUnixNano: String(BigInt(now - daysAgo * 86_400_000) * 1_000_000n), endTimeUnixNano: String(BigInt(now - daysAgo * 86_400_000 + 500) * 1_000_000n),
      attributes: [['gen_ai.operation.name', 'chat'], ['gen_ai.provider.name', 'openai'], ['gen_ai.request.model', model], ['gen_ai.usage.input_tokens', '10'], ['gen_ai.usage.output_tokens', '5'], ['gen_ai.conversation.id', `cli-models-${n}`]]
        .map(([key, v]) => ({ key, value: { stringValue: v } })),
    });
    const body = { resourceSpans: [{ scopeSpans: [{ spans: [llm('model-two-days-ago', 2, 1), llm('model-a-day-ago', 1, 2)] }] }] };
    expect((await fetch(`${tc.url}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })).status).toBe(200);
    await tc.collector.flush();
    const got = JSON.parse((await cli(['models', '--json', '--limit', '2', '--url', tc.url])).stdout) as { total: number; models: Array<{ model: string }> };
    expect(got.total).toBe(3);
    expect(got.models.map((m) => m.model)).toEqual(['model-a-day-ago', 'gpt-4o-mini-2024-07-18']);
    const text = await cli(['models', '-n', '1', '--url', tc.url]);
    expect(text.stdout).toContain('gpt-4o-mini-2024-07-18');
    expect(text.stdout).not.toContain('model-a-day-ago');
    expect(text.stdout).toContain('… 2 earlier rows');
  });

  it('export: JSON Lines of the session, to a file and to stdout', async () => {
    const file = (exported = join(tempDir('lw-export-'), 's.jsonl'));
    const r = await cli(['export', session, '-o', file, '--json', '--url', tc.url]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ session_id: session, calls: 35, file });
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ type: 'session', format: 'loopwatch.session.v1', session_id: session, calls: 35 });
    expect(lines.slice(1).filter((l) => l.type === 'tool_call')).toHaveLength(17);
    expect(lines.slice(1).filter((l) => l.type === 'llm_call')).toHaveLength(18);
    const shell = lines.find((l) => l.tool === 'run_shell');
    expect(shell).toMatchObject({ status: 'error', error_message: 'command not found: pnpx' });
    expect(shell!.result_hash).toBeUndefined(); // no result: unknown, not the hash of nothing
    expect(lines.find((l) => l.type === 'llm_call')).toMatchObject({ input_tokens: 1900, output_tokens: 60, total_tokens: 1960, cache_read_tokens: 0 });
    const stdout = await cli(['export', session, '--url', tc.url]);
    expect(stdout.stdout.trimEnd().split('\n')).toHaveLength(36);
    // `-o -` is stdout too (it wrote a file named "-")
    const dash = await cli(['export', session, '-o', '-', '--url', tc.url]);
    expect(dash.stdout.trimEnd().split('\n').slice(1)).toEqual(stdout.stdout.trimEnd().split('\n').slice(1)); // the header line has the time of export
    expect(existsSync(join(packageRoot, '-'))).toBe(false);
    // into a pipe whose reader has gone (`| head -1`; `true` has exited before the first line):
    // a quiet stop, no EPIPE stack trace
    // (not spawnSync: the collector answering runs in this process)
    const piped = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child = spawn('bash', ['-c', `set -o pipefail; "${process.execPath}" "${CLI}" export "${session}" --url ${tc.url} | true`], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      child.once('exit', (code) => resolve({ code, stderr }));
    });
    expect(piped.stderr).toBe('');
    expect(piped.code).toBe(0);
  });

  it('replay: the exported session through the loop rules finds what the collector found', async () => {
    type Stored = { detector: string; first_span_id: string; last_span_id: string; repeats: number; wasted_calls: number; wasted_tokens: number; wasted_cost_usd: number };
    // the same keys as the collector's findings
    type Replayed = Stored & { session_id: string; severity: string; tools: string[]; message: string };
    // the scheduled passes have stored every finding of the session by now (the demo's session is another)
    const stored = (await (await fetch(`${tc.url}/api/v1/findings?session=${encodeURIComponent(session)}`)).json()) as { findings: Stored[] };
    const r = await cli(['replay', exported, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { session_id: string; tool_calls: number; llm_calls: number; findings: Replayed[] };
    expect(out).toMatchObject({ session_id: session, tool_calls: 17, llm_calls: 18 });
    const key = (d: string, first: string, last: string, repeats: number, wasted: number, tokens: number) => `${d} ${first}..${last} x${repeats} wasted ${wasted} calls ${Math.round(tokens)} tokens`;
    expect(out.findings.map((f) => key(f.detector, f.first_span_id, f.last_span_id, f.repeats, f.wasted_calls, f.wasted_tokens)).sort()).toEqual(
      stored.findings.map((f) => key(f.detector, f.first_span_id, f.last_span_id, f.repeats, f.wasted_calls, f.wasted_tokens)).sort(),
    );
    const cost = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    expect(cost(out.findings.map((f) => f.wasted_cost_usd))).toBeCloseTo(cost(stored.findings.map((f) => f.wasted_cost_usd)), 9);
    expect(out.findings.map((f) => f.detector)).toContain('oscillation');
    expect(out.findings.every((f) => f.session_id === session)).toBe(true);

    // other settings: 3 cycles of edit/test are no oscillation at oscillationMinCycles=4
    const tuned = await cli(['replay', exported, '--detectors', 'oscillationMinCycles=4']);
    expect(tuned.code, tuned.stderr).toBe(0);
    expect(tuned.stdout).toContain('settings: oscillationMinCycles=4');
    expect(tuned.stdout).toMatch(/^repeat /m);
    expect(tuned.stdout).not.toMatch(/^oscillation /m);
    // LOOPWATCH_DETECTORS applies when --detectors is not given
    const viaEnv = await cli(['replay', exported, '--json'], { LOOPWATCH_DETECTORS: 'oscillationMinCycles=4' });
    expect((JSON.parse(viaEnv.stdout) as { findings: Replayed[] }).findings.map((f) => f.detector)).not.toContain('oscillation');
    // --fail-on-loop: status 1 when a loop is found, for CI
    expect((await cli(['replay', exported, '--fail-on-loop'])).code).toBe(1);
    expect((await cli(['replay', exported, '--fail-on-loop', '--detectors', 'repeatMinRun=50,stuckMinRun=50,oscillationMinCycles=50,retryStormMinRun=50'])).code).toBe(0);
    // bad settings: 2; a bad file: 1, naming the line
    const badSettings = await cli(['replay', exported, '--detectors', 'stuckMinRun=0']);
    expect(badSettings.code).toBe(2);
    expect(badSettings.stderr).toContain('--detectors: detector setting stuckMinRun must be an integer from 2');
    const cut = join(tempDir('lw-replay-'), 'cut.jsonl');
    writeFileSync(cut, readFileSync(exported, 'utf8').split('\n').slice(0, 10).join('\n'));
    const cutShort = await cli(['replay', cut]);
    expect(cutShort.code).toBe(1);
    expect(cutShort.stderr).toContain('the header declares 35 calls, the file has 9 (cut short?)');
    const missing = await cli(['replay', join(tmpdir(), 'no-such-export.jsonl')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('cannot read');
  }, 240_000); // CLI processes one after another: minutes on a loaded machine

  it('demo: uses the running collector, runs the sample agent, shows a finding', async () => {
    const r = await cli(['demo', '--json', '--url', tc.url, '--timeout', '60']);
    expect(r.code, r.stderr).toBe(0);
    const d = JSON.parse(r.stdout) as { session_id: string; collector: { started: boolean }; findings: Array<{ detector: string }>; calls: Array<{ loops: string[] }> };
    expect(d.collector.started).toBe(false);
    expect(d.findings.length).toBeGreaterThan(0);
    expect(d.calls.some((c) => c.loops.length > 0)).toBe(true);
  });

  // after the tests that count this collector's sessions: it runs the sample agent again
  it('findings --follow: what was stored, then each finding as it is stored, until a signal', async () => {
    const watched = `${session}-follow`;
    const child = spawn(process.execPath, [CLI, 'findings', '--follow', '--json', '--interval', '1', '--url', tc.url, '--since', '1d'], { cwd: packageRoot, env: { ...process.env, NO_COLOR: '1' } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const lines = () => out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { event: string; finding_id: string; session_id: string; detector: string; repeats: number });
    try {
      // the findings stored before: each once, as existing
      const before = await until(async () => (lines().some((l) => l.session_id === session) ? lines() : undefined));
      expect(before.every((l) => l.event === 'existing')).toBe(true);
      expect(new Set(before.map((l) => l.finding_id)).size).toBe(before.length);
      // a new session loops: its findings come as new while follow runs
      await runSampleAgent(tc.url, watched);
      await tc.collector.flush();
      const news = await until(async () => {
        const n = lines().filter((l) => l.session_id === watched);
        return n.some((l) => l.detector === 'retry_storm') && n.some((l) => l.detector === 'repeat') ? n : undefined;
      });
      expect(news.every((l) => l.event === 'new')).toBe(true);
      expect(lines().filter((l) => l.session_id === session).every((l) => l.event === 'existing')).toBe(true);
    } finally {
      child.kill('SIGINT');
    }
    expect(await new Promise((r) => child.on('exit', (_code, signal) => r(signal)))).toBe('SIGINT');
    // no collector at the start: an error, not a wait
    const down = await cli(['findings', '--follow', '--url', `http://127.0.0.1:${await freePort()}`]);
    expect(down.code).toBe(3);
    expect(down.stderr).toContain('no collector at');
  }, 90_000);

  it('status: spans received and stored, detector passes, healthy (exit 0)', async () => {
    const r = await cli(['status', '--json', '--url', tc.url]);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as { healthy: boolean; problems: string[]; store: { mode: string; schema: string; schema_version: number }; spans: { accepted: { http: number; grpc: number }; inserted: number; dropped: number }; detectors: { passes: number; new_findings: number; last_pass: { sessions: number } | null } };
    // the schema version: the newest migration, which the text says too
    const newest = Math.max(...loadMigrations({ retentionDays: 30 }).map((m) => m.version));
    expect(s).toMatchObject({ healthy: true, problems: [], store: { mode: 'embedded', schema: 'ready', schema_version: newest } });
    expect((await cli(['status', '--url', tc.url])).stdout).toContain(`schema ready (version ${newest})`);
    expect(s.spans.accepted.http).toBeGreaterThanOrEqual(35); // the sample agent's 17 tool and 18 model calls, over OTLP/HTTP
    expect(s.spans.inserted).toBe(s.spans.accepted.http + s.spans.accepted.grpc);
    expect(s.spans.dropped).toBe(0);
    expect(s.detectors.passes).toBeGreaterThan(0);
    expect(s.detectors.new_findings).toBeGreaterThan(0); // the sample agent's loops
    expect(s.detectors.last_pass).not.toBeNull();
    // keys in snake_case, as every --json output and read API answer (the detectors' error map is keyed by detector)
    const keys = (v: unknown, at: string): string[] =>
      v && typeof v === 'object' && !Array.isArray(v)
        ? Object.entries(v).flatMap(([k, x]) => (at.endsWith('.errors') ? [] : [`${at}.${k}`, ...keys(x, `${at}.${k}`)]))
        : [];
    expect(keys(s, '').filter((k) => /[A-Z]/.test(k))).toEqual([]);
    expect(keys(s, '')).toEqual(expect.arrayContaining(['.retention_days', '.uptime_s', '.listening.otlp_http', '.detectors.interval_ms', '.detectors.last_pass.duration_ms']));
    const text = await cli(['status', '--url', tc.url]);
    expect(text.stdout).toMatch(/^healthy/);
    expect(text.stdout).toContain('lost 0');
  });

  it('errors: unknown session, bad arguments, no collector', async () => {
    const missing = await cli(['session', 'no-such-session', '--url', tc.url]);
    expect(missing.code).toBe(5);
    expect(missing.stderr).toContain('no session no-such-session');
    expect((await cli(['export', 'no-such-session', '--url', tc.url])).code).toBe(5);
    expect((await cli(['sessions', '--limit', 'x', '--url', tc.url])).code).not.toBe(0);
    const bad = await fetch(`${tc.url}/api/v1/sessions?limit=0`);
    expect(bad.status).toBe(400);
    const badTime = await fetch(`${tc.url}/api/v1/findings?since=yesterday-ish`);
    expect(badTime.status).toBe(400);
    const down = await cli(['sessions', '--url', `http://127.0.0.1:${await freePort()}`]);
    expect(down.code).toBe(3);
    expect(down.stderr).toContain('no collector at');
    // a port in use: which one, and the option that changes it
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const takenPort = (taken.address() as { port: number }).port;
    try {
      const httpTaken = await cli(['up', '--port', String(takenPort), '--grpc-port', 'off', '--data-dir', tempDir('loopwatch-cli-')]);
      expect({ code: httpTaken.code, stderr: httpTaken.stderr }).toEqual({ code: 1, stderr: `loopwatch: cannot listen on 127.0.0.1:${takenPort} (in use: another collector?): choose another with --port (LOOPWATCH_PORT)\n` });
      const grpcTaken = await cli(['up', '--port', '0', '--grpc-port', String(takenPort), '--data-dir', tempDir('loopwatch-cli-')]);
      expect(grpcTaken.code).toBe(1);
      expect(grpcTaken.stderr).toBe(`loopwatch: port ${takenPort} on 127.0.0.1 (OTLP/gRPC) is in use: choose another with --grpc-port (LOOPWATCH_GRPC_PORT), or turn gRPC off with --grpc-port off\n`);
    } finally {
      taken.close();
    }
    // a bad detector setting stops `up` before it starts anything, naming the setting
    const badSetting = await cli(['up', '--port', '0', '--data-dir', tempDir('loopwatch-cli-'), '--detectors', 'repeatMinRun=1']);
    expect(badSetting.code).toBe(2);
    expect(badSetting.stderr).toContain('invalid configuration detect.settings (LOOPWATCH_DETECTORS): detector setting repeatMinRun must be an integer from 2');
    // a typo is not a default, a blank port not a random one, a bad price file one line (exit 2 each)
    const typo = await cli(['up', '--port', '0', '--data-dir', tempDir('loopwatch-cli-')], { LOOPWATCH_DETECT_ENABLED: 'flase' });
    expect({ code: typo.code, stderr: typo.stderr }).toEqual({ code: 2, stderr: expect.stringContaining('detect.enabled (LOOPWATCH_DETECT_ENABLED)') });
    expect((await cli(['up', '--port', '', '--data-dir', tempDir('loopwatch-cli-')])).code).toBe(2);
    const prices = await cli(['up', '--port', '0', '--data-dir', tempDir('loopwatch-cli-')], { LOOPWATCH_MODEL_PRICES: join(tempDir('loopwatch-cli-'), 'missing.json') });
    expect(prices.code).toBe(2);
    expect(prices.stderr).toMatch(/^loopwatch: LOOPWATCH_MODEL_PRICES: cannot read model price file .*missing\.json: ENOENT\n$/);
    // replay prices LLM calls too: the same refusal, before it reads the session; a blank value is unset
    const missingPrices = { LOOPWATCH_MODEL_PRICES: join(tempDir('loopwatch-cli-'), 'missing.json') };
    const replayPrices = await cli(['replay', join(tempDir('loopwatch-cli-'), 'session.jsonl')], missingPrices);
    expect({ code: replayPrices.code, stderr: replayPrices.stderr }).toEqual({ code: 2, stderr: expect.stringMatching(/^loopwatch: LOOPWATCH_MODEL_PRICES: cannot read model price file .*missing\.json: ENOENT\n$/) });
    const replayBlank = await cli(['replay', join(tempDir('loopwatch-cli-'), 'session.jsonl')], { LOOPWATCH_MODEL_PRICES: ' ' });
    expect({ code: replayBlank.code, stderr: replayBlank.stderr }).toEqual({ code: 1, stderr: expect.stringContaining('cannot read') });
  }, 240_000); // CLI processes one after another: minutes on a loaded machine
});
