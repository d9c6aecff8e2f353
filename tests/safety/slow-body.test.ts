// Slow and abandoned uploads: a body that does not all arrive within limits.bodyTimeoutMs is cut
// off, so uploads trickling a byte at a time cannot hold every ingest slot (64 of them locked all
// ingest out with 429s); a client that goes away mid-upload is counted as a refused request, not
// logged as an error of the collector's with a stack (one line per abandoned upload).
import { request } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCollector, type Collector } from '../../collector/src/collector.js';
import { loadConfig } from '../../collector/src/config.js';
import { postProto, range, toolSpansRequest } from './helpers.js';

let dataDir: string;
let collector: Collector;
let url: string;
const logged: string[] = [];

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'lw-safety-slow-'));
  const config = loadConfig({ port: 0, grpcPort: 'off', dataDir, detect: { enabled: false }, limits: { maxConcurrentRequests: 2, bodyTimeoutMs: 1500 } }, {});
  const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (logged.push(chunk.toString()), done()) });
  collector = await createCollector(config, pino({ level: 'info' }, sink));
  url = await collector.listen();
});
afterAll(async () => {
  await collector.close();
  rmSync(dataDir, { recursive: true, force: true });
});

/** Headers and one byte of a 1,000-byte body; the rest never comes. Resolves when the collector closes it. */
function trickle(): { closed: Promise<void>; abandon: () => void; answer: () => { status?: number; connection?: string } } {
  const u = new URL(`${url}/v1/traces`);
  const answer: { status?: number; connection?: string } = {};
  const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'content-type': 'application/x-protobuf', 'content-length': 1000 } }, (res) => {
    answer.status = res.statusCode;
    answer.connection = res.headers.connection;
    res.on('error', () => undefined);
    res.resume();
  });
  const closed = new Promise<void>((resolve) => {
    req.on('error', () => resolve());
    req.on('close', () => resolve());
  });
  req.write(Buffer.alloc(1));
  return { closed, abandon: () => req.destroy(), answer: () => answer };
}

const metric = async (name: string) => Number(new RegExp(`^${name}\\{transport="http"\\} (\\d+)$`, 'm').exec(await (await fetch(`${url}/metrics`)).text())?.[1] ?? NaN);
const inFlight = async () => Number(/^loopwatch_inflight_requests (\d+)$/m.exec(await (await fetch(`${url}/metrics`)).text())?.[1]);
async function until(cond: () => Promise<boolean>, what: string) {
  for (let i = 0; i < 400; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`never ${what}`);
}

describe('slow and abandoned uploads', () => {
  it('uploads that trickle hold the slots only until the body deadline; ingest is served again after it', async () => {
    const slow = [trickle(), trickle()];
    await until(async () => (await inFlight()) === 2, '2 in flight');
    const { body } = toolSpansRequest(range(81, 0, 5));
    expect((await postProto(url, body)).status).toBe(429);
    const started = Date.now();
    await Promise.all(slow.map((s) => s.closed)); // cut off by the collector
    expect(Date.now() - started).toBeLessThan(20_000);
    // told why: 408, and the connection closed (it was destroyed before the answer went out)
    expect(slow.map((s) => s.answer())).toEqual([{ status: 408, connection: 'close' }, { status: 408, connection: 'close' }]);
    await until(async () => (await inFlight()) === 0, '0 in flight');
    expect((await postProto(url, body)).status).toBe(200);
  });

  it('an upload its client abandons is a refused request, not an error with a stack', async () => {
    const before = await metric('loopwatch_requests_rejected_total');
    const t = trickle();
    await until(async () => (await inFlight()) === 1, '1 in flight');
    t.abandon();
    await until(async () => (await inFlight()) === 0, '0 in flight');
    await until(async () => (await metric('loopwatch_requests_rejected_total')) === before + 1, 'counted');
    expect(logged.filter((l) => /"level":50/.test(l))).toEqual([]);
  });
});
