// TLS for both listeners (OTLP/HTTP with the read API and metrics, and OTLP/gRPC): a certificate
// chain and its private key, PEM files named by --tls-cert / --tls-key. Agents on other hosts
// send API keys and, with capture on, tool arguments: without TLS those cross the network in
// clear. Read once at start and checked as a pair, so a wrong file fails the start with the
// setting's name, not the first client's handshake. Clients keep their standard settings:
// OTEL_EXPORTER_OTLP_CERTIFICATE for exporters that must trust a private CA, NODE_EXTRA_CA_CERTS
// for the CLI.
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { ConfigError, type CollectorConfig } from './config.js';

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
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
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    // OpenSSL's reason (e.g. "key values mismatch", "no start line"), never the files' content
    throw new ConfigError(`cannot use --tls-cert ${certFile} with --tls-key ${keyFile}: ${(err as Error).message}`);
  }
  return { cert, key };
}
