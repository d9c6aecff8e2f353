// Assembles the collector: store (embedded chDB or server) + migrations, spool + loader,
// the Hono app with OTLP ingest, health and metrics, and the HTTP listener.
import { join, resolve } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import type { CollectorConfig } from './config.js';
import { registerOtlpRoutes } from './ingest/otlp-http.js';
import { RetryCache } from './ingest/retry-cache.js';
import { createLogger, type Logger } from './logger.js';
import { Metrics } from './metrics.js';
import { Loader } from './spool/loader.js';
import { Spool } from './spool/spool.js';
import { openStore, type Store } from './store/client.js';
import { migrate } from './store/migrate.js';

export interface Collector {
  app: Hono;
  config: CollectorConfig;
  store: Store;
  spool: Spool;
  loader: Loader;
  metrics: Metrics;
  log: Logger;
  /** Where it listens, once listening. */
  url: string;
  listen(): Promise<string>;
  /** Waits until everything acknowledged so far is in the store. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export async function createCollector(config: CollectorConfig, log: Logger = createLogger(config.logLevel)): Promise<Collector> {
  const store = openStore(config);
  await migrate(store.client, { retentionDays: config.retentionDays });
  const spool = new Spool({ dir: resolve(join(config.dataDir, 'spool')), ...config.spool });
  spool.start();
  const metrics = new Metrics({
    loopwatch_spool_bytes: { help: 'acknowledged bytes not yet in the store', get: () => spool.heldBytes },
    loopwatch_spool_segments: { help: 'sealed spool segments waiting for the store (queue depth)', get: () => spool.sealedCount },
  });
  const loader = new Loader(spool, store.client, log, metrics);
  loader.start();

  const app = new Hono();
  app.onError((err, c) => {
    log.error({ err }, 'unhandled error in request');
    return c.json({ code: 13, message: 'internal error' }, 500);
  });
  app.get('/healthz', (c) =>
    c.json({ status: 'ok', store: store.mode, spool: { bytes: spool.heldBytes, segments: spool.sealedCount } }),
  );
  app.get('/metrics', async (c) => {
    c.header('Content-Type', metrics.registry.contentType);
    return c.body(await metrics.text());
  });
  registerOtlpRoutes(app, { config, spool, metrics, log, retryCache: new RetryCache({ maxEntries: 50_000, ttlMs: 10 * 60_000 }) });

  let server: ServerType | null = null;
  const collector: Collector = {
    app, config, store, spool, loader, metrics, log,
    url: '',
    listen() {
      return new Promise((resolveUrl, reject) => {
        const s = serve({ fetch: app.fetch, hostname: config.host, port: config.port }, (info) => {
          collector.url = `http://${info.family === 'IPv6' ? `[${info.address}]` : info.address}:${info.port}`;
          resolveUrl(collector.url);
        });
        s.once('error', reject);
        server = s;
      });
    },
    async flush() {
      await loader.drained();
    },
    async close() {
      if (server) {
        const s = server;
        await new Promise<void>((r) => s.close(() => r()));
        server = null;
      }
      await spool.close();
      await Promise.race([loader.drained(), new Promise((r) => setTimeout(r, 10_000))]);
      await loader.stop();
      await store.close();
    },
  };
  return collector;
}
