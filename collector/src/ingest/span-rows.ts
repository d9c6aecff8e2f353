// Turns decoded OTLP trace data (from protobuf or JSON; both decoders hand over the same
// shape) into rows of `otel_traces`, the OpenTelemetry Collector ClickHouse exporter's layout.
// Spans that are malformed in themselves (bad ids, attributes over a limit) are rejected one by
// one and reported as OTLP partial success; limits that protect the collector reject the whole request.
import type Long from 'long';
import { AGENT_ATTRIBUTES, SESSION_ATTRIBUTES } from '../../../instrumentation/src/attributes.js';
import { canonicalJson, hash64Hex } from '../../../instrumentation/src/canonical.js';
import { wholeHead } from '../../../instrumentation/src/text.js';

/** A 64-bit unsigned value as either decoder delivers it. */
export type U64 = Long | string | number | bigint | null | undefined;
/** Bytes as protobuf delivers them, or the hex / base64 text of OTLP JSON. */
export type Bytes = Uint8Array | string | null | undefined;

export interface AnyValueIn {
  stringValue?: string | null;
  boolValue?: boolean | null;
  intValue?: U64;
  doubleValue?: number | string | null;
  arrayValue?: { values?: AnyValueIn[] | null } | null;
  kvlistValue?: { values?: KeyValueIn[] | null } | null;
  bytesValue?: Bytes;
}
export interface KeyValueIn {
  key?: string | null;
  value?: AnyValueIn | null;
}
export interface SpanIn {
  traceId?: Bytes;
  spanId?: Bytes;
  traceState?: string | null;
  parentSpanId?: Bytes;
  name?: string | null;
  kind?: number | string | null;
  startTimeUnixNano?: U64;
  endTimeUnixNano?: U64;
  attributes?: KeyValueIn[] | null;
  events?: { timeUnixNano?: U64; name?: string | null; attributes?: KeyValueIn[] | null }[] | null;
  links?: { traceId?: Bytes; spanId?: Bytes; traceState?: string | null; attributes?: KeyValueIn[] | null }[] | null;
  status?: { code?: number | string | null; message?: string | null } | null;
}
export interface TraceRequestIn {
  resourceSpans?:
    | {
        resource?: { attributes?: KeyValueIn[] | null } | null;
        scopeSpans?: { scope?: { name?: string | null; version?: string | null } | null; spans?: SpanIn[] | null }[] | null;
      }[]
    | null;
}

/**
 * One row of otel_traces as positional values in SPAN_COLUMNS order (Nested columns
 * flattened): the shape JSONCompactEachRow wants, built directly to skip a keyed object.
 */
export type SpanRow = [
  Timestamp: string,
  TraceId: string,
  SpanId: string,
  ParentSpanId: string,
  TraceState: string,
  SpanName: string,
  SpanKind: string,
  ServiceName: string,
  ResourceAttributes: Record<string, string>,
  ScopeName: string,
  ScopeVersion: string,
  SpanAttributes: Record<string, string>,
  Duration: string,
  StatusCode: string,
  StatusMessage: string,
  EventsTimestamp: string[],
  EventsName: string[],
  EventsAttributes: Record<string, string>[],
  LinksTraceId: string[],
  LinksSpanId: string[],
  LinksTraceState: string[],
  LinksAttributes: Record<string, string>[],
];

/** otel_traces columns in SpanRow order. */
export const SPAN_COLUMNS = [
  'Timestamp', 'TraceId', 'SpanId', 'ParentSpanId', 'TraceState', 'SpanName', 'SpanKind', 'ServiceName',
  'ResourceAttributes', 'ScopeName', 'ScopeVersion', 'SpanAttributes', 'Duration', 'StatusCode', 'StatusMessage',
  'Events.Timestamp', 'Events.Name', 'Events.Attributes', 'Links.TraceId', 'Links.SpanId', 'Links.TraceState', 'Links.Attributes',
] as const;

/** The INSERT a batch of serialized rows goes into the store with. */
export const SPAN_INSERT_SQL = `INSERT INTO otel_traces (${SPAN_COLUMNS.map((c) => `\`${c}\``).join(', ')}) FORMAT JSONCompactEachRow`;

/**
 * Rows as JSONCompactEachRow text: positional arrays parse about twice as fast in ClickHouse
 * as keyed objects (measured with bench/ingest), and the spool stores exactly this text.
 */
export function serializeRows(rows: SpanRow[]): Buffer {
  // Each row's JSON goes straight into a reused scratch buffer: no joined text of the whole
  // request, no second UTF-8 pass over it (this was ~3x the cost of JSON.stringify itself).
  let off = 0;
  for (const r of rows) {
    let line = JSON.stringify(r);
    if (line.includes('\\u')) line = wellFormedEscapes(line);
    off = writeLine(line, off);
  }
  const out = Buffer.from(scratch.subarray(0, off));
  if (scratch.length > SCRATCH_KEEP) scratch = Buffer.allocUnsafe(SCRATCH_BYTES); // a huge request's buffer is not kept
  return out;
}

const SCRATCH_BYTES = 1 << 20;
const SCRATCH_KEEP = 16 << 20;
let scratch = Buffer.allocUnsafe(SCRATCH_BYTES);

/** Writes `line` and a newline at `off` in the scratch buffer (growing it); returns the new end. */
function writeLine(line: string, off: number): number {
  let need = off + line.length * 3 + 1; // UTF-8 takes at most 3 bytes per UTF-16 unit
  // past the buffer by that bound, the exact size: a large ASCII request grew it to 3x its rows
  if (need > scratch.length) need = off + Buffer.byteLength(line, 'utf8') + 1;
  if (need > scratch.length) {
    const grown = Buffer.allocUnsafe(Math.max(need, scratch.length * 2));
    scratch.copy(grown, 0, 0, off);
    scratch = grown;
  }
  off += scratch.write(line, off, 'utf8');
  scratch[off] = 10;
  return off + 1;
}

// JSON.stringify writes an unpaired UTF-16 surrogate (from a protobuf string with bad UTF-8 or a
// JSON "\ud800") as the escape \udXXX; ClickHouse refuses the whole insert over it (found by
// fuzzing). Paired surrogates are written as raw UTF-8, so every such escape (one not itself
// escaped, i.e. after an even number of backslashes) is unpaired: replace it with U+FFFD.
const LONE_SURROGATE_ESCAPE = /(?<=(?:^|[^\\])(?:\\\\)*)\\ud[89a-f][0-9a-f]{2}/gi;
function wellFormedEscapes(text: string): string {
  return text.replace(LONE_SURROGATE_ESCAPE, '\\ufffd');
}

/** Attributes that carry a tool call's arguments or result (the conventions the views read), and the hash attribute each one's identity goes to. */
const HASH_OF_CONTENT: Record<string, string> = {
  'gen_ai.tool.call.arguments': 'loopwatch.tool.args_hash', 'input.value': 'loopwatch.tool.args_hash', 'ai.toolCall.args': 'loopwatch.tool.args_hash',
  'gen_ai.tool.call.result': 'loopwatch.tool.result_hash', 'output.value': 'loopwatch.tool.result_hash',
  'ai.toolCall.result': 'loopwatch.tool.result_hash', 'ai.toolCall.output': 'loopwatch.tool.result_hash',
  'traceloop.entity.input': 'loopwatch.tool.args_hash', 'traceloop.entity.output': 'loopwatch.tool.result_hash',
  'tool_arguments': 'loopwatch.tool.args_hash', 'tool_response': 'loopwatch.tool.result_hash',
  'gcp.vertex.agent.tool_call_args': 'loopwatch.tool.args_hash', 'gcp.vertex.agent.tool_response': 'loopwatch.tool.result_hash',
};

/** What a value cut to the attribute length limit ends with. */
export const TRUNCATED = '…[truncated]';

export interface IngestLimits {
  /** Most attributes one span, event, link or resource may carry. */
  maxAttributes: number;
  /**
   * Longest attribute key (longer: 400) or value, span name, status message and event name
   * (longer: cut, see TRUNCATED), in characters after conversion to text, as stored: a control
   * character counts as its JSON escape (6 characters; \n, \t and the like 2).
   */
  maxAttributeLength: number;
  /** Deepest nesting of array / key-value-list attribute values. */
  maxValueDepth: number;
  /** Most spans in one request. */
  maxSpansPerRequest: number;
  /**
   * The store's retention: a span that started before it is rejected (the TTL would delete it
   * at the next merge, after the collector acknowledged it). Unset: no such check.
   */
  retentionDays?: number;
}

/** The request as a whole is unacceptable: answer 400 with this message. */
export class BadRequestError extends Error {
  override readonly name = 'BadRequestError';
}

export interface ConvertResult {
  rows: SpanRow[];
  rejectedSpans: number;
  rejectReason: string;
}

// The exporter writes the short pdata names; older exporter versions wrote the proto enum
// names (SPAN_KIND_SERVER, STATUS_CODE_ERROR). Readers of the table accept both.
const SPAN_KINDS = ['Unspecified', 'Internal', 'Server', 'Client', 'Producer', 'Consumer'];
const STATUS_CODES = ['Unset', 'Ok', 'Error'];
const SPAN_KIND_NAMES: Record<string, number> = {
  SPAN_KIND_UNSPECIFIED: 0, SPAN_KIND_INTERNAL: 1, SPAN_KIND_SERVER: 2, SPAN_KIND_CLIENT: 3, SPAN_KIND_PRODUCER: 4, SPAN_KIND_CONSUMER: 5,
};
const STATUS_CODE_NAMES: Record<string, number> = { STATUS_CODE_UNSET: 0, STATUS_CODE_OK: 1, STATUS_CODE_ERROR: 2 };

function enumIndex(v: number | string | null | undefined, names: Record<string, number>): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === 'number') return v;
  return names[v] ?? -1;
}

const HEX = /^[0-9a-fA-F]*$/;
const ALL_ZERO = /^0+$/;

/**
 * Whether an AnyValue field is set. Decoded protobuf messages hold set fields as own
 * properties (defaults live on the prototype); validated JSON objects only have the keys sent.
 */
function has<K extends keyof AnyValueIn>(v: AnyValueIn, key: K): boolean {
  return Object.hasOwn(v, key) && v[key] !== null && v[key] !== undefined;
}

/** Lower-case hex of an id; '' when absent; null when malformed (wrong length or not hex). */
export function idToHex(v: Bytes, bytes: number): string | null {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') {
    if (v.length === 0) return '';
    return v.length === bytes * 2 && HEX.test(v) ? v.toLowerCase() : null;
  }
  if (v.length === 0) return '';
  if (v.length !== bytes) return null;
  return (Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength)).toString('hex');
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
/**
 * OTLP/JSON writes ids as hex; a generic protobuf-to-JSON serializer writes bytes as base64 (the
 * proto3 JSON mapping), an easy mistake in a hand-made exporter: said when an id looks like it.
 */
function base64Hint(v: Bytes, bytes: number): string {
  return typeof v === 'string' && v.length === 4 * Math.ceil(bytes / 3) && BASE64.test(v) && !HEX.test(v)
    ? `; it looks base64-encoded: OTLP/JSON ids are ${2 * bytes} hex digits`
    : '';
}

const TWO_32 = 4294967296n;
/** The latest instant DateTime64(9) holds (2262-04-11T23:47:16.854775807Z); later ones make the store refuse the whole insert. */
export const MAX_NANOS = 2n ** 63n - 1n;

/**
 * The latest time the store's TTL can hold: 2106-02-07T06:28:15Z. The tables' TTL is the start
 * as 32-bit seconds (toDateTime) plus the retention, so a start later than this less the
 * retention wrapped around to the 1970s and the row was deleted as long expired: acknowledged,
 * then lost without a word.
 */
const MAX_TTL_SECONDS = 2n ** 32n - 1n;

/** A u64 as bigint; null when it is not a non-negative integer. */
export function u64(v: U64): bigint | null {
  if (v === null || v === undefined) return 0n;
  if (typeof v === 'bigint') return v >= 0n ? v : null;
  if (typeof v === 'number') return Number.isInteger(v) && v >= 0 && v < 2 ** 64 ? BigInt(v) : null;
  if (typeof v === 'string') return /^\d{1,20}$/.test(v) ? BigInt(v) : null;
  return BigInt(v.high >>> 0) * TWO_32 + BigInt(v.low >>> 0);
}

/**
 * Nanoseconds since the epoch as the decimal seconds text DateTime64(9) parses exactly. The
 * seconds are zero-padded to 10 digits: best_effort parsing reads a shorter "1.412500723" as a
 * day of month and refuses the whole insert (found by fuzzing).
 */
export function nanosToDateTime64(ns: bigint): string {
  const s = ns.toString().padStart(19, '0');
  return `${s.slice(0, -9)}.${s.slice(-9)}`;
}

function int64Text(v: U64): string {
  if (v === null || v === undefined) return '0';
  if (typeof v === 'object') return v.toString(); // Long knows its own sign
  // a JSON number past 2^53: String() prints the shortest text that reads back as the same double
  // (2^60 as 1152921504606847000), not the integer it is (the protobuf path stores it exactly)
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v).toString();
  return String(v);
}

function bytesText(v: Bytes): string {
  if (v === null || v === undefined) return '';
  return typeof v === 'string' ? v : Buffer.from(v).toString('base64');
}

const DAY_MS = 86_400_000;

/** Nanoseconds as ISO-8601 (to the millisecond; years past 9999 as JavaScript writes them). */
function nanosIso(ns: bigint): string {
  const d = new Date(Number(ns / 1_000_000n));
  return Number.isNaN(d.getTime()) ? `${ns} ns` : d.toISOString();
}

// Rows are stored as JSON (the spool's and the insert's format), which writes a control character
// as a 6-character escape (\u0001; \n and the like as 2): a value of them grew 6x once
// serialized, past every limit (a 77 KiB gzip request took 3.6 GB). The length limit counts the
// characters stored, so it bounds the stored rows as it bounds plain text.
const CONTROL = /[\u0000-\u001f]/;
const SHORT_ESCAPES = new Set([8, 9, 10, 12, 13]); // \b \t \n \f \r

/** Whether `text` is at most `max` characters once stored (control characters as their escapes). */
function fitsStored(text: string, max: number): boolean {
  if (text.length > max) return false;
  return text.length * 6 <= max || !CONTROL.test(text) || storedPrefix(text, max) === text.length;
}

/** The longest start of `text` that is at most `max` characters stored. */
function cutStored(text: string, max: number): string {
  return text.slice(0, storedPrefix(text, max));
}

/**
 * How many characters of `text` fit in `max` stored characters, never ending between the halves
 * of a surrogate pair: the store keeps a lone half as U+FFFD, a character the value never had.
 */
function storedPrefix(text: string, max: number): number {
  let n = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    n += c >= 0x20 ? 1 : SHORT_ESCAPES.has(c) ? 2 : 6;
    if (n > max) return wholeHead(text, i).length;
  }
  return text.length;
}

class Converter {
  /** Spans that started before this (nanoseconds) are outside the retention. */
  private readonly oldestStart: bigint;
  /** Spans that start after this (nanoseconds) would expire at once: their TTL wraps past 2106. */
  private readonly latestStart: bigint;
  constructor(private readonly limits: IngestLimits) {
    this.oldestStart = limits.retentionDays ? BigInt(Date.now() - limits.retentionDays * DAY_MS) * 1_000_000n : 1n;
    // a day of margin: a server not in UTC adds the retention's days by its own calendar, and a
    // start in its summer time kept its local hour, an hour past the limit (a review)
    this.latestStart = (MAX_TTL_SECONDS - (BigInt(Math.trunc(limits.retentionDays ?? 0)) + 1n) * 86_400n) * 1_000_000_000n;
  }

  private tooLong(what: string): never {
    throw new BadRequestError(`${what} is longer than ${this.limits.maxAttributeLength} characters`);
  }

  /**
   * A value or span name over the limit is cut to it, ending in TRUNCATED, as the OpenTelemetry
   * SDKs' own attribute limits do: one long error message or captured argument must not cost the
   * request's other spans (a 400 refuses them all, and exporters do not retry it).
   */
  private fit(text: string): string {
    const max = this.limits.maxAttributeLength;
    return fitsStored(text, max) ? text : cutStored(text, Math.max(0, max - TRUNCATED.length)) + TRUNCATED;
  }

  /** An attribute value as the ClickHouse exporter stores it: scalars as text, arrays and maps as JSON. */
  valueText(v: AnyValueIn | null | undefined): string {
    if (!v) return '';
    if (has(v, 'stringValue')) return v.stringValue!;
    if (has(v, 'intValue')) return int64Text(v.intValue);
    if (has(v, 'boolValue')) return v.boolValue ? 'true' : 'false';
    if (has(v, 'doubleValue')) return String(v.doubleValue);
    if (has(v, 'bytesValue')) return bytesText(v.bytesValue);
    if (has(v, 'arrayValue') || has(v, 'kvlistValue')) return JSON.stringify(this.plain(v, 1));
    return '';
  }

  private plain(v: AnyValueIn | null | undefined, depth: number): unknown {
    if (depth > this.limits.maxValueDepth) {
      throw new BadRequestError(`attribute value nested deeper than ${this.limits.maxValueDepth} levels`);
    }
    if (!v) return null;
    if (has(v, 'arrayValue')) return (v.arrayValue!.values ?? []).map((x) => this.plain(x, depth + 1));
    if (has(v, 'kvlistValue')) {
      // without a prototype: a key named __proto__ is a key like any other, not dropped
      const o: Record<string, unknown> = Object.create(null) as Record<string, unknown>;
      for (const kv of v.kvlistValue!.values ?? []) o[kv.key ?? ''] = this.plain(kv.value, depth + 1);
      return o;
    }
    if (has(v, 'boolValue')) return v.boolValue;
    if (has(v, 'doubleValue')) return Number(v.doubleValue);
    if (has(v, 'intValue')) {
      const t = int64Text(v.intValue);
      const n = Number(t);
      return Number.isSafeInteger(n) ? n : t;
    }
    return this.valueText(v);
  }

  attributes(kvs: KeyValueIn[] | null | undefined, where: string): Record<string, string> {
    // without a prototype: attributes named __proto__ or constructor are stored as they came
    const out: Record<string, string> = Object.create(null) as Record<string, string>;
    if (!kvs) return out;
    if (kvs.length > this.limits.maxAttributes) {
      throw new BadRequestError(`${where} has ${kvs.length} attributes, more than the limit of ${this.limits.maxAttributes}`);
    }
    const max = this.limits.maxAttributeLength;
    let cutContent: [hashKey: string, value: string][] | undefined;
    for (const kv of kvs) {
      const key = kv.key ?? '';
      if (!fitsStored(key, max)) this.tooLong(`attribute key on ${where}`);
      let value: string;
      try {
        value = this.valueText(kv.value);
      } catch (err) {
        if (err instanceof BadRequestError) throw new BadRequestError(`${where}: ${err.message}`);
        throw err;
      }
      if (fitsStored(value, max)) {
        out[key] = value;
        continue;
      }
      const hashKey = Object.hasOwn(HASH_OF_CONTENT, key) ? HASH_OF_CONTENT[key] : undefined;
      if (hashKey !== undefined) (cutContent ??= []).push([hashKey, value]);
      out[key] = this.fit(value);
    }
    // A tool call's arguments or result cut to the limit would be hashed cut by the view: calls
    // that differ past the cut (a 70 KB file written five times) were one call, a false repeat.
    // Their hash is taken here, over the whole value, as the instrumentation takes it.
    if (cutContent) {
      for (const [hashKey, value] of cutContent) {
        if (hashKey in out) continue;
        try {
          out[hashKey] = hash64Hex(canonicalJson(value));
        } catch {
          // text nested too deep to walk (any request may carry one): the view hashes the cut text, as before
        }
      }
    }
    return out;
  }

  convert(req: TraceRequestIn): ConvertResult {
    const rows: SpanRow[] = [];
    let rejected = 0;
    let reason = '';
    let seen = 0;
    for (const rs of req.resourceSpans ?? []) {
      const resourceAttributes = this.attributes(rs.resource?.attributes, 'resource');
      const serviceName = resourceAttributes['service.name'] ?? '';
      for (const ss of rs.scopeSpans ?? []) {
        const scopeName = ss.scope?.name ?? '';
        const scopeVersion = ss.scope?.version ?? '';
        for (const span of ss.spans ?? []) {
          if (++seen > this.limits.maxSpansPerRequest) {
            throw new BadRequestError(`request has more than ${this.limits.maxSpansPerRequest} spans`);
          }
          const row = this.row(span, resourceAttributes, serviceName, scopeName, scopeVersion);
          if (typeof row === 'string') {
            rejected++;
            reason ||= row;
            continue;
          }
          rows.push(row);
        }
      }
    }
    fillTraceConversation(rows);
    return { rows, rejectedSpans: rejected, rejectReason: reason };
  }

  /** The span's row, or why the span is rejected. */
  private row(span: SpanIn, resourceAttributes: Record<string, string>, serviceName: string, scopeName: string, scopeVersion: string): SpanRow | string {
    const traceId = idToHex(span.traceId, 16);
    if (!traceId || ALL_ZERO.test(traceId)) return `span with missing or invalid trace_id (16 bytes, not all zero${base64Hint(span.traceId, 16)})`;
    const spanId = idToHex(span.spanId, 8);
    if (!spanId || ALL_ZERO.test(spanId)) return `span with missing or invalid span_id (8 bytes, not all zero${base64Hint(span.spanId, 8)})`;
    const parentSpanId = idToHex(span.parentSpanId, 8);
    if (parentSpanId === null) return 'span with invalid parent_span_id (8 bytes)';
    const start = u64(span.startTimeUnixNano);
    const end = u64(span.endTimeUnixNano);
    if (start === null || end === null) return 'span with invalid start/end time (unsigned 64-bit nanoseconds)';
    if (start > MAX_NANOS || end > MAX_NANOS) return 'span with start/end time past 2262-04-11 (the store keeps nanoseconds as a signed 64-bit number)';
    if (start === 0n) return 'span without a start time (start_time_unix_nano is 0)';
    if (start > this.latestStart) {
      return `span that starts ${nanosIso(start)}, after ${nanosIso(this.latestStart)}, the latest start whose retention of ${this.limits.retentionDays} days ends by 2106-02-07 (the store's TTL holds times to then): the sender's clock is wrong`;
    }
    if (start < this.oldestStart) {
      return `span that started ${nanosIso(start)}, before the retention window (${this.limits.retentionDays} days): the store would delete it at once`;
    }
    const kind = SPAN_KINDS[enumIndex(span.kind, SPAN_KIND_NAMES)];
    if (kind === undefined) return `span with unknown kind ${String(span.kind)}`;
    const status = STATUS_CODES[enumIndex(span.status?.code, STATUS_CODE_NAMES)];
    if (status === undefined) return `span with unknown status code ${String(span.status?.code)}`;
    const events = span.events ?? [];
    for (const e of events) {
      const t = u64(e.timeUnixNano);
      if (t === null || t > MAX_NANOS) return 'span with an event time that is not unsigned 64-bit nanoseconds before 2262-04-11';
    }
    const links = span.links ?? [];
    const spanName = this.fit(span.name ?? '');
    // attributes of the span's own over a limit (too many on it, an event or a link; a key too
    // long; a value nested too deep): that span rejected (partial success), not the request's
    // other spans with it (exporters do not retry a 400: they were lost too). Only the resource's,
    // shared by its spans, refuse the request.
    let attributes: Record<string, string>;
    let eventAttributes: Record<string, string>[];
    let linkAttributes: Record<string, string>[];
    // named in the message by at most 100 characters (a name near the limit made a 130,000-character answer)
    const named = `span '${nameHead(spanName)}'`;
    try {
      attributes = this.attributes(span.attributes, named);
      eventAttributes = events.map((e) => this.attributes(e.attributes, `event '${nameHead(e.name ?? '')}' of ${named}`));
      linkAttributes = links.map((l) => this.attributes(l.attributes, `a link of ${named}`));
    } catch (err) {
      if (err instanceof BadRequestError) return err.message;
      throw err;
    }
    return [
      nanosToDateTime64(start),
      traceId,
      spanId,
      parentSpanId,
      span.traceState ?? '',
      spanName,
      kind,
      serviceName,
      resourceAttributes,
      scopeName,
      scopeVersion,
      attributes,
      (end > start ? end - start : 0n).toString(),
      status,
      this.fit(span.status?.message ?? ''),
      events.map((e) => nanosToDateTime64(u64(e.timeUnixNano) ?? 0n)),
      events.map((e) => this.fit(e.name ?? '')),
      eventAttributes,
      links.map((l) => idToHex(l.traceId, 16) ?? ''),
      links.map((l) => idToHex(l.spanId, 8) ?? ''),
      links.map((l) => l.traceState ?? ''),
      linkAttributes,
    ];
  }
}

/** A name as a message shows it: its first 100 UTF-16 units, not ending in half a surrogate pair, and a mark when cut. */
function nameHead(name: string): string {
  return name.length <= 100 ? name : `${wholeHead(name, 100)}…`;
}

/** A tool span that names no operation, as queries/schema/015 takes it (pydantic-ai's older spans). */
function isUnnamedGenAiTool(a: Record<string, string>, spanName: string): boolean {
  return !!a['gen_ai.tool.name'] && (spanName.startsWith('execute_tool ') || spanName === 'running tool');
}

/**
 * The GenAI conventions put gen_ai.conversation.id on inference and agent spans, not on
 * execute_tool spans, and gen_ai.agent.name on invoke_agent spans: an instrumentation that
 * follows them to the letter left its tool calls in the trace's session (the model calls in the
 * conversation's), without their tokens and cost, and a conversation over several traces split.
 * A GenAI span (gen_ai.operation.name, or an unnamed tool span) that names no session takes the conversation, and the
 * agent, that the other spans of its trace in the same request name, when they name one only;
 * `loopwatch.conversation_from` / `loopwatch.agent_from` = trace say so. Within one request
 * only: a retried export is the same rows (no state carried between requests), and spans of a
 * trace exported in other batches keep the trace as their session.
 */
function fillTraceConversation(rows: SpanRow[]): void {
  let conversation: Map<string, string | null> | undefined;
  let agent: Map<string, string | null> | undefined;
  const note = (map: Map<string, string | null>, trace: string, value: string) => {
    const prev = map.get(trace);
    map.set(trace, prev === undefined || prev === value ? value : null); // two in one trace: neither
  };
  for (const r of rows) {
    const a = r[11];
    const c = a['gen_ai.conversation.id'];
    if (c) note((conversation ??= new Map()), r[1], c);
    const g = a['gen_ai.agent.name'];
    if (g) note((agent ??= new Map()), r[1], g);
  }
  if (!conversation && !agent) return;
  for (const r of rows) {
    const a = r[11];
    // GenAI spans: named operations, and pydantic-ai's older tool spans, which name none (the
    // tool view takes them by their name). Not spans that only carry gen_ai.system: the AI SDK's,
    // OpenLLMetry's (its Responses API spans have nothing else) and OpenInference's LLM spans do,
    // and their tool spans are not filled: the LLM calls would leave them (Google ADK's LLM spans,
    // which name no operation either, carry their session)
    if (!a['gen_ai.operation.name'] && !isUnnamedGenAiTool(a, r[5])) continue;
    const c = conversation?.get(r[1]);
    if (c && !SESSION_ATTRIBUTES.some((k) => a[k])) {
      a['gen_ai.conversation.id'] = c;
      a['loopwatch.conversation_from'] = 'trace';
    }
    const g = agent?.get(r[1]);
    if (g && !AGENT_ATTRIBUTES.some((k) => a[k])) {
      a['gen_ai.agent.name'] = g;
      a['loopwatch.agent_from'] = 'trace';
    }
  }
}

export function toSpanRows(req: TraceRequestIn, limits: IngestLimits): ConvertResult {
  return new Converter(limits).convert(req);
}
