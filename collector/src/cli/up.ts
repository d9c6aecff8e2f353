// `loopwatch up`: start the collector.
import { InvalidArgumentError, type Command } from 'commander';
import { createCollector } from '../collector.js';
import { decimalInteger } from '../../../instrumentation/src/decimal.js';
import { loadConfig, type ConfigInput } from '../config.js';
import { createLogger } from '../logger.js';

function int(value: string): number {
  // decimal digits, as the variables (Number("") is 0: --port "" listened on a random port; 0x10 was 16)
  const n = decimalInteger(value);
  if (n === undefined) throw new InvalidArgumentError('must be a whole number in decimal digits');
  return n;
}

function portOrOff(value: string): number | 'off' {
  return value.trim().toLowerCase() === 'off' ? 'off' : int(value);
}

export function registerUpCommand(program: Command): void {
  program
    .command('up')
    .description('start the collector (OTLP/HTTP on :4318, OTLP/gRPC on :4317) on the embedded store, or a ClickHouse server with --clickhouse-url')
    .option('--host <host>', 'address to listen on (LOOPWATCH_HOST)')
    .option('-p, --port <port>', 'OTLP/HTTP and API port (LOOPWATCH_PORT)', int)
    .option('--grpc-port <port>', 'OTLP/gRPC port, or "off" (LOOPWATCH_GRPC_PORT; default 4317)', portOrOff)
    .option('-d, --data-dir <dir>', 'embedded database and spool directory (LOOPWATCH_DATA_DIR)')
    .option('--clickhouse-url <url>', 'use a ClickHouse server instead of the embedded engine (LOOPWATCH_CLICKHOUSE_URL)')
    .option('--retention-days <days>', 'keep data this many days (LOOPWATCH_RETENTION_DAYS)', int)
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace|silent (LOOPWATCH_LOG_LEVEL)')
    .option('--tls-cert <file>', 'serve both ports over TLS: PEM certificate chain (LOOPWATCH_TLS_CERT_FILE; with --tls-key)')
    .option('--tls-key <file>', "PEM private key of --tls-cert's certificate (LOOPWATCH_TLS_KEY_FILE)")
    .option('--tls-client-ca <file>', 'exporters must present a client certificate signed by a CA of this PEM file (mutual TLS; LOOPWATCH_TLS_CLIENT_CA_FILE)')
    .option('--keys-file <path>', 'API key hashes, lines of "ingest|read <sha256>" (LOOPWATCH_KEYS_FILE)')
    .option('--detectors <settings>', 'detector thresholds and budgets, e.g. "repeatMinRun=4,budgetMaxCostUsd=2" (LOOPWATCH_DETECTORS; docs/detectors.md)')
    .option('--json', 'print the start-up summary as JSON')
    .action(async (opts: { host?: string; port?: number; grpcPort?: number | 'off'; dataDir?: string; clickhouseUrl?: string; retentionDays?: number; logLevel?: string; json?: boolean; keysFile?: string; detectors?: string; tlsCert?: string; tlsKey?: string; tlsClientCa?: string }) => {
      const overrides: ConfigInput = {
        host: opts.host, port: opts.port, grpcPort: opts.grpcPort, dataDir: opts.dataDir, retentionDays: opts.retentionDays,
        logLevel: opts.logLevel as ConfigInput['logLevel'],
        clickhouse: opts.clickhouseUrl ? { url: opts.clickhouseUrl } : undefined,
        auth: opts.keysFile ? { keysFile: opts.keysFile } : undefined,
        tls: opts.tlsCert !== undefined || opts.tlsKey !== undefined || opts.tlsClientCa !== undefined
          ? { certFile: opts.tlsCert, keyFile: opts.tlsKey, clientCaFile: opts.tlsClientCa }
          : undefined,
        detect: opts.detectors !== undefined ? { settings: opts.detectors } : undefined,
      };
      const config = loadConfig(overrides);
      const log = createLogger(config.logLevel);
      const collector = await createCollector(config, log);
      let url: string;
      try {
        url = await collector.listen();
      } catch (err) {
        await collector.close().catch(() => undefined); // the store and the listener that did start
        throw err;
      }
      // handled before the banner says it is up: a signal right after it must close the store
      let closing = false;
      const shutdown = (signal: string) => {
        if (closing) return;
        closing = true;
        log.info({ signal }, 'shutting down: stop accepting, flush spool to store');
        collector.close().then(
          () => {
            // what the close left: nothing, or what the next start loads (the store was down or slow)
            const left = { segments: collector.spool.sealedCount, bytes: collector.spool.heldBytes };
            if (left.segments === 0 && left.bytes === 0) log.info('stopped: every acknowledged span is in the store');
            else log.warn(left, 'stopped: spool segments not yet in the store wait in the spool for the next start');
            process.exit(0);
          },
          (err: unknown) => {
            log.error({ err }, 'shutdown failed');
            process.exit(1);
          },
        );
      };
      process.on('SIGTERM', () => shutdown('SIGTERM'));
      process.on('SIGINT', () => shutdown('SIGINT'));
      const tls = config.tls.certFile ?? null;
      const tlsClientCa = config.tls.clientCaFile ?? null;
      // snake_case keys, as every --json output and answer of the read API
      const summary = {
        url, otlp_traces_endpoint: `${url}/v1/traces`, otlp_grpc: collector.grpcAddress || null, tls, tls_client_ca: tlsClientCa,
        store: collector.store.mode, store_location: collector.store.location,
      };
      if (opts.json) {
        process.stdout.write(JSON.stringify(summary) + '\n');
      } else {
        process.stdout.write(
          [
            `loopwatch collector listening on ${url}`,
            `  OTLP/HTTP traces: POST ${summary.otlp_traces_endpoint} (protobuf or JSON)`,
            summary.otlp_grpc ? `  OTLP/gRPC traces: ${tls ? 'https://' : ''}${summary.otlp_grpc}` : '  OTLP/gRPC: off',
            ...(tls ? [`  TLS: on both ports (${tls})`] : []),
            ...(tlsClientCa ? [`  client certificates: required to export, signed by a CA of ${tlsClientCa}`] : []),
            `  store: ${collector.store.mode} (${collector.store.location})`,
            '',
            'Instrument an agent (Node 20+):',
            `  OTEL_EXPORTER_OTLP_ENDPOINT=${url} node --import loopwatch/instrumentation your-agent.js`,
            // a certificate the agents do not already trust (self-signed, a private CA): the standard variable names its CA
            ...(tls ? ['  (a self-signed certificate or a private CA: add OTEL_EXPORTER_OTLP_CERTIFICATE=<the CA certificate file>)'] : []),
            ...(tlsClientCa ? ['  (and its client certificate: OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=<file> OTEL_EXPORTER_OTLP_CLIENT_KEY=<file>)'] : []),
            // keys configured: without one, the agent's spans and the commands below get 401
            ...(collector.keysRequired ? ['  (API keys are on: add OTEL_EXPORTER_OTLP_HEADERS="Authorization=Bearer <ingest key>")'] : []),
            "  or add `import 'loopwatch/instrumentation'` as the first import of your agent.",
            '',
            `Then: ${collector.keysRequired ? 'LOOPWATCH_API_KEY=<read key> ' : ''}npx loopwatch findings -f --url ${url}   (loops as they are found; npx loopwatch status --url ${url}: is it healthy)`,
            '',
          ].join('\n'),
        );
      }
    });
}
