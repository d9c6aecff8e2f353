// OTLP protobuf encoding and decoding with protobufjs, from the upstream .proto definitions.
import { join } from 'node:path';
import Long from 'long';
import protobuf from 'protobufjs';
import { protoDir } from '../paths.js';
import type { TraceRequestIn } from './span-rows.js';

// Without Long, protobufjs turns fixed64 nanosecond timestamps into doubles and loses precision.
protobuf.util.Long = Long;
protobuf.configure();

const root = protobuf.loadSync(join(protoDir, 'otlp_trace.proto'));
const ExportTraceServiceRequest = root.lookupType('loopwatch.otlp.ExportTraceServiceRequest');
const ExportTraceServiceResponse = root.lookupType('loopwatch.otlp.ExportTraceServiceResponse');
const RpcStatus = root.lookupType('loopwatch.otlp.RpcStatus');

// protobufjs reads proto3 strings with `stringVerify`, which decodes UTF-8 in JavaScript (short
// strings by concatenating String.fromCharCode chunks into rope strings that every later use has to
// flatten) and rejects invalid UTF-8: one bad byte in one span refused the whole request with a 400
// (never retried), its good spans too. This reader decodes with Node's native decoder (flat
// strings, no intermediate garbage) and replaces invalid UTF-8 with U+FFFD, as the OTLP
// specification recommends to a receiver (opentelemetry-proto #845) and as the collector does for
// lone surrogates in JSON. As a BufferReader it also hands `bytes` fields over as views into the
// body instead of copies.
type ReaderState = { buf: Buffer; pos: number; len: number; uint32(): number };
const BufferReader = (protobuf as unknown as { BufferReader: new (buf: Buffer) => protobuf.Reader }).BufferReader;
class OtlpReader extends BufferReader {
  override stringVerify(this: ReaderState): string {
    const length = this.uint32();
    const start = this.pos;
    const end = start + length;
    if (end > this.len) throw new RangeError(`index out of range: ${this.pos} + ${length} > ${this.len}`);
    this.pos = end;
    if (length === 0) return '';
    return this.buf.toString('utf8', start, end); // invalid sequences become U+FFFD
  }
}

/** Decodes an ExportTraceServiceRequest; throws (with protobufjs' message) on malformed input. */
export function decodeTraceRequest(body: Uint8Array): TraceRequestIn {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  return ExportTraceServiceRequest.decode(new OtlpReader(buf)) as unknown as TraceRequestIn;
}

export function encodeTraceRequest(req: object): Uint8Array {
  return ExportTraceServiceRequest.encode(ExportTraceServiceRequest.fromObject(req)).finish();
}

export function encodeTraceResponse(rejectedSpans: number, errorMessage: string): Uint8Array {
  const msg = rejectedSpans > 0 || errorMessage ? { partialSuccess: { rejectedSpans, errorMessage } } : {};
  return ExportTraceServiceResponse.encode(ExportTraceServiceResponse.fromObject(msg)).finish();
}

export function decodeTraceResponse(body: Uint8Array): { partialSuccess?: { rejectedSpans?: Long | number; errorMessage?: string } } {
  return ExportTraceServiceResponse.toObject(ExportTraceServiceResponse.decode(body)) as never;
}

export function encodeRpcStatus(code: number, message: string): Uint8Array {
  return RpcStatus.encode(RpcStatus.fromObject({ code, message })).finish();
}

export function decodeRpcStatus(body: Uint8Array): { code?: number; message?: string } {
  return RpcStatus.toObject(RpcStatus.decode(body)) as never;
}
