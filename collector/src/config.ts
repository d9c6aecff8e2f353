// Collector configuration: defaults, then LOOPWATCH_* environment variables, then explicit
// overrides (CLI flags), validated by one zod schema so a bad value fails at start with its name.
import { z } from 'zod';
import { decimalInteger } from '../../instrumentation/src/decimal.js';
import { parseDetectorSettings, resolveDetectorParams, type DetectorParams } from '../../queries/src/detector-defaults.js';

const MiB = 1024 * 1024;
// Node's timers hold at most this many ms; past it a timer fires after 1 ms (a detector interval
// of 1e11 ran the detectors back to back)
const MAX_TIMER_MS = 2_147_483_647;

/** A whole number: a number, or text that decimalInteger reads. */
const whole = () =>
  z.preprocess(
    (v) => (typeof v === 'string' ? (decimalInteger(v) ?? v) : v),
    z.number({ error: 'expected a whole number in decimal digits' }).int({ error: 'expected a whole number' }),
  );
/** A duration in ms that a timer can hold. */
const timerMs = (min: number) => whole().pipe(z.number().min(min).max(MAX_TIMER_MS, `at most ${MAX_TIMER_MS} ms (about 24.8 days: the longest timer Node has)`));

/** A key's SHA-256 as 64 hex digits (optionally `sha256:`-prefixed); a clear-text key is refused. */
export const keyHash = z
  .string()
  .trim()
  .transform((s) => s.replace(/^sha256:/i, '').toLowerCase())
  .refine((s) => /^[0-9a-f]{64}$/.test(s), 'must be a SHA-256 hash of the key (64 hex digits; `npx loopwatch keys hash <key>`), not the key itself');

export const configSchema = z.object({
  host: z.string().min(1).default('127.0.0.1'),
  port: whole().pipe(z.number().min(0).max(65535)).default(4318),
  /**
   * OTLP/gRPC port on the same host; null (`off`) = no gRPC listener. Unset while `port` is 0
   * (any free port: a throwaway instance), it is 0 too rather than the fixed 4317.
   */
  grpcPort: z
    .union([z.string().trim().toLowerCase().pipe(z.literal('off')).transform(() => null), z.null(), whole().pipe(z.number().min(0).max(65535))], { error: 'expected a port (0-65535) or "off"' })
    .default(4317),
  /** Embedded database, spool and other state live here. */
  dataDir: z.string().min(1).default('.loopwatch'),
  clickhouse: z
    .object({
      /** A ClickHouse server (http[s]://host:8123); unset = embedded chDB under dataDir. */
      url: z.string().url().optional(),
      user: z.string().default('default'),
      password: z.string().default(''),
      database: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a plain identifier').default('default'),
    })
    .default({ user: 'default', password: '', database: 'default' }),
  // at most 25,000 days (68 years): a span's TTL, its start plus the retention, must end by
  // 2106-02-07, the latest time the store's TTL holds; over about 29,000 days a span of today
  // expired at once
  retentionDays: whole().pipe(z.number().min(1).max(25_000)).default(30),
  /** TLS on both listeners: a PEM certificate chain and its private key, both or neither (see tls.ts). */
  tls: z
    .object({
      certFile: z.string().min(1).optional(),
      keyFile: z.string().min(1).optional(),
      /**
       * PEM file of the CA certificates that sign the exporters' client certificates: set, OTLP
       * ingest (HTTP /v1/* and gRPC) needs a client certificate signed by one of them (tls.ts).
       */
      clientCaFile: z.string().min(1).optional(),
      /** How often the files are checked for a renewed certificate (tls.ts). */
      watchIntervalMs: timerMs(100).default(60_000),
    })
    .prefault({})
    .refine((t) => !t.certFile === !t.keyFile, 'set both --tls-cert and --tls-key (LOOPWATCH_TLS_CERT_FILE, LOOPWATCH_TLS_KEY_FILE), or neither')
    .refine((t) => !t.clientCaFile || t.certFile, '--tls-client-ca (LOOPWATCH_TLS_CLIENT_CA_FILE) needs TLS on: set --tls-cert and --tls-key too'),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  limits: z
    .object({
      maxBodyBytes: whole().pipe(z.number().positive()).default(16 * MiB),
      maxDecompressedBytes: whole().pipe(z.number().positive()).default(64 * MiB),
      maxSpansPerRequest: whole().pipe(z.number().positive()).default(100_000),
      maxAttributes: whole().pipe(z.number().positive()).default(256),
      maxAttributeLength: whole().pipe(z.number().positive()).default(64 * 1024),
      maxValueDepth: whole().pipe(z.number().positive()).default(16),
      /** Protobuf messages / JSON objects and arrays in one request (decoded heap ~100 B each). */
      maxObjectsPerRequest: whole().pipe(z.number().positive()).default(2_000_000),
      /** Ingest requests being read, decompressed and decoded at once; past it ingest answers 429. */
      maxConcurrentRequests: whole().pipe(z.number().positive()).default(64),
      /** Request bytes (received plus decompressed) held by those requests at once; past it 429. */
      maxInFlightBytes: whole().pipe(z.number().positive()).default(128 * MiB),
      /**
       * An ingest request whose body has not all arrived this long after its headers is cut off
       * (408, connection closed): 64 uploads trickling a byte at a time held every ingest slot.
       */
      bodyTimeoutMs: timerMs(1).default(30_000),
    })
    .prefault({}),
  spool: z
    .object({
      /** Acknowledged data not yet in the store, at most; past it ingest answers 503. */
      maxBytes: whole().pipe(z.number().positive()).default(1024 * MiB),
      /** A segment is sealed and handed to the loader at this size or age. */
      segmentMaxBytes: whole().pipe(z.number().positive()).default(32 * MiB),
      segmentMaxAgeMs: timerMs(1).default(1000),
    })
    .prefault({}),
  /**
   * API keys, as SHA-256 hashes (64 hex digits; `loopwatch keys hash <key>`), never in clear.
   * Any key configured enables auth; listening beyond loopback requires keys (see auth.ts).
   */
  auth: z
    .object({
      ingestKeyHashes: z.array(keyHash).default([]),
      readKeyHashes: z.array(keyHash).default([]),
      /** Lines of `ingest|read <sha256-hex>`; `#` starts a comment. */
      keysFile: z.string().min(1).optional(),
    })
    .prefault({}),
  detect: z
    .object({
      enabled: z.boolean().default(true),
      intervalMs: timerMs(100).default(5000),
      /**
       * Detector thresholds and budgets that differ from DETECTOR_DEFAULTS: an object, or text of
       * `name=value` pairs (LOOPWATCH_DETECTORS, `loopwatch up --detectors`), checked against
       * each setting's range.
       */
      settings: z
        .union([z.string(), z.record(z.string(), z.number())])
        .default({})
        .transform((v, ctx): Partial<DetectorParams> => {
          try {
            const settings = typeof v === 'string' ? parseDetectorSettings(v) : (v as Partial<DetectorParams>);
            resolveDetectorParams(settings);
            return settings;
          } catch (err) {
            ctx.addIssue({ code: 'custom', message: (err as Error).message });
            return z.NEVER;
          }
        }),
    })
    .prefault({}),
}).superRefine((c, ctx) => {
  // settings each valid alone that cannot work together
  if (c.grpcPort !== null && c.grpcPort !== 0 && c.grpcPort === c.port) {
    ctx.addIssue({ code: 'custom', path: ['grpcPort'], message: `the OTLP/gRPC port is the HTTP port (${c.port}): give them different ports, or turn gRPC off` });
  }
});

export type CollectorConfig = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;

function envNumber(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name];
  // blank is unset (a template's empty variable): " " coerced to port 0, a random port
  return v === undefined || v.trim() === '' ? undefined : v;
}

/** A yes/no variable: anything else is kept as text for the schema to refuse ("flase" left detectors on). */
function flag(v: string | undefined): boolean | undefined {
  if (v === undefined) return undefined;
  if (/^(1|true|yes|on)$/i.test(v.trim())) return true;
  if (/^(0|false|no|off)$/i.test(v.trim())) return false;
  return v as unknown as boolean;
}

function list(v: string | undefined): string[] | undefined {
  return v === undefined ? undefined : v.split(/[\s,]+/).filter((x) => x.length > 0);
}

/** Reads LOOPWATCH_* variables into the config shape (strings; the schema coerces and checks them). */
export function configFromEnv(env: NodeJS.ProcessEnv = process.env): ConfigInput {
  const pick = (name: string) => envNumber(env, name);
  const drop = <T extends object>(o: T): T => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
  return drop({
    host: pick('LOOPWATCH_HOST'),
    port: pick('LOOPWATCH_PORT') as unknown as number,
    grpcPort: pick('LOOPWATCH_GRPC_PORT') as unknown as number,
    dataDir: pick('LOOPWATCH_DATA_DIR'),
    retentionDays: pick('LOOPWATCH_RETENTION_DAYS') as unknown as number,
    tls: drop({
      certFile: pick('LOOPWATCH_TLS_CERT_FILE'),
      keyFile: pick('LOOPWATCH_TLS_KEY_FILE'),
      clientCaFile: pick('LOOPWATCH_TLS_CLIENT_CA_FILE'),
      watchIntervalMs: pick('LOOPWATCH_TLS_WATCH_INTERVAL_MS') as unknown as number,
    }),
    logLevel: pick('LOOPWATCH_LOG_LEVEL') as ConfigInput['logLevel'],
    clickhouse: drop({
      url: pick('LOOPWATCH_CLICKHOUSE_URL'),
      user: pick('LOOPWATCH_CLICKHOUSE_USER'),
      password: pick('LOOPWATCH_CLICKHOUSE_PASSWORD'),
      database: pick('LOOPWATCH_CLICKHOUSE_DATABASE'),
    }),
    detect: drop({
      intervalMs: pick('LOOPWATCH_DETECT_INTERVAL_MS') as unknown as number,
      enabled: flag(pick('LOOPWATCH_DETECT_ENABLED')),
      settings: pick('LOOPWATCH_DETECTORS'),
    }),
    spool: drop({
      maxBytes: pick('LOOPWATCH_SPOOL_MAX_BYTES') as unknown as number,
      segmentMaxBytes: pick('LOOPWATCH_SPOOL_SEGMENT_MAX_BYTES') as unknown as number,
      segmentMaxAgeMs: pick('LOOPWATCH_SPOOL_SEGMENT_MAX_AGE_MS') as unknown as number,
    }),
    limits: drop({
      maxBodyBytes: pick('LOOPWATCH_MAX_BODY_BYTES') as unknown as number,
      maxConcurrentRequests: pick('LOOPWATCH_MAX_CONCURRENT_REQUESTS') as unknown as number,
      maxInFlightBytes: pick('LOOPWATCH_MAX_IN_FLIGHT_BYTES') as unknown as number,
      bodyTimeoutMs: pick('LOOPWATCH_BODY_TIMEOUT_MS') as unknown as number,
    }),
    auth: drop({
      ingestKeyHashes: list(pick('LOOPWATCH_INGEST_KEY_HASHES')),
      readKeyHashes: list(pick('LOOPWATCH_READ_KEY_HASHES')),
      keysFile: pick('LOOPWATCH_KEYS_FILE'),
    }),
  });
}

function merge(a: Record<string, unknown>, b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    if (v === undefined) continue;
    const prev = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && prev && typeof prev === 'object'
        ? merge(prev as Record<string, unknown>, v as Record<string, unknown>)
        : v;
  }
  return out;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/**
 * The collector cannot start as configured: an address it cannot listen on, a data directory
 * another collector uses. The message names the setting to change; the CLI prints it alone.
 */
export class StartError extends Error {
  override readonly name = 'StartError';
}

/**
 * The environment variable of each setting, by its path ("port", "tls.certFile"): configFromEnv
 * read from an environment whose every variable holds its own name.
 */
function envVarNames(): Map<string, string> {
  const named = configFromEnv(new Proxy({}, { get: (_t, k) => (typeof k === 'string' ? k : undefined) }) as NodeJS.ProcessEnv);
  const out = new Map<string, string>();
  const walk = (o: Record<string, unknown>, prefix: string): void => {
    for (const [k, v] of Object.entries(o)) {
      const path = prefix + k;
      if (typeof v === 'string') out.set(path, v);
      else if (Array.isArray(v) && typeof v[0] === 'string') out.set(path, v[0]);
      else if (v && typeof v === 'object') walk(v as Record<string, unknown>, `${path}.`);
    }
  };
  walk(named as Record<string, unknown>, '');
  return out;
}

/** Environment, then overrides; throws ConfigError naming the first bad setting. */
export function loadConfig(overrides: ConfigInput = {}, env: NodeJS.ProcessEnv = process.env): CollectorConfig {
  const input = merge(configFromEnv(env) as Record<string, unknown>, overrides as Record<string, unknown>);
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.join('.') ?? '';
    // the setting as a user knows it: its variable (up's flags name theirs in --help), and the value given
    const variable = envVarNames().get(path.replace(/\.\d+$/, '')); // (an entry of a list: the list's)
    let value: unknown = input;
    for (const k of issue?.path ?? []) value = (value as Record<PropertyKey, unknown> | undefined)?.[k as PropertyKey];
    // never the value of what can hold a credential (a key where its hash belongs, a URL with a password)
    const secret = /^(auth|clickhouse)\./.test(path);
    const given = value === undefined || secret ? '' : ` (given ${JSON.stringify(value)})`;
    throw new ConfigError(`invalid configuration ${path}${variable ? ` (${variable})` : ''}: ${issue?.message ?? ''}${given}`);
  }
  if (input.grpcPort === undefined && parsed.data.port === 0) parsed.data.grpcPort = 0;
  return parsed.data;
}
