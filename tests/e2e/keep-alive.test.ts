// An exporter that reuses its connection after a pause longer than Node's default keep-alive
// (5 s: a batch processor exports every 5 s) finds it open: the collector keeps idle connections
// for KEEP_ALIVE_MS, so the client closes idle ones first. Before, the collector closed it at 5 s
// and a reuse at that moment failed the export ("other side closed", Python's RemoteDisconnected).
// Real HTTP on loopback, a keep-alive agent of one socket.
import { Agent, request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KEEP_ALIVE_MS } from '../../collector/src/collector.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';

let tc: TestCollector;
beforeAll(async () => {
  tc = await startTestCollector({ detect: { enabled: false } });
});
afterAll(async () => {
  await tc?.close();
});

function get(agent: Agent, path: string): Promise<{ status: number; reused: boolean; keepAlive: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${tc.url}${path}`, { agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode!, reused: req.reusedSocket, keepAlive: String(res.headers['keep-alive'] ?? '') }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('keep-alive', () => {
  it(`an idle connection stays open past 5 s (for ${KEEP_ALIVE_MS / 1000} s), and the server says so`, async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await get(agent, '/healthz');
      expect(first).toMatchObject({ status: 200, reused: false, keepAlive: `timeout=${KEEP_ALIVE_MS / 1000}` });
      await new Promise((r) => setTimeout(r, 6000));
      expect(await get(agent, '/healthz')).toMatchObject({ status: 200, reused: true });
    } finally {
      agent.destroy();
    }
  }, 30_000);
});
