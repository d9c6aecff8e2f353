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

/** Decodes an ExportTraceServiceRequest; throws (with protobufjs' message) on malformed input. */
export function decodeTraceRequest(body: Uint8Array): TraceRequestIn {
  return ExportTraceServiceRequest.decode(body) as unknown as TraceRequestIn;
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
