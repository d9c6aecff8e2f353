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

/** An export's result, with how many of its spans failed when that is not all of them (a batch sent in halves). */
export type SplitExportResult = ExportResult & { failedSpans?: number };

/** How many of an export's spans its result says failed. */
export function failedSpansOf(result: SplitExportResult, spans: number): number {
  return result.code === ExportResultCode.SUCCESS ? 0 : (result.failedSpans ?? spans);
}

/**
 * The exporter, with a batch refused as too large sent again in halves. Both halves are sent; a
 * failure of either fails the batch, and the result says how many spans failed (a span alone over
 * the limit fails alone: the others were stored).
 */
export function splitOnTooLarge(exporter: SpanExporter): SpanExporter {
  const send = (spans: ReadableSpan[], done: (result: SplitExportResult) => void): void => {
    exporter.export(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS || spans.length < 2 || statusOf(result.error) !== TOO_LARGE) {
        done(result);
        return;
      }
      const half = Math.ceil(spans.length / 2);
      send(spans.slice(0, half), (first) =>
        send(spans.slice(half), (second) => {
          const failedSpans = failedSpansOf(first, half) + failedSpansOf(second, spans.length - half);
          const failed = first.code === ExportResultCode.SUCCESS ? second : first;
          done(failedSpans === 0 ? { code: ExportResultCode.SUCCESS } : { code: ExportResultCode.FAILED, error: failed.error, failedSpans });
        }));
    });
  };
  return {
    export: send,
    shutdown: () => exporter.shutdown(),
    forceFlush: () => exporter.forceFlush?.() ?? Promise.resolve(),
  };
}
