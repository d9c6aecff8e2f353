// TLS for both listeners (OTLP/HTTP with the read API and metrics, and OTLP/gRPC): a certificate
// chain and its private key, PEM files named by --tls-cert / --tls-key. Agents on other hosts
// send API keys and, with capture on, tool arguments: without TLS those cross the network in
// clear. Read at start and checked as a pair, so a wrong file fails the start with the
// setting's name, not the first client's handshake. Clients keep their standard settings:
// OTEL_EXPORTER_OTLP_CERTIFICATE for exporters that must trust a private CA, NODE_EXTRA_CA_CERTS
// for the CLI.
//
// With --tls-client-ca, OTLP ingest also needs a client certificate signed by a CA of that file
// (mutual TLS, as the OpenTelemetry Collector's client_ca_file): exporters present theirs with
// OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY. The handshake asks
// for one but does not fail without it: the ingest routes refuse the request with a message that
// says what is missing (403, gRPC UNAUTHENTICATED), where a failed handshake would reach the
// exporter as a bare socket error. The read API, /metrics and /healthz do not ask for one (the
// CLI, Grafana and Prometheus use read keys).
//
// Certificates are renewed while the collector runs (ACME every 60-90 days, cert-manager
// rewriting a mounted secret): the files are checked every minute (LOOPWATCH_TLS_WATCH_INTERVAL_MS)
// and read again when they change. A new pair
// replaces the old one for new connections on both listeners; a pair that does not load (the
// certificate written, its key not yet) keeps the old one and is tried again when the files
// change.
import { readFileSync, statSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { ServerCredentials } from '@grpc/grpc-js';
import { createSecureContext, type SecureContextOptions, type TLSSocket } from 'node:tls';
import { ConfigError, type CollectorConfig } from './config.js';
import type { Logger } from './logger.js';

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  /** The leaf certificate's end of validity. */
  notAfter: Date;
  /** The CA certificates of --tls-client-ca, or null: no client certificates asked for. */
  clientCa: Buffer | null;
}

function readPem(file: string, setting: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new ConfigError(`cannot read ${setting} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** The configured certificate and key, checked to load as a pair; null when TLS is off. */
export function loadTls(config: CollectorConfig): TlsMaterial | null {
  const { certFile, keyFile } = config.tls;
  if (!certFile || !keyFile) return null;
  const cert = readPem(certFile, '--tls-cert (LOOPWATCH_TLS_CERT_FILE)');
  const key = readPem(keyFile, '--tls-key (LOOPWATCH_TLS_KEY_FILE)');
  let notAfter: Date;
  try {
    createSecureContext({ cert, key });
    notAfter = new Date(new X509Certificate(cert).validTo);
  } catch (err) {
    // OpenSSL's reason (e.g. "key values mismatch", "no start line"), never the files' content
    throw new ConfigError(`cannot use --tls-cert ${certFile} with --tls-key ${keyFile}: ${(err as Error).message}`);
  }
  const caFile = config.tls.clientCaFile;
  let clientCa: Buffer | null = null;
  if (caFile) {
    clientCa = readPem(caFile, '--tls-client-ca (LOOPWATCH_TLS_CLIENT_CA_FILE)');
    try {
      new X509Certificate(clientCa); // the first certificate of the file; OpenSSL ignores what is not one
      createSecureContext({ ca: clientCa });
    } catch (err) {
      throw new ConfigError(`cannot use --tls-client-ca ${caFile}: ${(err as Error).message} (a PEM file of CA certificates)`);
    }
  }
  return { cert, key, notAfter, clientCa };
}

/** The secure context of both listeners: the certificate, and the CAs client certificates are checked against. */
export function secureContextOptions(tls: TlsMaterial): SecureContextOptions {
  return tls.clientCa ? { cert: tls.cert, key: tls.key, ca: tls.clientCa } : { cert: tls.cert, key: tls.key };
}

/** The HTTPS server's options, and the secure context it is given again at a renewal (setSecureContext). */
export function httpsServerOptions(tls: TlsMaterial): SecureContextOptions & { requestCert: boolean; rejectUnauthorized: boolean } {
  // asked for, not required in the handshake: the ingest routes refuse without one (see above)
  return { ...secureContextOptions(tls), requestCert: tls.clientCa !== null, rejectUnauthorized: false };
}

/**
 * Why a connection may not export when client certificates are required, or null when it may:
 * for the 401 / UNAUTHENTICATED message (what is wrong, and the exporter settings that fix it).
 */
export function clientCertificateProblem(socket: TLSSocket | undefined): string | null {
  if (socket?.authorized) return null;
  const presented = socket !== undefined && Object.keys(socket.getPeerCertificate?.() ?? {}).length > 0;
  return (
    (presented
      ? `the client certificate is not signed by a CA of the collector's --tls-client-ca (${String(socket!.authorizationError ?? 'not trusted')})`
      : 'a client certificate is required (the collector has --tls-client-ca) and none was presented') + CLIENT_CERTIFICATE_HINT
  );
}

/** The same for gRPC, which tells only whether the call's connection has a trusted certificate (grpc-js getAuthContext). */
export function grpcClientCertificateProblem(authContext: { sslPeerCertificate?: unknown } | undefined): string | null {
  if (authContext?.sslPeerCertificate) return null;
  return "a client certificate signed by a CA of the collector's --tls-client-ca is required: none was presented, or it is not signed by one" + CLIENT_CERTIFICATE_HINT;
}

const CLIENT_CERTIFICATE_HINT = ': set OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY in the exporting application';

/**
 * gRPC server credentials whose certificate can be replaced while the server runs: grpc-js
 * hands a credentials update to its listening sockets (setSecureContext), as its certificate
 * providers do.
 */
export class ReloadableServerCredentials extends ServerCredentials {
  constructor(tls: TlsMaterial) {
    // as for HTTPS: a client certificate asked for, and checked per call (otlp-grpc.ts)
    super({ requestCert: tls.clientCa !== null, rejectUnauthorized: false }, secureContextOptions(tls));
  }

  replace(tls: TlsMaterial): void {
    this.updateSecureContextOptions(secureContextOptions(tls));
  }

  _equals(other: ServerCredentials): boolean {
    return this === other;
  }
}

/** Where a new certificate and key go: each listener's secure context. */
export type TlsTarget = (tls: TlsMaterial) => void;

export interface TlsWatch {
  /** Reads the files again now; the error when the new pair cannot be used (the old one stays). */
  reload(): Error | null;
  /** The pair in use. */
  current(): TlsMaterial;
  stop(): void;
}

/** Watches the certificate and key files (their size and modification time, every intervalMs) and applies a changed pair. */
export function watchTls(config: CollectorConfig, initial: TlsMaterial, apply: TlsTarget, log: Logger, intervalMs: number): TlsWatch {
  const files = [config.tls.certFile!, config.tls.keyFile!, ...(config.tls.clientCaFile ? [config.tls.clientCaFile] : [])];
  const stamp = (): string =>
    files
      .map((f) => {
        try {
          const s = statSync(f);
          return `${s.size}:${s.mtimeMs}`;
        } catch {
          return 'missing';
        }
      })
      .join('|');
  let current = initial;
  let seen = stamp();
  const reload = (): Error | null => {
    seen = stamp();
    let next: TlsMaterial;
    try {
      next = loadTls(config)!;
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'TLS certificate not reloaded: the files do not make a usable pair (the previous one stays in use; tried again when they change)');
      return err as Error;
    }
    const same = (a: Buffer | null, b: Buffer | null) => (a === null ? b === null : b !== null && a.equals(b));
    if (same(next.cert, current.cert) && same(next.key, current.key) && same(next.clientCa, current.clientCa)) return null;
    apply(next);
    current = next;
    log.info({ certFile: config.tls.certFile, notAfter: next.notAfter.toISOString() }, 'TLS certificate reloaded');
    return null;
  };
  const timer = setInterval(() => {
    if (stamp() !== seen) reload();
  }, intervalMs);
  timer.unref();
  return { reload, current: () => current, stop: () => clearInterval(timer) };
}
