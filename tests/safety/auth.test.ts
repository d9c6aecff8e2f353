// (6) API keys: ingest keys for POST /v1/traces, read keys for /api/* and /metrics, /healthz
// open; configured only as SHA-256 hashes; never in the logs (trace level); and no start beyond
// loopback without keys. A real collector process on loopback.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKey, hashKey, isLoopbackHost, parseKeysFile } from '../../collector/src/auth.js';
import { ConfigError, loadConfig } from '../../collector/src/config.js';
import { decodeRpcStatus } from '../../collector/src/ingest/otlp-proto.js';
import { CLI, ensureBuilt, postProto, range, startProcess, stopProcess, toolSpansRequest, type CollectorProcess } from './helpers.js';

const INGEST_KEY = generateKey();
const READ_KEY = generateKey();
const OTHER_KEY = generateKey();
let dataDir: string;
let p: CollectorProcess;

beforeAll(async () => {
  ensureBuilt();
  dataDir = mkdtempSync(join(tmpdir(), 'lw-safety-auth-'));
  const keysFile = join(dataDir, 'keys');
  writeFileSync(keysFile, `# loopwatch API keys (SHA-256)\ningest ${hashKey(INGEST_KEY)}  # agents\nread sha256:${hashKey(READ_KEY).toUpperCase()}\n`);
  p = await startProcess(dataDir, { LOOPWATCH_LOG_LEVEL: 'trace' }, ['--keys-file', keysFile]);
});
afterAll(async () => {
  if (p) await stopProcess(p);
  rmSync(dataDir, { recursive: true, force: true });
});

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

describe('auth', () => {
  it('POST /v1/traces needs an ingest key: 401 (OTLP status in the request encoding) without one', async () => {
    const { body } = toolSpansRequest(range(40, 0, 10));
    for (const headers of [{}, bearer(OTHER_KEY), bearer(READ_KEY), { authorization: `Basic ${INGEST_KEY}` }, { authorization: INGEST_KEY }]) {
      const res = await postProto(p.url, body, headers);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      const status = decodeRpcStatus(new Uint8Array(await res.arrayBuffer()));
      expect(status.code).toBe(16);
      expect(status.message).toMatch(/ingest key/);
    }
    const json = await fetch(`${p.url}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(json.status).toBe(401);
    expect(((await json.json()) as { message: string }).message).toMatch(/Authorization: Bearer/);
    expect((await postProto(p.url, body, bearer(INGEST_KEY))).status).toBe(200);
    expect((await postProto(p.url, body, { authorization: `bearer   ${INGEST_KEY}` })).status).toBe(200);
  });

  it('/metrics and /api/* need a read key; /healthz is open', async () => {
    expect((await fetch(`${p.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${p.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${p.url}/metrics`, { headers: bearer(INGEST_KEY) })).status).toBe(401);
    const m = await fetch(`${p.url}/metrics`, { headers: bearer(READ_KEY) });
    expect(m.status).toBe(200);
    expect(await m.text()).toMatch(/loopwatch_requests_unauthorized_total\{transport="http"\} [1-9]/);
    for (const path of ['/api/v1/sessions', '/api/anything']) {
      expect((await fetch(`${p.url}${path}`)).status).toBe(401);
      expect((await fetch(`${p.url}${path}`, { headers: bearer(INGEST_KEY) })).status).toBe(401);
      expect((await fetch(`${p.url}${path}`, { headers: bearer(READ_KEY) })).status).not.toBe(401);
    }
  });

  it('keys never appear in the logs (trace level), nor does the CLI print them', async () => {
    await fetch(`${p.url}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf', ...bearer(OTHER_KEY) }, body: 'x' });
    const out = p.output();
    expect(out).toMatch(/request without a valid API key refused/);
    for (const key of [INGEST_KEY, READ_KEY, OTHER_KEY]) {
      expect(out).not.toContain(key);
      expect(out).not.toContain(key.slice(3, 15));
    }
  });

  it('demo against a collector with keys: a missing read key is said before the sample agent runs', () => {
    const r = spawnSync(process.execPath, [CLI, 'demo', '--url', p.url, '--timeout', '5'], { env: { ...process.env, LOOPWATCH_API_KEY: '' }, encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(4);
    expect(r.stderr).toMatch(/set LOOPWATCH_API_KEY to a read key/);
    expect(r.stderr).not.toMatch(/running the sample agent/);
  });

  it('the up banner says how to send the keys when keys are on (run as it said, the agent and the commands got 401)', async () => {
    const child = spawn(process.execPath, [CLI, 'up', '--port', '0', '--grpc-port', 'off', '-d', join(dataDir, 'banner')], {
      env: { ...process.env, LOOPWATCH_INGEST_KEY_HASHES: hashKey(INGEST_KEY), LOOPWATCH_READ_KEY_HASHES: hashKey(READ_KEY), LOOPWATCH_KEYS_FILE: '' },
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = once(child, 'exit');
    for (let i = 0; i < 600 && !out.includes('Then:'); i++) await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGTERM');
    await exited;
    expect(out).toContain('OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer <ingest key>"');
    expect(out).toMatch(/Then: LOOPWATCH_API_KEY=<read key> npx loopwatch findings -f/);
    for (const key of [INGEST_KEY, READ_KEY]) expect(out).not.toContain(key);
  });

  it('refuses to start beyond loopback without keys, with a clear message', () => {
    const r = spawnSync(process.execPath, [CLI, 'up', '--host', '0.0.0.0', '--port', '0', '-d', join(dataDir, 'nokeys')], {
      env: { ...process.env, LOOPWATCH_INGEST_KEY_HASHES: '', LOOPWATCH_READ_KEY_HASHES: '', LOOPWATCH_KEYS_FILE: '' },
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/refusing to listen on 0\.0\.0\.0 \(beyond loopback\) without API keys/);
    expect(isLoopbackHost('127.0.0.1') && isLoopbackHost('::1') && isLoopbackHost('localhost')).toBe(true);
    expect(isLoopbackHost('0.0.0.0') || isLoopbackHost('::') || isLoopbackHost('192.168.1.2')).toBe(false);
  });

  it('configuration takes hashes only: a clear-text key is refused without being echoed', () => {
    const env = { LOOPWATCH_INGEST_KEY_HASHES: `${hashKey('a')}, sha256:${hashKey('b')}`, LOOPWATCH_READ_KEY_HASHES: hashKey('c') };
    const config = loadConfig({}, env);
    expect(config.auth.ingestKeyHashes).toEqual([hashKey('a'), hashKey('b')]);
    expect(config.auth.readKeyHashes).toEqual([hashKey('c')]);
    let err: unknown;
    try {
      loadConfig({}, { LOOPWATCH_INGEST_KEY_HASHES: INGEST_KEY });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/SHA-256 hash of the key/);
    expect((err as Error).message).not.toContain(INGEST_KEY);
    expect(() => parseKeysFile(`ingest ${INGEST_KEY}\n`)).toThrow(/SHA-256/);
    expect(() => parseKeysFile(`admin ${hashKey('x')}\n`)).toThrow(/expected "ingest <sha256-hex>"/);
    const hashed = spawnSync(process.execPath, [CLI, 'keys', 'hash'], { input: 'secret\n', encoding: 'utf8' });
    expect(hashed.stdout.trim()).toBe(hashKey('secret'));
    const made = JSON.parse(spawnSync(process.execPath, [CLI, 'keys', 'generate', '--role', 'read', '--json'], { encoding: 'utf8' }).stdout) as Record<string, string>;
    expect(made.hash).toBe(hashKey(made.key!));
    expect(made.keys_file_line).toBe(`read ${made.hash}`);
    expect(parseKeysFile(`${made.keys_file_line}\n`)).toBeDefined();
  });
});
