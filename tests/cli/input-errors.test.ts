// What a careless or hostile user gets from the read API and the CLI: a 4xx with a clear message
// for times out of range, offsets past what SQL binds, ids too long, unknown routes; a one-line
// error and an exit code, never a stack trace, from the CLI for a URL that is not one, a server
// that is not a collector, a file it cannot write, bad flags and a data directory it cannot
// make; and no terminal control sequences from ingested data on the screen. A real collector, the
// compiled CLI, the real sample agent.
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertBuilt, cli, runSampleAgent, until } from './helpers.js';
import { parseTime } from '../../collector/src/api/routes.js';
import { packageRoot } from '../../collector/src/paths.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { tempDirs } from '../helpers/temp-dirs.js';

let tc: TestCollector;
let web: Server; // a web server that is not a collector
let webUrl = '';
const tempDir = tempDirs();
// a session id with a clear-screen sequence, a bell and a right-to-left override in it
const hostile = 'evil\u001b[2J\u0007\u202esession';

beforeAll(async () => {
  assertBuilt();
  tc = await startTestCollector({ detect: { enabled: true, intervalMs: 200 } });
  web = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html>not a collector</html>'));
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  webUrl = `http://127.0.0.1:${(web.address() as { port: number }).port}`;
  await runSampleAgent(tc.url, hostile);
  await tc.collector.flush();
}, 90_000);
afterAll(async () => {
  await tc?.close();
  await new Promise((r) => web?.close(r));
});

const api = async (path: string, init?: RequestInit) => {
  const r = await fetch(`${tc.url}${path}`, init);
  return { status: r.status, body: (await r.json()) as { error?: string; message?: string }, version: r.headers.get('loopwatch-version') };
};
const noStack = (text: string) => expect(text).not.toMatch(/\n\s+at |TypeError|SyntaxError|node:internal/);

describe('read API: bad input is a 400 or 404 that says what is wrong', () => {
  it('times out of range, numbers that are not epoch milliseconds, and since after until', async () => {
    for (const since of ['3000-01-01', '2262-04-12', '0000-01-01', '99999999999999d', '9999999999999999999999']) {
      const r = await api(`/api/v1/sessions?since=${since}`);
      expect(r.status, since).toBe(400);
      expect(r.body.message).toMatch(/since: (out of range: .* \(times from 1970 to 2262-04-11\)|not a time)/);
    }
    for (const since of ['0', '12345', '-1']) {
      const r = await api(`/api/v1/findings?since=${since}`);
      expect(r.status, since).toBe(400);
      expect(r.body.message).toMatch(/a number is epoch milliseconds, 10 digits or more/);
    }
    const order = await api('/api/v1/models?since=2026-02-01&until=2026-01-01');
    expect(order.status).toBe(400);
    expect(order.body.message).toMatch(/since \(2026-02-01T00:00:00.000Z\) is after until/);
    expect((await api('/api/v1/sessions?since=24h&until=2262-04-10')).status).toBe(200);
  });

  it('a time without a zone is UTC, whatever the collector process\'s time zone', () => {
    const tz = process.env.TZ;
    process.env.TZ = 'America/New_York';
    try {
      expect(new Date(2026, 11, 6).getTimezoneOffset()).toBe(300); // the zone is in effect
      for (const t of ['2026-12-06T01:00:00', '2026-12-06 01:00:00', '2026-12-06 01:00', '2026-12-06T01:00:00.000Z']) {
        expect(parseTime(t).toISOString(), t).toBe('2026-12-06T01:00:00.000Z');
      }
      expect(parseTime('2026-12-06T01:00:00-05:00').toISOString()).toBe('2026-12-06T06:00:00.000Z');
      expect(parseTime('2026-12-06T01:00:00.123456789+0100').toISOString()).toBe('2026-12-06T00:00:00.123Z');
      expect(parseTime('2024-02-29').toISOString()).toBe('2024-02-29T00:00:00.000Z');
      // only ISO 8601: Date read these in the process's zone, and rolled impossible days over
      for (const t of ['Dec 1 2026', '02/03/2026', 'Sun Dec 06 2026', '2026-12-06T01:00:00 EST']) expect(() => parseTime(t), t).toThrow(/not a time/);
      for (const t of ['2026-02-30', '2025-02-29', '2026-13-01', '2026-12-06T24:00']) expect(() => parseTime(t), t).toThrow(/not a date: .* \(no such day or time\)/);
    } finally {
      if (tz === undefined) delete process.env.TZ;
      else process.env.TZ = tz;
    }
  });

  it('an offset past what the query binds, session ids up to 4,096 characters (in a URL)', async () => {
    const id = encodeURIComponent(hostile);
    const far = await api(`/api/v1/sessions/${id}/calls?offset=4294967296&limit=2`);
    expect(far.status).toBe(400);
    expect(far.body.message).toBe('offset: at most 4,294,967,295');
    expect((await api(`/api/v1/sessions/${id}/calls?offset=4294967295&limit=2`)).status).toBe(200);
    // listed, so it can be opened: a 600-character id is an unknown session here, not a bad request;
    // 4,096 characters of CJK (36 KB in the URL) too; past 4,096 a clear 400, not a 431
    expect((await api(`/api/v1/sessions/${'x'.repeat(600)}`)).status).toBe(404);
    expect((await api(`/api/v1/findings?session=${'x'.repeat(600)}`)).status).toBe(200);
    expect((await api(`/api/v1/sessions/${encodeURIComponent('会'.repeat(4096))}`)).status).toBe(404);
    const long = await api(`/api/v1/sessions/${'x'.repeat(4097)}`);
    expect(long.status).toBe(400);
    expect(long.body.message).toBe('session id: a session id is at most 4,096 characters (it goes in a URL)');
    // the CLI names the argument it was given, not a --session flag
    const cliLong = await cli(['session', 'x'.repeat(4097), '--url', tc.url]);
    expect({ code: cliLong.code, stderr: cliLong.stderr }).toEqual({ code: 2, stderr: 'loopwatch: session id: a session id is at most 4,096 characters (it goes in a URL)\n' });
  });

  it('unknown routes and other methods: JSON 404; every answer names the collector', async () => {
    for (const [method, path] of [['GET', '/api/v1/nope'], ['POST', '/api/v1/sessions'], ['DELETE', '/api/v1/findings']] as const) {
      const r = await api(path, { method });
      expect(r.status).toBe(404);
      expect(r.body).toEqual({ error: 'not_found', message: `no route ${method} ${path}` });
      expect(r.version).toMatch(/^\d+\.\d+\.\d+/);
    }
  });
});

describe('CLI: one line and an exit code, never a stack trace', () => {
  it('a URL that is not one (exit 2), a server that is not a collector (exit 3)', async () => {
    for (const url of ['not-a-url', 'http://[::1', 'ftp://example.com']) {
      const r = await cli(['status', '--url', url]);
      expect(r.code, url).toBe(2);
      expect(r.stderr).toMatch(/^loopwatch: --url ".*" is not an http:\/\/ or https:\/\/ URL/);
      noStack(r.stderr);
    }
    const fromEnv = await cli(['sessions'], { LOOPWATCH_URL: 'nope' });
    expect(fromEnv.stderr).toMatch(/LOOPWATCH_URL "nope" is not an http/);
    // session ids "." and "..": a URL takes them for a directory (export . wrote the session "calls")
    for (const cmd of [['session', ''], ['export', '']]) {
      const r = await cli([...cmd, '--url', webUrl]);
      expect(r.code, cmd.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/^loopwatch: the session id is empty/);
    }
    for (const cmd of [['session', '..'], ['export', '.']]) {
      const r = await cli([...cmd, '--url', webUrl]);
      expect(r.code, cmd.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/cannot be read through the API's URLs/);
    }
    // a user and password in the URL: refused by name, the password never printed (it was, twice, with exit 3)
    const creds = await cli(['sessions'], { LOOPWATCH_URL: `http://admin:hunter2@127.0.0.1:${new URL(tc.url).port}` });
    expect(creds.code).toBe(2);
    expect(creds.stderr).toMatch(/^loopwatch: LOOPWATCH_URL carries a user and password \(http:\/\/127\.0\.0\.1:\d+\): send a read key as LOOPWATCH_API_KEY/);
    expect(creds.stderr).not.toContain('hunter2');
    // a key a header cannot carry: said without the key (fetch's own error quoted it), exit 2
    const badKey = await cli(['sessions', '--url', tc.url], { LOOPWATCH_API_KEY: 'lw_secret\nX-Injected: 1' });
    expect(badKey.code).toBe(2);
    expect(badKey.stderr).toMatch(/^loopwatch: LOOPWATCH_API_KEY is not a valid key/);
    expect(badKey.stderr).not.toContain('lw_secret');
    // surrounding white space is trimmed, as fetch trims a header value (a key pasted with its line break)
    expect((await cli(['sessions', '--url', tc.url], { LOOPWATCH_API_KEY: ' lw_key\n' })).code).toBe(0);
    for (const cmd of [['status'], ['sessions'], ['findings'], ['models'], ['export', 's1']]) {
      const r = await cli([...cmd, '--url', webUrl]);
      expect(r.code, cmd[0]).toBe(3);
      expect(r.stderr).toMatch(/is not a Loopwatch collector .*check --url/);
      noStack(r.stderr);
    }
    // the OTLP endpoint copied as --url: a collector answers, at the wrong path
    const path = await cli(['sessions', '--url', `${tc.url}/v1/traces`]);
    expect(path.code).toBe(2);
    expect(path.stderr).toMatch(/is a path of a Loopwatch collector, not its address: --url is the collector's base URL/);
    // https:// to the plain collector, and its gRPC port: said as such, not as TLS or parser errors
    const https = await cli(['sessions', '--url', tc.url.replace('http://', 'https://')]);
    expect({ code: https.code, stderr: https.stderr }).toEqual({ code: 3, stderr: `loopwatch: the server at ${tc.url.replace('http://', 'https://')} does not speak TLS: use http:// (the collector serves HTTPS only with --tls-cert and --tls-key)\n` });
    const grpc = await cli(['sessions', '--url', `http://${tc.collector.grpcAddress}`]);
    expect(grpc.code).toBe(3);
    expect(grpc.stderr).toMatch(/does not answer HTTP\/1\.1: is it the OTLP\/gRPC port\? The CLI talks to the collector's HTTP port/);
  }, 240_000); // dozens of CLI processes one after another: minutes on a loaded machine

  it('a collector whose store is down: reads fail as the store\'s (503), not as if the CLI could not connect; demo does not take a server that is not a collector for a free address', async () => {
    // a port nothing listens on, for the ClickHouse server URL
    const free = createNetServer().listen(0, '127.0.0.1');
    await new Promise((r) => free.once('listening', r));
    const port = (free.address() as { port: number }).port;
    await new Promise((r) => free.close(r));
    const down = await startTestCollector({ clickhouse: { url: `http://127.0.0.1:${port}` }, detect: { enabled: false } });
    try {
      const r = await cli(['sessions', '--url', down.url]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/^loopwatch: 503 from \/api\/v1\/sessions: the collector could not answer \(.*ECONNREFUSED.*\): see the collector's log, and \/healthz for its store/);
    } finally {
      await down.close();
    }
    // it said "no collector: starting one", then failed to listen (exit 1)
    const demo = await cli(['demo', '--url', webUrl, '--timeout', '5']);
    expect(demo.code).toBe(3);
    expect(demo.stderr).toMatch(/is not a Loopwatch collector/);
    expect(demo.stderr).not.toMatch(/starting one/);
    // https:// with nothing there: the demo's own collector serves plain HTTP, so it says so instead of starting one
    const tls = await cli(['demo', '--url', `https://127.0.0.1:${port}`, '--timeout', '5']);
    expect(tls.code).toBe(2);
    expect(tls.stderr).toMatch(/^loopwatch: no collector at https:\/\/127\.0\.0\.1:\d+, and the demo starts one only on an http:\/\/ URL/);
  });

  it('a server that takes the connection and never answers: said within seconds, not after the read timeout', async () => {
    const silent = createNetServer(() => {}); // accepts, never answers
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      const r = await cli(['sessions', '--url', `http://127.0.0.1:${(silent.address() as { port: number }).port}`]);
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(/^loopwatch: no answer from .* to \/healthz within 10 s: not a Loopwatch collector, or one that is stuck/);
    } finally {
      silent.close();
    }
  }, 60_000);

  it('export to a file it cannot write: says so, and claims no success', async () => {
    for (const out of [join(tempDir('lw-cli-err-'), 'no-such-dir', 'x.jsonl'), tempDir('lw-cli-err-'), ...(existsSync('/dev/full') ? ['/dev/full'] : [])]) {
      const r = await cli(['export', hostile, '--url', tc.url, '-o', out]);
      expect(r.code, out).toBe(1);
      expect(r.stderr).toMatch(/^loopwatch: cannot write .*: (ENOENT|EISDIR|ENOSPC)/);
      expect(r.stdout).not.toMatch(/wrote/);
      noStack(r.stderr);
    }
  });

  it('bad flag values and a data directory it cannot make', async () => {
    // a usage error is bad configuration: exit 2, as cli.md says (commander's own default was 1)
    for (const offset of ['-5', 'abc', '1.5']) {
      const r = await cli(['session', hostile, '--url', tc.url, '--offset', offset]);
      expect(r.code, offset).toBe(2);
      expect(r.stderr).toMatch(/--offset .* must be a whole number, 0 or more/);
    }
    for (const args of [['up', '--port', 'abc'], ['up', '--port', '0x10'], ['up', '--retention-days', '1e3'], ['sessions', '-n', '0x10'], ['sessions', '--bogus'], ['no-such-command']]) {
      expect((await cli(args)).code, args.join(' ')).toBe(2);
    }
    expect(await cli(['--version'])).toMatchObject({ code: 0, stdout: `${JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')).version}\n` });
    // values the collector checks: exit 2 too, named as the flags are
    const since = await cli(['sessions', '--url', tc.url, '--since', 'bogus']);
    expect(since.code).toBe(2);
    expect(since.stderr).toMatch(/^loopwatch: --since: not a time: bogus/);
    const order = await cli(['models', '--url', tc.url, '--since', '1d', '--until', '7d']);
    expect(order.code).toBe(2);
    expect(order.stderr).toMatch(/^loopwatch: --since \(.*\) is after --until \(/);
    // a since past a day from now can hold nothing, in every list (findings answered "no findings")
    for (const cmd of ['sessions', 'models', 'findings']) {
      const future = await cli([cmd, '--url', tc.url, '--since', '2030-01-01']);
      expect(future.code, cmd).toBe(2);
      expect(future.stderr, cmd).toMatch(/^loopwatch: --since \(2030-01-01T00:00:00.000Z\) is more than a day in the future/);
    }
    const impossible = await cli(['sessions', '--url', tc.url, '--since', '2026-02-30']);
    expect(impossible.code).toBe(2);
    expect(impossible.stderr).toMatch(/^loopwatch: --since: not a date: 2026-02-30/);
    const limit = await cli(['sessions', '--url', tc.url, '-n', '5000']);
    expect(limit.code).toBe(2);
    expect(limit.stderr).toMatch(/^loopwatch: --limit: at most 1,000\n$/);
    const detector = await cli(['findings', '--url', tc.url, '--detector', 'repeats']);
    expect(detector.code).toBe(2);
    expect(detector.stderr).toMatch(/Allowed choices are degradation, error_loop, .*repeat, /);
    const role = await cli(['keys', 'generate', '--role', 'bogus']);
    expect(role.code).toBe(2);
    expect(role.stderr).toMatch(/Allowed choices are ingest, read/);
    const file = join(tempDir('lw-cli-err-'), 'a-file');
    writeFileSync(file, 'x');
    const up = await cli(['up', '--port', '0', '--grpc-port', 'off', '--data-dir', file]);
    expect(up.code).toBe(1);
    expect(up.stderr).toMatch(/^loopwatch: cannot use the data directory .*a-file \((EEXIST|ENOTDIR): a file is in the way, not a directory\)/);
    noStack(up.stderr);
    // a ClickHouse URL the client refuses (a parameter it does not know): said, not a stack trace
    const url = await cli(['up', '--port', '0', '--grpc-port', 'off', '--data-dir', tempDir('lw-cli-churl-'), '--clickhouse-url', 'http://127.0.0.1:9/?password=x']);
    expect(url.code).toBe(1);
    expect(url.stderr).toMatch(/^loopwatch: the ClickHouse URL is not usable: Unknown URL parameters: password/);
    noStack(url.stderr);
    // a password that is not valid percent-encoding: one line naming the part, not a URIError stack, and not the password
    const badPw = await cli(['up', '--port', '0', '--grpc-port', 'off', '--data-dir', tempDir('lw-cli-churl-'), '--clickhouse-url', 'http://u:SECRET%PW8@127.0.0.1:9/']);
    expect(badPw.code).toBe(1);
    expect(badPw.stderr).toMatch(/^loopwatch: the ClickHouse URL's password is not valid percent-encoding/);
    expect(badPw.stderr).not.toContain('SECRET');
    noStack(badPw.stderr);
  }, 240_000); // dozens of CLI processes one after another: minutes on a loaded machine

  it('a spool directory it cannot write: refuses to start (it would refuse every export)', async (ctx) => {
    const dataDir = tempDir('lw-cli-spool-');
    const spool = join(dataDir, 'spool');
    mkdirSync(spool);
    chmodSync(spool, 0o555);
    // root writes through permission bits: make it immutable instead, where the file system allows
    const writable = () => {
      try {
        writeFileSync(join(spool, 'probe'), '');
        rmSync(join(spool, 'probe'));
        return true;
      } catch {
        return false;
      }
    };
    let immutable = false;
    if (writable()) immutable = spawnSync('chattr', ['+i', spool]).status === 0;
    try {
      if (writable()) ctx.skip(); // no way to make a directory read-only here (root, and a file system without chattr)
      const up = await cli(['up', '--port', '0', '--grpc-port', 'off', '--data-dir', dataDir]);
      expect(up.code).toBe(1);
      expect(up.stderr).toMatch(/^loopwatch: cannot write the spool directory .*spool \((EACCES|EPERM)\): .*make it writable, or choose another --data-dir/);
      expect(existsSync(join(dataDir, 'collector.pid'))).toBe(false); // the next start is not told another collector holds it
      noStack(up.stderr);
    } finally {
      if (immutable) spawnSync('chattr', ['-i', spool]);
      chmodSync(spool, 0o755);
    }
  });

  it('prints ingested text with its control characters made visible, in every text view', async () => {
    await until(async () => {
      const r = await cli(['findings', '--json', '--url', tc.url, '--session', hostile]);
      return (JSON.parse(r.stdout) as { findings: unknown[] }).findings.length > 0;
    });
    const shown = '\\x1b[2J\\x07\\u{202e}';
    for (const cmd of [['sessions'], ['findings'], ['session', hostile], ['findings', '--session', hostile]]) {
      const r = await cli([...cmd, '--url', tc.url]); // NO_COLOR: the CLI writes no escape sequence of its own
      expect(r.code, cmd.join(' ')).toBe(0);
      expect(r.stdout, cmd.join(' ')).toContain(`evil${shown}session`.slice(0, 20));
      expect(r.stdout).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f\u202e]/);
    }
    // JSON keeps the data as it is
    const json = await cli(['findings', '--json', '--url', tc.url, '--session', hostile]);
    expect((JSON.parse(json.stdout) as { findings: Array<{ session_id: string }> }).findings[0]!.session_id).toBe(hostile);
  });

  it('status against a collector of another release (camelCase status keys): says so, exit 1, instead of printing undefined', async () => {
    const old = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json', 'loopwatch-version': '0.1.0' }).end(JSON.stringify({
      healthy: true, problems: [], store: { mode: 'embedded', location: '/x', schema: 'ready' }, retentionDays: 30, uptimeS: 5,
      listening: { otlpHttp: 'http://x/v1/traces', otlpGrpc: null, auth: false, tls: false, clientCertificates: false, tlsNotAfter: null },
      spool: { bytes: 0, segments: 0 }, spans: { received: { http: 0, grpc: 0 }, accepted: { http: 0, grpc: 0 }, rejected: { http: 0, grpc: 0 }, duplicate: { http: 0, grpc: 0 }, inserted: 0, dropped: 0 },
      detectors: { enabled: true, intervalMs: 5000, passes: 1, failedPasses: 0, newFindings: 0, lastPass: null },
    })));
    await new Promise<void>((r) => old.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(old.address() as { port: number }).port}`;
      const r = await cli(['status', '--url', url]);
      expect(r.code).toBe(1);
      expect(r.stdout).not.toContain('undefined');
      expect(r.stderr).toContain(`the collector at ${url} answered its status in another release's format`);
    } finally {
      await new Promise((r) => old.close(r));
    }
  });
});
