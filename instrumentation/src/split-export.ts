// An export the collector refused as too large (HTTP 413: its request body limit, 16 MiB by
// default) is sent again in halves, down to single spans. With content capture on, a batch of
// 512 spans that each carry arguments and a result of up to 32 KiB can reach 32 MiB, and an
// exporter gives up on a 413 (it is not retryable): the whole batch was lost, and with it the
// session's calls. A collector with a larger limit never answers 413 and costs nothing here.
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { ReadableSpan, SpanExporter } from '@opentelemetry/sdk-trace-base';

const TOO_LARGE = 413;

/** The HTTP status an OTLP exporter's error carries (OTLPExporterError.code), if any. */
function statusOf(error: Error | undefined): unknown {
  return (error as { code?: unknown } | undefined)?.code;
}

/** The exporter, with a batch refused as too large sent again in halves (both halves are sent: a failure of one fails the batch). */
export function splitOnTooLarge(exporter: SpanExporter): SpanExporter {
  const send = (spans: ReadableSpan[], done: (result: ExportResult) => void): void => {
    exporter.export(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS || spans.length < 2 || statusOf(result.error) !== TOO_LARGE) {
        done(result);
        return;
      }
      const half = Math.ceil(spans.length / 2);
      send(spans.slice(0, half), (first) => send(spans.slice(half), (second) => done(first.code === ExportResultCode.SUCCESS ? second : first)));
    });
  };
  return {
    export: send,
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
  };
}
