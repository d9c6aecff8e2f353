// A command that fails under --json says so in JSON too: one object on stdout,
// {"error":{"message","code"}}, with the exit code and the stderr line it has without --json (a
// script piping `loopwatch findings --json | jq` got nothing it could parse). The compiled CLI
// against a real collector with API keys, one whose store is down, a port nothing listens on and
// a server that never answers.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { tempDirs } from '../helpers/temp-dirs.js';
import { assertBuilt, cli, freePort, type CliResult } from './helpers.js';

const sha = (k: string) => createHash('sha256').update(k).digest('hex');
const READ_KEY = 'lw_read-key-json-errors';
const INGEST_KEY = 'lw_ingest-key-json-errors';
const tempDir = tempDirs();
let tc: TestCollector;
let read: Record<string, string>;

beforeAll(async () => {
  assertBuilt();
  tc = await startTestCollector({ detect: { enabled: false }, auth: { readKeyHashes: [sha(READ_KEY)], ingestKeyHashes: [sha(INGEST_KEY)] } });
  read = { LOOPWATCH_API_KEY: READ_KEY };
});
afterAll(async () => {
  await tc?.close();
});

interface JsonError {
  message: string;
  code: string;
}

/**
 * Runs the command without and with --json (last), and checks what --json adds: one JSON line on
 * stdout, {"error":{message,code}}, the same exit code, the same stderr. Returns both runs and the error.
 */
async function failsAlike(args: string[], env: Record<string, string | undefined> = {}): Promise<{ text: CliResult; json: CliResult; error: JsonError }> {
  const [text, json] = await Promise.all([cli(args, env), cli([...args, '--json'], env)]);
  const what = args.join(' ');
  expect(text.code, `${what}: ${text.stderr}`).toBeGreaterThan(0);
  expect(text.stdout, what).toBe(''); // without --json, nothing changes: the error on stderr only
  expect(json.code, what).toBe(text.code);
  expect(json.stderr, what).toBe(text.stderr); // a person at a terminal reads the same text
  expect(json.stdout, what).toMatch(/^[^\n]+\n$/); // exactly one line
  const parsed = JSON.parse(json.stdout) as { error: JsonError };
  expect(Object.keys(parsed), what).toEqual(['error']);
  expect(Object.keys(parsed.error).sort(), what).toEqual(['code', 'message']);
  expect(parsed.error.message, what).not.toBe('');
  expect(text.stderr, what).toContain(parsed.error.message);
  return { text, json, error: parsed.error };
}

describe('--json: a failing command writes {"error":{message,code}} on stdout', () => {
  it('no collector at the URL, and a server that never answers: unreachable, exit 3', async () => {
    const nothing = `http://127.0.0.1:${await freePort()}`;
    const silent: Server = createServer(() => {}); // takes the connection, never answers
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const [refused, stuck] = await Promise.all([
        failsAlike(['findings', '--url', nothing]),
        failsAlike(['sessions', '--url', `http://127.0.0.1:${(silent.address() as { port: number }).port}`]),
      ]);
      expect(refused.json.code).toBe(3);
      expect(refused.error).toEqual({ code: 'unreachable', message: expect.stringMatching(/^no collector at http:\/\/127\.0\.0\.1:\d+ \(.*\); start one with/) });
      expect(refused.json.stderr).toBe(`loopwatch: ${refused.error.message}\n`);
      expect(stuck.json.code).toBe(3);
      expect(stuck.error).toEqual({ code: 'unreachable', message: expect.stringMatching(/^no answer from .* to \/healthz within 10 s/) });
    } finally {
      silent.close();
    }
  }, 60_000);

  it('an unknown session: not_found, exit 5', async () => {
    const [session, exported] = await Promise.all([failsAlike(['session', 'no-such-session', '--url', tc.url], read), failsAlike(['export', 'no-such-session', '--url', tc.url], read)]);
    for (const r of [session, exported]) {
      expect(r.json.code).toBe(5);
      expect(r.error.code).toBe('not_found');
      expect(r.json.stderr).toBe(`loopwatch: ${r.error.message}\n`);
    }
    expect(session.error.message).toBe('no session no-such-session');
  });

  it('a bad option value, refused by the CLI or by the collector: bad_input, exit 2', async () => {
    const [limit, choice, since, order] = await Promise.all([
      failsAlike(['sessions', '--url', tc.url, '-n', 'abc'], read),
      failsAlike(['findings', '--url', tc.url, '--detector', 'repeats'], read),
      failsAlike(['sessions', '--url', tc.url, '--since', 'bogus'], read),
      failsAlike(['models', '--url', tc.url, '--since', '2026-02-01', '--until', '2026-01-01'], read),
    ]);
    for (const r of [limit, choice, since, order]) {
      expect(r.json.code).toBe(2);
      expect(r.error.code).toBe('bad_input');
    }
    expect(limit.error.message).toBe("option '-n, --limit <n>' argument 'abc' is invalid. must be a positive whole number in decimal digits");
    expect(choice.error.message).toMatch(/Allowed choices are degradation, error_loop, /);
    expect(since.error.message).toBe('--since: not a time: bogus (ISO, epoch milliseconds, or an age like 24h)');
    expect(order.error.message).toBe('--since (2026-02-01T00:00:00.000Z) is after --until (2026-01-01T00:00:00.000Z)');
    // a --url that is not one, and the configuration `up` refuses
    const [url, retention] = await Promise.all([
      failsAlike(['status', '--url', 'not-a-url']),
      failsAlike(['up', '--port', '0', '--grpc-port', 'off', '--data-dir', tempDir('lw-json-up-'), '--retention-days', '99999']),
    ]);
    expect(url.json.code).toBe(2);
    expect(url.error).toEqual({ code: 'bad_input', message: '--url "not-a-url" is not an http:// or https:// URL (e.g. http://127.0.0.1:4318)' });
    expect(retention.json.code).toBe(2);
    expect(retention.error.code).toBe('bad_input');
    expect(retention.json.stderr).toBe(`loopwatch: ${retention.error.message}\n`);
  }, 180_000); // a dozen CLI processes: a minute on a loaded machine

  it('an unknown option, a missing argument, an unknown command, caught by the CLI library: usage, exit 2', async () => {
    const runs = await Promise.all([failsAlike(['sessions', '--bogus']), failsAlike(['session']), failsAlike(['sessions', 'extra']), failsAlike(['no-such-command'])]);
    for (const r of runs) {
      expect(r.json.code).toBe(2);
      expect(r.error.code).toBe('usage');
      expect(r.json.stderr).toBe(`error: ${r.error.message}\n(add --help for usage)\n`);
    }
    expect(runs.map((r) => r.error.message)).toEqual([
      "unknown option '--bogus'",
      "missing required argument 'id'",
      "too many arguments for 'sessions'. Expected 0 arguments but got 1.",
      "unknown command 'no-such-command'",
    ]);
    // a command without --json of its own: --json on it is the unknown option, said in JSON
    const hash = await cli(['keys', 'hash', 'some-key', '--json']);
    expect(hash.code).toBe(2);
    expect(JSON.parse(hash.stdout)).toEqual({ error: { code: 'usage', message: "unknown option '--json'" } });
    // --json after `--` is an argument, not the flag
    const operand = await cli(['sessions', '--', '--json']);
    expect(operand.code).toBe(2);
    expect(operand.stdout).toBe('');
  }, 180_000);

  it('a collector with API keys, without a read key or with another key: unauthorized, exit 4, the key never printed', async () => {
    const [none, ingest] = await Promise.all([failsAlike(['findings', '--url', tc.url]), failsAlike(['status', '--url', tc.url], { LOOPWATCH_API_KEY: INGEST_KEY })]);
    for (const r of [none, ingest]) {
      expect(r.json.code).toBe(4);
      expect(r.error.code).toBe('unauthorized');
      expect(r.error.message).toMatch(/^401 from \/api\/v1\/(findings|status): missing or invalid API key.*\(set LOOPWATCH_API_KEY to a read key\)$/);
    }
    for (const out of [ingest.json.stdout, ingest.json.stderr]) expect(out).not.toContain(INGEST_KEY);
    // with the read key the same command succeeds, with its own JSON
    const ok = await cli(['findings', '--json', '--url', tc.url], read);
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({ findings: [] });
  }, 120_000);

  it('a collector whose store is down (503): server_error, exit 1', async () => {
    const down = await startTestCollector({ clickhouse: { url: `http://127.0.0.1:${await freePort()}` }, detect: { enabled: false } });
    try {
      const r = await failsAlike(['sessions', '--url', down.url]);
      expect(r.json.code).toBe(1);
      expect(r.error.code).toBe('server_error');
      expect(r.error.message).toMatch(/^503 from \/api\/v1\/sessions: the collector could not answer/);
    } finally {
      await down.close();
    }
  });

  it('other failures of a command: error, exit 1', async () => {
    const r = await failsAlike(['replay', join(tempDir('lw-json-replay-'), 'no-such-file.jsonl')]);
    expect(r.json.code).toBe(1);
    expect(r.error).toEqual({ code: 'error', message: expect.stringMatching(/^cannot read .*no-such-file\.jsonl: ENOENT/) });
    const notSession = join(tempDir('lw-json-replay-'), 'not-a-session.jsonl');
    writeFileSync(notSession, 'not json\n');
    const bad = await failsAlike(['replay', notSession]);
    expect(bad.json.code).toBe(1);
    expect(bad.error.code).toBe('error');
  });

  it('--help and --version are not errors; a command that succeeds prints no error', async () => {
    const help = await cli(['sessions', '--help', '--json']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: loopwatch sessions/);
    expect(help.stdout).not.toContain('"error"');
    const version = await cli(['--version', '--json']);
    expect(version.code).toBe(0);
    expect(version.stdout).toMatch(/^\d+\.\d+\.\d+/);
    const ok = await cli(['keys', 'generate', '--json']);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ role: 'ingest' });
  });
});
