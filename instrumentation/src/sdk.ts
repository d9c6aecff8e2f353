// Starts the OpenTelemetry Node SDK with an OTLP/HTTP protobuf exporter pointed at the
// collector. Standard variables apply (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
// OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES); the default endpoint is a local collector on 4318.
import type { Context } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { BatchSpanProcessor, type ReadableSpan, type Span, type SpanExporter, type SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { ATTR } from './attributes.js';
import { sessionFrom } from './context.js';
import { AiSdkSpanProcessor } from './integrations/ai-sdk.js';

/** Stamps session and agent from the context on every span, whichever library started it. */
export class SessionSpanProcessor implements SpanProcessor {
  onStart(span: Span, parentContext: Context): void {
    const s = sessionFrom(parentContext);
    if (!s) return;
    span.setAttribute(ATTR.conversationId, s.sessionId);
    if (s.agent) span.setAttribute(ATTR.agentName, s.agent);
  }
  onEnd(_span: ReadableSpan): void {}
  forceFlush(): Promise<void> {
    return Promise.resolve();
  }
  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

export interface StartOptions {
  /** Collector base URL (…/v1/traces is appended); default from OTEL_EXPORTER_OTLP_ENDPOINT or http://localhost:4318. */
  endpoint?: string;
  serviceName?: string;
  /** Replace the exporter (e.g. the OTLP/JSON one). */
  exporter?: SpanExporter;
  /** Extra span processors, after the session stamper (and the AI SDK span processor) and before the exporter. */
  spanProcessors?: SpanProcessor[];
}

export interface LoopwatchHandle {
  sdk: NodeSDK;
  /** Exports everything pending now. */
  flush(): Promise<void>;
  shutdown(): Promise<void>;
}

function tracesUrl(endpoint: string): string {
  return endpoint.replace(/\/+$/, '') + '/v1/traces';
}

export function startLoopwatch(opts: StartOptions = {}): LoopwatchHandle {
  // Loopwatch collects traces; without these the SDK would also push metrics and logs
  // to endpoints the collector does not serve. An application's own choice wins.
  process.env.OTEL_METRICS_EXPORTER ??= 'none';
  process.env.OTEL_LOGS_EXPORTER ??= 'none';
  const exporter =
    opts.exporter ??
    new OTLPTraceExporter(opts.endpoint ? { url: tracesUrl(opts.endpoint) } : {});
  const batch = new BatchSpanProcessor(exporter, { scheduledDelayMillis: 500 });
  const sdk = new NodeSDK({
    serviceName: opts.serviceName ?? process.env.OTEL_SERVICE_NAME,
    spanProcessors: [new SessionSpanProcessor(), new AiSdkSpanProcessor(), ...(opts.spanProcessors ?? []), batch],
  });
  sdk.start();
  return {
    sdk,
    flush: () => batch.forceFlush(),
    shutdown: () => sdk.shutdown(),
  };
}
