// A collector that takes an export but not all of its spans answers 200 with an OTLP partial
// success: how many spans it rejected and why (a span with more attributes than its limit, one
// that started before the retention window or after 2106; collector/src/ingest/span-rows.ts).
// The OpenTelemetry exporter (@opentelemetry/otlp-exporter-base 0.223) counts such an export a
// success and says the rejection only through its diagnostics (diag.warn, seen only with
// OTEL_LOG_LEVEL or a diagnostics logger set): the spans were lost without a word.
//
// The exporter decodes every successful answer with the serializer it is made with
// (createOtlpHttpExportDelegate, a public factory of the package; protobuf and JSON answers
// alike, into { partialSuccess: { rejectedSpans, errorMessage } }). The serializer here is the
// exporter's own, also telling each rejection to a callback. Neither the exporter's handling of
// the answer nor its diagnostics message change, and no diagnostics logger is set.
import type { IExportTraceServiceResponse, ISerializer } from '@opentelemetry/otlp-transformer';
import { wholeHead } from './text.js';

/** How many spans an answer says were rejected (the JSON encoding sends the 64-bit count as a string), and why. */
export function rejectionOf(response: IExportTraceServiceResponse | undefined): { spans: number; message: string } | undefined {
  const partial = response?.partialSuccess;
  const spans = Number(partial?.rejectedSpans ?? 0);
  // a partial success with 0 rejected is a warning, or nothing at all (the OTLP specification): no span was lost
  if (!Number.isFinite(spans) || spans <= 0) return undefined;
  return { spans, message: typeof partial?.errorMessage === 'string' ? partial.errorMessage : '' };
}

/**
 * The serializer, also telling `onRejected` how many spans each answer says were rejected and why.
 * The answer goes on to the exporter as decoded; a failure to report changes nothing for it.
 */
export function reportingRejections<Request>(
  serializer: ISerializer<Request, IExportTraceServiceResponse>,
  onRejected: (spans: number, message: string) => void,
): ISerializer<Request, IExportTraceServiceResponse> {
  return {
    serializeRequest: (request) => serializer.serializeRequest(request),
    deserializeResponse: (data) => {
      const response = serializer.deserializeResponse(data);
      try {
        const rejection = rejectionOf(response);
        if (rejection) onRejected(rejection.spans, rejection.message);
      } catch {
        // telemetry about telemetry: never in the exporter's way
      }
      return response;
    },
  };
}

/** Characters of the collector's reason a message shows. */
export const REASON_MAX = 300;

/**
 * The collector's reason as a line on stderr may show it: on one line (control characters, a
 * terminal's escapes among them, as spaces), at most REASON_MAX characters, and without the
 * values of the headers the exporter sends (an API key), should a server quote them.
 */
export function shownReason(message: string, secrets: readonly string[] = []): string {
  let text = message;
  for (const secret of secrets) if (secret.length >= 8) text = text.split(secret).join('[redacted]');
  text = text.replace(/[\x00-\x1f\x7f-\x9f]+/g, ' ').trim();
  return text.length > REASON_MAX ? `${wholeHead(text, REASON_MAX)}…` : text;
}

/** The parts of header values that may be secrets: each value, and its words (`Bearer <key>`: the key). */
export function headerSecrets(headers: Record<string, string>): string[] {
  const harmless = new Set(['content-type', 'user-agent', 'content-encoding', 'accept', 'accept-encoding']);
  return Object.entries(headers)
    .filter(([name]) => !harmless.has(name.toLowerCase()))
    .flatMap(([, value]) => [value, ...value.split(/\s+/)])
    .filter((s) => s.length >= 8)
    .sort((a, b) => b.length - a.length); // the whole value before its words
}
