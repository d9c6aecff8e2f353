// OTLP/JSON (the protobuf JSON mapping with OTLP's exceptions: hex trace/span ids, integer
// enums, 64-bit integers as strings or numbers), validated with zod into the shape the
// protobuf decoder delivers, so one converter serves both.
import { z } from 'zod';
import { BadRequestError, type TraceRequestIn } from './span-rows.js';

// Numbers past 2^53 arrive already rounded by JSON.parse (nanosecond timestamps to ~256 ns);
// exporters that need exact values send strings, as OTLP/JSON allows.
const integer = z.number().refine(Number.isInteger, 'must be an integer');
const u64 = z.union([z.string().regex(/^\d{1,20}$/, 'must be an unsigned integer'), integer.refine((n) => n >= 0, 'must be unsigned')]);
const i64 = z.union([z.string().regex(/^-?\d{1,20}$/, 'must be an integer'), integer]);
const enumValue = z.union([z.number().int(), z.string()]);
// the proto3 JSON mapping takes a double as a number or a string ("1.5", "1e3", "NaN", "Infinity")
const double = z.union([
  z.number(),
  z.enum(['NaN', 'Infinity', '-Infinity']),
  z.string().regex(/^-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/, 'must be a number').transform(Number),
]);
const text = z.string().nullish();

type AnyValueJson = {
  stringValue?: string | null | undefined;
  boolValue?: boolean | null | undefined;
  intValue?: string | number | null | undefined;
  doubleValue?: number | string | null | undefined;
  arrayValue?: { values?: AnyValueJson[] | null | undefined } | null | undefined;
  kvlistValue?: { values?: KeyValueJson[] | null | undefined } | null | undefined;
  bytesValue?: string | null | undefined;
};
type KeyValueJson = { key?: string | null | undefined; value?: AnyValueJson | null | undefined };

const anyValue: z.ZodType<AnyValueJson> = z.lazy(() =>
  z.object({
    stringValue: text,
    boolValue: z.boolean().nullish(),
    intValue: i64.nullish(),
    doubleValue: double.nullish(),
    arrayValue: z.object({ values: z.array(anyValue).nullish() }).nullish(),
    kvlistValue: z.object({ values: z.array(keyValue).nullish() }).nullish(),
    bytesValue: z.string().nullish(),
  }),
);
const keyValue: z.ZodType<KeyValueJson> = z.lazy(() => z.object({ key: text, value: anyValue.nullish() }));
const attributes = z.array(keyValue).nullish();

const span = z.object({
  traceId: text,
  spanId: text,
  traceState: text,
  parentSpanId: text,
  name: text,
  kind: enumValue.nullish(),
  startTimeUnixNano: u64.nullish(),
  endTimeUnixNano: u64.nullish(),
  attributes,
  events: z.array(z.object({ timeUnixNano: u64.nullish(), name: text, attributes })).nullish(),
  links: z.array(z.object({ traceId: text, spanId: text, traceState: text, attributes })).nullish(),
  status: z.object({ code: enumValue.nullish(), message: text }).nullish(),
});

const traceRequest = z.object({
  resourceSpans: z
    .array(
      z.object({
        resource: z.object({ attributes }).nullish(),
        scopeSpans: z.array(z.object({ scope: z.object({ name: text, version: text }).nullish(), spans: z.array(span).nullish() })).nullish(),
      }),
    )
    .nullish(),
});

/** Parses and validates an OTLP/JSON ExportTraceServiceRequest; throws BadRequestError with the first problem. */
export function decodeTraceRequestJson(body: Uint8Array): TraceRequestIn {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'));
  } catch (err) {
    throw new BadRequestError(`body is not valid JSON: ${(err as Error).message}`);
  }
  const result = traceRequest.safeParse(parsed);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new BadRequestError(`invalid OTLP/JSON at ${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'invalid'}`);
  }
  return result.data as TraceRequestIn;
}
