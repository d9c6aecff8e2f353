// A ClickHouse server URL that names the database in its path and the user in its user info:
// the collector says and uses that database, the client gets them as options (no plain-text
// warnings between the JSON log lines), and a URL at odds with LOOPWATCH_CLICKHOUSE_DATABASE is
// a start error. An HTTP server on loopback stands in for ClickHouse and records what it is sent
// (no ClickHouse server runs on these machines).
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { StartError } from '../../collector/src/config.js';
import { openStore } from '../../collector/src/store/client.js';

let server: Server;
let port = 0;
const seen: { url: string; headers: IncomingHttpHeaders }[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end(''));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

const config = (url: string, database = 'default') => ({ dataDir: '/nonexistent', clickhouse: { url, user: 'default', password: '', database } });

describe('a ClickHouse server URL', () => {
  it('with a database path and user info: that database named and used, the user sent, no client warnings', async () => {
    const warn = vi.spyOn(console, 'warn');
    const store = openStore(config(`http://loop%40watch:s%3Acret@127.0.0.1:${port}/mydb`));
    try {
      expect(store.location).toBe(`http://127.0.0.1:${port}/mydb`);
      await store.client.command({ query: 'SELECT 1' });
      const last = seen[seen.length - 1]!;
      expect(new URL(last.url, 'http://x').searchParams.get('database')).toBe('mydb');
      expect(new URL(last.url, 'http://x').pathname).toBe('/');
      const basic = Buffer.from(String(last.headers.authorization).replace(/^Basic /, ''), 'base64').toString();
      expect(basic).toBe('loop@watch:s:cret');
      expect(warn).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
      await store.close();
    }
  });

  it('names the database once: the path and LOOPWATCH_CLICKHOUSE_DATABASE at odds, or a path that is not a name, is a start error', () => {
    expect(() => openStore(config(`http://127.0.0.1:${port}/mydb`, 'other'))).toThrow(StartError);
    expect(() => openStore(config(`http://127.0.0.1:${port}/mydb`, 'other'))).toThrow(/names the database mydb and LOOPWATCH_CLICKHOUSE_DATABASE other/);
    expect(() => openStore(config(`http://127.0.0.1:${port}/my-db;drop`))).toThrow(/must be a plain identifier/);
    const same = openStore(config(`http://127.0.0.1:${port}/mydb`, 'mydb'));
    expect(same.location).toBe(`http://127.0.0.1:${port}/mydb`);
    void same.close();
  });
});
