// TLS for both listeners (OTLP/HTTP with the read API and metrics, and OTLP/gRPC): a certificate
// chain and its private key, PEM files named by --tls-cert / --tls-key. Agents on other hosts
// send API keys and, with capture on, tool arguments: without TLS those cross the network in
// clear. Read at start and checked as a pair, so a wrong file fails the start with the
// setting's name, not the first client's handshake. Clients keep their standard settings:
// OTEL_EXPORTER_OTLP_CERTIFICATE for exporters that must trust a private CA, NODE_EXTRA_CA_CERTS
// for the CLI.
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
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { ConfigError, type CollectorConfig } from './config.js';
import type { Logger } from './logger.js';

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
  /** The leaf certificate's end of validity. */
  notAfter: Date;
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
  return { cert, key, notAfter };
}

/**
 * gRPC server credentials whose certificate can be replaced while the server runs: grpc-js
 * hands a credentials update to its listening sockets (setSecureContext), as its certificate
 * providers do.
 */
export class ReloadableServerCredentials extends ServerCredentials {
  constructor(tls: TlsMaterial) {
    super({ requestCert: false }, ReloadableServerCredentials.options(tls));
  }

  private static options(tls: TlsMaterial): SecureContextOptions {
    return { cert: tls.cert, key: tls.key };
  }

  replace(tls: TlsMaterial): void {
    this.updateSecureContextOptions(ReloadableServerCredentials.options(tls));
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
  const files = [config.tls.certFile!, config.tls.keyFile!];
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
    if (next.cert.equals(current.cert) && next.key.equals(current.key)) return null;
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
