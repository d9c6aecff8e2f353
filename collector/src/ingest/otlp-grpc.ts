// OTLP/gRPC trace ingest: opentelemetry.proto.collector.trace.v1.TraceService/Export on its own
// port (4317 by default, as the OpenTelemetry Collector has it), for SDKs whose exporter speaks
// gRPC. The request bytes go through the same export path as OTLP/HTTP (export-request.ts):
// the same admission bound, retry cache, limits and spool, and the answer comes only once the
// spans are on disk. Status codes follow the OTLP specification: INVALID_ARGUMENT for bad data
// (not retried), UNAVAILABLE when busy or the spool is full (retried), RESOURCE_EXHAUSTED
// without retry information for a request over a size bound, UNAUTHENTICATED without a key.
// grpc-js reads the message, handles gzip, and refuses a message past the size limit itself.
// The key and the admission bound are checked when the call's metadata arrives, before its message
// is read (a server interceptor): a client without a key, or one past the bound, gets its answer
// without the collector holding its message, as on the HTTP side.
import {
  ResponderBuilder, Server, ServerCredentials, ServerInterceptingCall, ServerListenerBuilder, setLogger, status,
  type Metadata, type sendUnaryData, type ServerInterceptor, type ServerUnaryCall, type ServiceDefinition,
} from '@grpc/grpc-js';
import type { Auth } from '../auth.js';
import { StartError, type CollectorConfig } from '../config.js';
import { atMostEvery, type Logger } from '../logger.js';
import type { Metrics } from '../metrics.js';
import { grpcClientCertificateProblem, type ReloadableServerCredentials } from '../tls.js';
import type { ExportOutcome, TraceExport } from './export-request.js';
import type { InFlight, Ticket } from './inflight.js';
import { encodeTraceResponse } from './otlp-proto.js';

export const TRACE_EXPORT_PATH = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

// The message bytes are decoded by the export path (protobufjs), not by grpc-js. As a client's
// definition (makeGenericClientConstructor) it sends and receives bytes too: tests and bench.
export const TRACE_SERVICE: ServiceDefinition = {
  Export: {
    path: TRACE_EXPORT_PATH,
    requestStream: false,
    responseStream: false,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength),
    responseDeserialize: (b: Buffer) => b,
  },
};

export interface GrpcDeps {
  config: CollectorConfig;
  exports: TraceExport;
  inflight: InFlight;
  auth: Auth;
  metrics: Metrics;
  log: Logger;
  /** The certificate in use, replaceable while listening (tls.ts): the listener takes TLS only; null = plaintext. */
  tls: ReloadableServerCredentials | null;
}

export interface GrpcListener {
  /** host:port it listens on. */
  address: string;
  close(): Promise<void>;
}

function failure(code: status, details: string): { code: status; details: string } {
  return { code, details };
}

function answer(outcome: ExportOutcome, done: sendUnaryData<Uint8Array>): void {
  switch (outcome.kind) {
    case 'accepted':
      return done(null, encodeTraceResponse(outcome.rejectedSpans, outcome.rejectReason));
    case 'invalid':
      return done(failure(status.INVALID_ARGUMENT, outcome.message));
    case 'too_large':
      return done(failure(status.RESOURCE_EXHAUSTED, outcome.message));
    case 'unavailable':
      return done(failure(status.UNAVAILABLE, outcome.message));
  }
}

/** Starts the gRPC listener on config.host and the given port (0: any free one). */
export function listenOtlpGrpc(deps: GrpcDeps, port: number): Promise<GrpcListener> {
  const { config, exports, inflight, auth, metrics, log, tls } = deps;
  // grpc-js writes its own lines to stderr; what matters is reported here, in the collector's log
  setLogger({ error: (...args: unknown[]) => log.debug({ grpc: args.map(String).join(' ') }, 'grpc-js') });
  // The admission ticket of each export call, from its metadata (the interceptor) to its handler.
  const tickets = new WeakMap<Metadata, Ticket>();
  // an exporter without its certificate or key sends every few seconds; the metrics count each
  const certWarnDue = atMostEvery(60_000);
  const keyWarnDue = atMostEvery(60_000);
  /** A call past the admission bound: counted, and the message it gets (UNAVAILABLE: retried). */
  const busy = (): string => {
    metrics.inc('loopwatch_requests_rejected_total', 'grpc');
    metrics.inc('loopwatch_requests_throttled_total', 'grpc');
    return inflight.busyMessage();
  };
  const admit: ServerInterceptor = (method, call) => {
    if (method.path !== TRACE_EXPORT_PATH) return new ServerInterceptingCall(call);
    let metadata: Metadata | undefined;
    // a call that ends before its handler took the ticket (cancelled, or its message refused for size)
    const dropTicket = () => {
      const t = metadata && tickets.get(metadata);
      if (t) {
        t.release();
        tickets.delete(metadata!);
      }
    };
    const refuse = (code: status, details: string) => intercepting.sendStatus({ code, details });
    const intercepting: ServerInterceptingCall = new ServerInterceptingCall(
      call,
      new ResponderBuilder()
        .withStart((next) =>
          next(
            new ServerListenerBuilder()
              .withOnReceiveMetadata((md, nextMd) => {
                metrics.inc('loopwatch_requests_received_total', 'grpc');
                const certProblem = auth.clientCertificates ? grpcClientCertificateProblem(call.getAuthContext()) : null;
                if (certProblem !== null) {
                  metrics.inc('loopwatch_requests_rejected_total', 'grpc');
                  metrics.inc('loopwatch_requests_unauthorized_total', 'grpc');
                  if (certWarnDue()) log.warn({ path: TRACE_EXPORT_PATH }, `gRPC export refused (UNAUTHENTICATED): ${certProblem} (said at most once a minute)`);
                  return refuse(status.UNAUTHENTICATED, certProblem);
                }
                const authorization = md.get('authorization')[0];
                if (!auth.allows('ingest', typeof authorization === 'string' ? authorization : undefined)) {
                  metrics.inc('loopwatch_requests_rejected_total', 'grpc');
                  metrics.inc('loopwatch_requests_unauthorized_total', 'grpc');
                  // never the metadata: only what was refused
                  if (keyWarnDue()) log.warn({ path: TRACE_EXPORT_PATH, role: 'ingest' }, 'gRPC export without a valid API key refused (UNAUTHENTICATED) (said at most once a minute)');
                  return refuse(status.UNAUTHENTICATED, 'missing or invalid API key: send metadata "authorization: Bearer <key>" with an ingest key');
                }
                const ticket = inflight.enter(0); // the message's size is known once it is read
                if (!ticket) return refuse(status.UNAVAILABLE, busy());
                metadata = md;
                tickets.set(md, ticket);
                nextMd(md);
              })
              .withOnCancel(dropTicket)
              .build(),
          ),
        )
        .withSendStatus((st, next) => {
          dropTicket();
          next(st);
        })
        .build(),
    );
    return intercepting;
  };
  const server = new Server({
    'grpc.max_receive_message_length': config.limits.maxBodyBytes,
    'grpc.max_send_message_length': 1024 * 1024,
    // requests past the admission bound are refused before their message is read (admit above);
    // per connection, no more streams than the bound either
    'grpc.max_concurrent_streams': config.limits.maxConcurrentRequests,
    interceptors: [admit],
  });
  const exportSpans = (call: ServerUnaryCall<Buffer, Uint8Array>, done: sendUnaryData<Uint8Array>): void => {
    const body = call.request;
    const ticket = tickets.get(call.metadata);
    tickets.delete(call.metadata); // the handler's now: released when it answers
    if (!ticket || !ticket.grow(body.length)) {
      ticket?.release();
      return done(failure(status.UNAVAILABLE, busy()));
    }
    exports.handle(body, 'protobuf', ticket, 'grpc').then(
      (outcome) => {
        ticket.release();
        answer(outcome, done);
      },
      (err: unknown) => {
        ticket.release();
        log.error({ err }, 'unhandled error in gRPC export');
        done(failure(status.INTERNAL, 'internal error'));
      },
    );
  };
  server.addService(TRACE_SERVICE, { Export: exportSpans });

  const host = config.host.includes(':') && !config.host.startsWith('[') ? `[${config.host}]` : config.host;
  return new Promise((resolve, reject) => {
    const credentials = tls ?? ServerCredentials.createInsecure();
    server.bindAsync(`${host}:${port}`, credentials, (err, bound) => {
      if (err) {
        server.forceShutdown();
        return reject(
          /EADDRINUSE/.test(err.message)
            ? new StartError(`port ${port} on ${host} (OTLP/gRPC) is in use: choose another with --grpc-port (LOOPWATCH_GRPC_PORT), or turn gRPC off with --grpc-port off`)
            : new Error(`cannot listen for OTLP/gRPC on ${host}:${port}: ${err.message}`),
        );
      }
      resolve({
        address: `${host}:${bound}`,
        close: () =>
          new Promise<void>((done) => {
            // requests in progress finish (acknowledged or not); a client that holds on is cut off
            const cut = setTimeout(() => server.forceShutdown(), 5_000);
            server.tryShutdown(() => {
              clearTimeout(cut);
              done();
            });
          }),
      });
    });
  });
}
