// API keys: `Authorization: Bearer <key>`. Keys are configured only as SHA-256 hashes (config,
// LOOPWATCH_*_KEY_HASHES, or a keys file), compared in constant time, and never logged: the
// presented key is hashed and dropped, and log objects redact `authorization` (logger.ts).
//
// Roles: ingest keys for POST /v1/*, read keys for /api/* and /metrics; /healthz is open.
// Auth is on whenever any key is configured, and required whenever the collector listens
// beyond loopback: it refuses to start there without keys.
//
// Client certificates (--tls-client-ca, tls.ts): POST /v1/* (and gRPC export) then also needs a
// certificate signed by one of those CAs, checked before the key; with no ingest keys
// configured, the certificate alone admits an exporter.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Context, MiddlewareHandler } from 'hono';
import type { HttpBindings } from '@hono/node-server';
import type { TLSSocket } from 'node:tls';
import { ConfigError, keyHash, type CollectorConfig } from './config.js';
import { atMostEvery, type Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import { encodeRpcStatus } from './ingest/otlp-proto.js';
import { clientCertificateProblem } from './tls.js';

export type Role = 'ingest' | 'read';

/** SHA-256 of a key as 64 lower-case hex digits: what the configuration holds. */
export function hashKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** A new random key (`lw_` + 32 bytes base64url). */
export function generateKey(): string {
  return `lw_${randomBytes(32).toString('base64url')}`;
}

/** Whether an address only accepts connections from this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h) || h === '::ffff:127.0.0.1';
}

/** Parses a keys file: `ingest|read <sha256-hex>` per line, `#` comments, blank lines. */
export function parseKeysFile(text: string, path = 'keys file'): { ingest: string[]; read: string[] } {
  const out = { ingest: [] as string[], read: [] as string[] };
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) return;
    const [role, hash, extra] = line.split(/\s+/);
    if ((role !== 'ingest' && role !== 'read') || !hash || extra !== undefined) {
      throw new ConfigError(`${path}:${i + 1}: expected "ingest <sha256-hex>" or "read <sha256-hex>"`);
    }
    const parsed = keyHash.safeParse(hash);
    if (!parsed.success) throw new ConfigError(`${path}:${i + 1}: ${parsed.error.issues[0]?.message ?? 'invalid hash'}`);
    out[role].push(parsed.data);
  });
  return out;
}

export class Auth {
  private readonly hashes: Record<Role, Buffer[]>;

  /**
   * clientCertificates: exporters must present a client certificate (--tls-client-ca), checked
   * before the key (clientCertificateProblem); with no ingest keys it is all an exporter needs.
   */
  constructor(ingestHashes: string[], readHashes: string[], readonly clientCertificates = false) {
    this.hashes = {
      ingest: [...new Set(ingestHashes)].map((h) => Buffer.from(h, 'hex')),
      read: [...new Set(readHashes)].map((h) => Buffer.from(h, 'hex')),
    };
  }

  /** Whether requests must carry a key at all. */
  get enabled(): boolean {
    return this.hashes.ingest.length > 0 || this.hashes.read.length > 0;
  }

  /** Whether the Authorization header value carries a key of this role. */
  allows(role: Role, authorization: string | undefined): boolean {
    if (!this.enabled) return true;
    if (role === 'ingest' && this.clientCertificates && this.hashes.ingest.length === 0) return true;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!m) return false;
    const presented = createHash('sha256').update(m[1]!, 'utf8').digest();
    let ok = false;
    // Every configured hash is compared (no early exit): timing says nothing about which matched.
    for (const h of this.hashes[role]) ok = timingSafeEqual(h, presented) || ok;
    return ok;
  }

  /** Hono middleware that answers 401 unless the request carries a key of this role. */
  middleware(role: Role, deps: { log: Logger; metrics?: Metrics }): MiddlewareHandler {
    const warnDue = atMostEvery(60_000); // a client with a wrong key retries every few seconds; the metric counts each
    return async (c, next) => {
      if (this.allows(role, c.req.header('authorization'))) return next();
      deps.metrics?.inc('loopwatch_requests_unauthorized_total', 'http');
      // Never the header: only where and what was refused.
      if (warnDue()) deps.log.warn({ path: c.req.path, method: c.req.method, role }, 'request without a valid API key refused (401) (said at most once a minute per role)');
      c.header('WWW-Authenticate', 'Bearer realm="loopwatch"');
      return refused(c, 401, `missing or invalid API key: send "Authorization: Bearer <key>" with ${role === 'ingest' ? 'an ingest' : 'a read'} key`);
    };
  }

  /** Hono middleware that answers 403 when the connection has no client certificate the collector trusts. */
  certificateMiddleware(deps: { log: Logger; metrics?: Metrics }): MiddlewareHandler {
    const warnDue = atMostEvery(60_000); // an exporter without its certificate sends every few seconds
    return async (c, next) => {
      const problem = clientCertificateProblem((c.env as HttpBindings | undefined)?.incoming?.socket as TLSSocket | undefined);
      if (problem === null) return next();
      deps.metrics?.inc('loopwatch_requests_unauthorized_total', 'http');
      if (warnDue()) deps.log.warn({ path: c.req.path, method: c.req.method }, `export refused (403): ${problem} (said at most once a minute)`);
      return refused(c, 403, problem);
    };
  }
}

/** The refusal in the request's encoding: an OTLP Status (code 16, UNAUTHENTICATED) in protobuf or JSON. */
function refused(c: Context, status: 401 | 403, message: string): Response {
  const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/x-protobuf' || type === 'application/protobuf') {
    c.header('Content-Type', 'application/x-protobuf');
    return c.body(encodeRpcStatus(16, message) as Uint8Array<ArrayBuffer>, status);
  }
  return c.json({ code: 16, message }, status);
}

/**
 * The collector's Auth from its configuration (inline hashes plus the keys file). Throws
 * ConfigError when the collector would listen beyond loopback without any key. With auth on,
 * a role without keys admits nobody.
 */
export function createAuth(config: Pick<CollectorConfig, 'host' | 'auth' | 'tls'>): Auth {
  const ingest = [...config.auth.ingestKeyHashes];
  const read = [...config.auth.readKeyHashes];
  if (config.auth.keysFile) {
    let text: string;
    try {
      text = readFileSync(config.auth.keysFile, 'utf8');
    } catch (err) {
      throw new ConfigError(`cannot read keys file ${config.auth.keysFile}: ${(err as Error).message}`);
    }
    const fromFile = parseKeysFile(text, config.auth.keysFile);
    ingest.push(...fromFile.ingest);
    read.push(...fromFile.read);
  }
  const auth = new Auth(ingest, read, Boolean(config.tls.clientCaFile));
  if (!isLoopbackHost(config.host) && !auth.enabled) {
    throw new ConfigError(
      `refusing to listen on ${config.host} (beyond loopback) without API keys: configure ingest and read key hashes ` +
        '(LOOPWATCH_INGEST_KEY_HASHES / LOOPWATCH_READ_KEY_HASHES, or LOOPWATCH_KEYS_FILE; `npx loopwatch keys generate` makes one), ' +
        'or listen on 127.0.0.1',
    );
  }
  return auth;
}

/** Registers auth on an app, before any route: client certificates and ingest keys for /v1/*, read keys for /api/* and /metrics. */
export function registerAuth(app: { use: (path: string, h: MiddlewareHandler) => unknown }, auth: Auth, deps: { log: Logger; metrics?: Metrics }): void {
  if (auth.clientCertificates) app.use('/v1/*', auth.certificateMiddleware(deps));
  if (!auth.enabled) return;
  const ingest = auth.middleware('ingest', deps);
  const read = auth.middleware('read', deps);
  app.use('/v1/*', ingest);
  app.use('/api/*', read);
  app.use('/metrics', read);
}
