// Assembles the collector: store (embedded chDB or server) + migrations, spool + loader,
// the Hono app with OTLP ingest, health and metrics, and the HTTP listener.
import { join, resolve } from 'node:path';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { serve, type ServerType } from '@hono/node-server';
import { Hono } from 'hono';
import { ConfigError, StartError, type CollectorConfig } from './config.js';
import { registerApiRoutes } from './api/routes.js';
import { TraceExport } from './ingest/export-request.js';
import { registerOtlpRoutes } from './ingest/otlp-http.js';
import { listenOtlpGrpc, type GrpcListener } from './ingest/otlp-grpc.js';
import { RetryCache } from './ingest/retry-cache.js';
import { createAuth, isLoopbackHost, registerAuth } from './auth.js';
import { InFlight } from './ingest/inflight.js';
import { atMostEvery, createLogger, type Logger } from './logger.js';
import { DetectorScheduler } from './detect/scheduler.js';
import { checkPricesOverride, loadModelPrices } from './detect/prices.js';
import { Metrics } from './metrics.js';
import { Loader } from './spool/loader.js';
import { checkSpoolWritable, Spool } from './spool/spool.js';
import { isDiskFull, openStore, queryRows, type Store } from './store/client.js';
import { migrate, restoreMissingObjects } from './store/migrate.js';
import { applyRetention } from './store/retention.js';
import { lockDataDir } from './store/data-dir-lock.js';
import { SchemaSetup } from './store/schema-setup.js';
import { collectorStatus } from './status.js';
import { packageVersion } from './paths.js';
import { httpsServerOptions, loadTls, ReloadableServerCredentials, secureContextOptions, watchTls, type TlsWatch } from './tls.js';

export interface Collector {
  app: Hono;
  config: CollectorConfig;
  store: Store;
  spool: Spool;
  loader: Loader;
  metrics: Metrics;
  /** Loop and waste detector schedule (started by listen() when config.detect.enabled). */
  detectors: DetectorScheduler;
  log: Logger;
  /** Where it listens, once listening. */
  url: string;
  /** Where OTLP/gRPC is taken (host:port), once listening; empty when config.grpcPort is off. */
  grpcAddress: string;
  /** Requests must carry an API key (keys are configured). */
  keysRequired: boolean;
  listen(): Promise<string>;
  /** Reads the TLS certificate and key files again now (they are also watched); the error when they cannot be used (the old pair stays). */
  reloadTls(): Error | null;
  /** Waits until everything acknowledged so far is in the store. */
  flush(): Promise<void>;
  close(): Promise<void>;
}

// Node's default (16 KiB) answered 431 to the URL of a session id of a few thousand characters,
// which the read API takes (4,096, up to 9 bytes each in a URL)
const MAX_HEADER_BYTES = 64 * 1024;
/** How long an idle keep-alive connection is kept: past the idle timeouts of the exporters that reuse connections. */
export const KEEP_ALIVE_MS = 65_000;

export async function createCollector(config: CollectorConfig, log: Logger = createLogger(config.logLevel)): Promise<Collector> {
  // an operator's price file is read when the schema is set up: a bad one said at start, in one
  // line, not a stack trace from the set-up (or, with a server, retried as if the store were down)
  try {
    checkPricesOverride();
  } catch (err) {
    throw new ConfigError(`LOOPWATCH_MODEL_PRICES: ${(err as Error).message}`);
  }
  const auth = createAuth(config); // refuses to listen beyond loopback without keys
  const tls = loadTls(config); // a certificate or key that cannot be used fails here, before the store opens
  const grpcCredentials = tls ? new ReloadableServerCredentials(tls) : null;
  let tlsWatch: TlsWatch | null = null;
  if (!tls && !isLoopbackHost(config.host)) {
    log.warn({ host: config.host }, 'listening beyond loopback without TLS: API keys and spans cross the network in clear (set --tls-cert and --tls-key, or terminate TLS in a proxy in front)');
  }
  // one collector per data directory (the spool, the embedded database); a failed start leaves the
  // pid file of a process that ends, which the next start takes over
  const dataDirLock = lockDataDir(config.dataDir);
  const spoolDir = resolve(join(config.dataDir, 'spool'));
  let store: Store;
  try {
    try {
      checkSpoolWritable(spoolDir);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      throw new StartError(`cannot write the spool directory ${spoolDir} (${e.code ?? e.message}): acknowledged spans wait there until the store has them; make it writable, or choose another --data-dir`);
    }
    store = openStore(config);
  } catch (err) {
    dataDirLock.release(); // (a store another process holds: the pid file it found must not name this one)
    throw err;
  }
  // A server that is down must not stop ingest: the spool takes it, the schema follows later.
  let storeSchemaVersion: number | null = null;
  const schema = new SchemaSetup(
    async () => {
      const { applied, remade, fresh, version } = await migrate(store.client, { retentionDays: config.retentionDays });
      if (applied.length > 0) {
        // an upgrade is said; a new store's first start is not news
        // (the version the store is at: a migration numbered below one applied before can come last)
        log[fresh ? 'debug' : 'info']({ migrations: applied.map((m) => `${String(m.version).padStart(3, '0')}_${m.name}`) },
          fresh ? `store created at schema version ${version}` : `store schema migrated to version ${version} (${applied.length} migration${applied.length === 1 ? '' : 's'} applied)`);
      }
      storeSchemaVersion = version;
      // the embedded store keeps UTC (store/client.ts); a server keeps its own zone, which the
      // findings' times and the degradation days read as UTC
      if (store.mode === 'server') {
        const [zone] = await queryRows<{ tz: string }>(store.client, 'SELECT timezone() AS tz');
        if (zone && !['UTC', 'Etc/UTC', 'GMT', 'Etc/GMT', 'Universal', 'Zulu'].includes(zone.tz)) {
          log.warn({ timezone: zone.tz }, `the ClickHouse server's time zone is ${zone.tz}, not UTC: the loop spans written into traces are placed by the offset off (their times are read as UTC); run the server in UTC (<timezone>UTC</timezone>)`);
        }
      }
      // (in a new store, views made before a function they call was made again: part of making it)
      if (remade.length > 0) {
        log[fresh ? 'debug' : 'info']({ objects: remade },
          `views and functions made again to this release's definitions: ${remade.join(', ')} (a materialized view made again applies to spans from now on)`);
      }
      // a check, not a migration: when it cannot run (a user without rights on system tables) the start goes on
      await restoreMissingObjects(store.client, { retentionDays: config.retentionDays }).then(
        ({ restored, failed }) => {
          if (restored.length > 0) {
            log.error({ objects: restored },
              `the store lacked ${restored.join(', ')}, which its migrations made: made again (a materialized view made again carries only spans from now on)`);
          }
          for (const [name, error] of Object.entries(failed)) log.error({ object: name, error }, `the store lacks ${name}, which its migrations made, and it was not made again`);
        },
        (err: unknown) => log.warn({ err }, 'could not check that the store has every table, view and function its migrations made'),
      );
      const changed = await applyRetention(store.client, config.retentionDays);
      if (changed.length > 0) {
        log.info({ tables: changed.map((c) => c.table), fromDays: [...new Set(changed.map((c) => c.fromDays))], toDays: config.retentionDays },
          `retention changed to ${config.retentionDays} days`);
      }
      await loadModelPrices(store.client);
    },
    log,
    { retryInBackground: store.mode === 'server' },
  );
  try {
    await schema.start();
  } catch (err) {
    // the embedded store cannot be set up (a server that is down is retried in the background):
    // one line that says what to do, and the data directory let go
    await store.close().catch(() => undefined);
    dataDirLock.release();
    if (err instanceof StartError) throw err;
    const first = String((err as Error).message ?? err).split('\n')[0]!;
    const full = isDiskFull(first);
    throw new StartError(`the store in ${resolve(config.dataDir)} could not be set up (${first})${full ? ': the disk of the data directory is full; free space on it (or choose another --data-dir) and start again' : ''}`);
  }
  const spool = new Spool({ dir: spoolDir, ...config.spool });
  spool.start();
  const inflight = new InFlight({ maxRequests: config.limits.maxConcurrentRequests, maxBytes: config.limits.maxInFlightBytes });
  const metrics = new Metrics({
    loopwatch_spool_bytes: { help: 'acknowledged bytes not yet in the store', get: () => spool.heldBytes },
    loopwatch_spool_segments: { help: 'sealed spool segments waiting for the store (queue depth)', get: () => spool.sealedCount },
    loopwatch_inflight_requests: { help: 'ingest requests being read, decoded or spooled', get: () => inflight.requests },
    loopwatch_inflight_bytes: { help: 'request bytes held by ingest requests in flight', get: () => inflight.bytes },
    loopwatch_schema_ready: { help: '1 once migrations are applied (the loader waits for it)', get: () => (schema.isReady ? 1 : 0) },
  });
  const loader = new Loader(spool, store.client, log, metrics);
  let closing = false;
  void schema.ready.then(() => {
    if (!closing) loader.start();
  });
  const detectors = new DetectorScheduler(store.client, log, metrics, { intervalMs: config.detect.intervalMs, run: { params: config.detect.settings } });

  const app = new Hono();
  app.onError((err, c) => {
    log.error({ err }, 'unhandled error in request');
    return c.json({ code: 13, message: 'internal error' }, 500);
  });
  // on every answer: the CLI tells a collector from another server at its --url by it (a proxy keeps it, unlike Server)
  app.use('*', async (c, next) => {
    await next();
    c.header('Loopwatch-Version', packageVersion);
  });
  // an unknown route, or a known one with another method (Hono answers both 404): JSON like every other answer
  app.notFound((c) => c.json({ error: 'not_found', message: `no route ${c.req.method} ${c.req.path}` }, 404));
  registerAuth(app, auth, { log, metrics }); // before any route
  const spoolDepth = () => ({ bytes: spool.heldBytes, segments: spool.sealedCount });
  app.get('/healthz', (c) =>
    c.json({ status: 'ok', store: store.mode, schema: schema.isReady ? 'ready' : 'pending', auth: auth.enabled, tls: tls !== null, client_certificates: auth.clientCertificates, grpc: collector.grpcAddress || null, spool: spoolDepth() }),
  );
  app.get('/metrics', async (c) => {
    c.header('Content-Type', metrics.registry.contentType);
    return c.body(await metrics.text());
  });
  const startedAt = Date.now();
  const status = () =>
    collectorStatus({
      metrics, detectors, store: { mode: store.mode, location: store.location }, schemaReady: () => schema.isReady, schemaVersion: () => storeSchemaVersion,
      spool: spoolDepth,
      listening: () => ({ otlp_http: collector.url ? `${collector.url}/v1/traces` : '', otlp_grpc: collector.grpcAddress || null, auth: auth.enabled, tls: tls !== null,
        client_certificates: auth.clientCertificates, tls_not_after: tls ? (tlsWatch?.current() ?? tls).notAfter.toISOString() : null }),
      retentionDays: config.retentionDays, detect: { enabled: config.detect.enabled, intervalMs: config.detect.intervalMs }, startedAt,
    });
  registerApiRoutes(app, { client: store.client, log, status }); // read API for the CLI: /api/v1/*
  // one export path for every transport: the same retry cache, admission bound and spool
  const exports = new TraceExport({ config, spool, metrics, log, retryCache: new RetryCache({ maxEntries: 50_000, ttlMs: 10 * 60_000 }) });
  registerOtlpRoutes(app, { config, metrics, exports, inflight, log });
  let grpc: GrpcListener | null = null;

  let server: ServerType | null = null;
  // An OTLP/gRPC exporter (the default of several languages' SDKs) pointed at this OTLP/HTTP
  // port opens HTTP/2, and on its side sees only a dropped connection: say here what to change.
  const h2WarnDue = atMostEvery(60_000);
  const onClientError = (err: Error & { code?: string }, socket: Duplex): void => {
    if (err.code === 'HPE_PAUSED_H2_UPGRADE') {
      metrics.inc('loopwatch_requests_rejected_total', 'http');
      if (h2WarnDue()) {
        const grpcHint = collector.grpcAddress ? `send OTLP/gRPC to ${collector.grpcAddress}, or ` : '';
        log.warn(
          { remote: (socket as Duplex & { remoteAddress?: string }).remoteAddress },
          `a client spoke HTTP/2 (an OTLP/gRPC exporter?) to the OTLP/HTTP port: ${grpcHint}set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf in the exporting application (said at most once a minute)`,
        );
      }
      socket.destroy();
      return;
    }
    // otherwise what Node does without a listener
    if (socket.writable && (socket as Duplex & { bytesWritten?: number }).bytesWritten === 0) {
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
      socket.write(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`);
    }
    socket.destroy(err);
  };
  // A client that speaks plain HTTP to the TLS port (an endpoint written http://) gets a
  // dropped connection and retries forever: say here what to change.
  const plainWarnDue = atMostEvery(60_000);
  const onTlsClientError = (err: Error & { code?: string }, socket: Duplex): void => {
    if (err.code !== 'ERR_SSL_HTTP_REQUEST') return; // other failed handshakes: the client says why
    metrics.inc('loopwatch_requests_rejected_total', 'http');
    if (plainWarnDue()) {
      log.warn(
        { remote: (socket as Duplex & { remoteAddress?: string }).remoteAddress },
        `a client spoke plain HTTP to the TLS port: use https:// in its endpoint (OTEL_EXPORTER_OTLP_ENDPOINT=${collector.url}) (said at most once a minute)`,
      );
    }
  };
  const collector: Collector = {
    app, config, store, spool, loader, metrics, log, detectors,
    keysRequired: auth.enabled,
    url: '',
    grpcAddress: '',
    async listen() {
      if (config.grpcPort !== null) {
        grpc = await listenOtlpGrpc({ config, exports, inflight, auth, metrics, log, tls: grpcCredentials }, config.grpcPort);
        collector.grpcAddress = grpc.address;
      }
      return new Promise((resolveUrl, reject) => {
        const listenOn = { fetch: app.fetch, hostname: config.host, port: config.port };
        const onListening = (info: AddressInfo) => {
          collector.url = `${tls ? 'https' : 'http'}://${info.family === 'IPv6' ? `[${info.address}]` : info.address}:${info.port}`;
          if (config.detect.enabled) {
            void schema.ready.then(() => {
              if (!closing) detectors.start();
            });
          }
          resolveUrl(collector.url);
        };
        const s = tls
          ? serve({ ...listenOn, createServer: createHttpsServer, serverOptions: { ...httpsServerOptions(tls), maxHeaderSize: MAX_HEADER_BYTES } }, onListening)
          : serve({ ...listenOn, serverOptions: { maxHeaderSize: MAX_HEADER_BYTES } }, onListening);
        if (tls) {
          s.on('tlsClientError', onTlsClientError);
          // a renewed certificate: new connections on both listeners get it
          tlsWatch = watchTls(config, tls, (next) => {
            (s as HttpsServer).setSecureContext(secureContextOptions(next));
            grpcCredentials?.replace(next);
          }, log, config.tls.watchIntervalMs);
        }
        s.once('error', (err: NodeJS.ErrnoException) => {
          if (err.code !== 'EADDRINUSE' && err.code !== 'EACCES') return reject(err);
          const why = err.code === 'EADDRINUSE' ? 'in use: another collector?' : 'not allowed';
          reject(new StartError(`cannot listen on ${config.host}:${config.port} (${why}): choose another with --port (LOOPWATCH_PORT)`));
        });
        s.on('clientError', onClientError);
        // Idle keep-alive connections are kept past the exporters' own idle timeouts (Go 90 s,
        // Python's requests none, a batch every 5 s): with Node's 5 s, an exporter reusing a
        // connection just as the collector closed it failed that export (Python: RemoteDisconnected;
        // an overload test under load: "other side closed"). The client then closes idle ones
        // first, as behind a load balancer. Shutdown closes idle connections at once.
        const http = s as unknown as { keepAliveTimeout: number; headersTimeout: number };
        http.keepAliveTimeout = KEEP_ALIVE_MS;
        http.headersTimeout = KEEP_ALIVE_MS + 1000; // past the keep-alive wait, as Node advises
        server = s;
      });
    },
    async flush() {
      await loader.drained();
    },
    reloadTls() {
      return tlsWatch?.reload() ?? null;
    },
    async close() {
      closing = true;
      tlsWatch?.stop();
      schema.stop();
      const grpcClosed = grpc?.close();
      grpc = null;
      if (server) {
        const s = server;
        // Stop accepting; requests in progress finish (and are acknowledged or not) first. A
        // client that keeps a connection busy past the grace period is cut off, unacknowledged.
        const cut = setTimeout(() => (s as { closeAllConnections?: () => void }).closeAllConnections?.(), 5_000);
        await new Promise<void>((r) => s.close(() => r()));
        clearTimeout(cut);
        server = null;
      }
      await grpcClosed;
      await detectors.stop();
      await spool.close();
      await Promise.race([loader.drained(), new Promise((r) => setTimeout(r, 10_000))]);
      await loader.stop();
      await store.close();
      dataDirLock.release();
    },
  };
  return collector;
}
