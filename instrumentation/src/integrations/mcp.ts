// Model Context Protocol client: instrumentMcpClient(client) makes every callTool an
// `execute_tool {name}` span through traceTool (argument/result hashes, capture options, loop
// guard hooks). A result with isError: true is a failed call (span status ERROR, error.type
// McpToolError) while the caller still gets the result. The call's trace context goes to the
// server in the request's params._meta (traceparent, tracestate, baggage), as the OpenTelemetry
// MCP conventions have it: a server that traces its side puts its spans under the agent's call.
// Types only from @modelcontextprotocol/sdk.
import { context, propagation } from '@opentelemetry/api';
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { traceTool } from '../api.js';
import { markOnce } from './llm-span.js';
import { contentText, ToolResultError, unwrapToolResult } from './tool-error.js';

const INSTRUMENTED = Symbol.for('loopwatch.mcp');

type CallTool = Client['callTool'];
type CallParams = Parameters<CallTool>[0];

export interface InstrumentMcpOptions {
  /** Recorded as mcp.server.name (default: the server's name from the initialize handshake). */
  serverName?: string;
}

/** Traces the client's callTool; returns the same client. */
export function instrumentMcpClient<T extends object>(client: T, opts: InstrumentMcpOptions = {}): T {
  if (!markOnce(client, INSTRUMENTED)) return client;
  const c = client as unknown as Pick<Client, 'callTool'> & { getServerVersion?: () => { name?: string } | undefined };
  const original = c.callTool;
  if (typeof original !== 'function') return client;
  const traced = new Map<string, (...args: Parameters<CallTool>) => ReturnType<CallTool>>();
  const forTool = (name: string, self: unknown) => {
    let fn = traced.get(name);
    if (!fn) {
      const server = opts.serverName ?? c.getServerVersion?.()?.name;
      const attributes: Record<string, string> = { 'mcp.method.name': 'tools/call' };
      if (server) attributes['mcp.server.name'] = server;
      fn = traceTool(
        name,
        async (...args: Parameters<CallTool>) => {
          const result = await original.apply(self, withTraceContext(args));
          if (result && (result as { isError?: unknown }).isError === true) {
            const text = contentText((result as { content?: unknown }).content) || `MCP tool ${name} returned isError`;
            throw new ToolResultError(text, result, 'McpToolError');
          }
          return result;
        },
        {
          type: 'extension',
          attributes,
          argsOf: (args) => (args[0] as CallParams | undefined)?.arguments ?? {},
          resultOf: (r) => {
            const res = r as { structuredContent?: unknown; content?: unknown };
            return res?.structuredContent ?? res?.content;
          },
        },
      );
      traced.set(name, fn);
    }
    return fn;
  };
  c.callTool = function (this: unknown, ...args: Parameters<CallTool>) {
    const name = args[0]?.name ?? 'unknown';
    return unwrapToolResult(forTool(name, this ?? client)(...args));
  } as CallTool;
  return client;
}

/**
 * The call's arguments with its trace context added to params._meta: a copy (the caller's params
 * are left as they were; a _meta of theirs is kept, their own trace keys win). Nothing is added
 * when no propagator is registered (OTEL_PROPAGATORS=none) or the call is not traced.
 */
function withTraceContext(args: Parameters<CallTool>): Parameters<CallTool> {
  const [params, ...rest] = args;
  if (params === null || typeof params !== 'object') return args;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  if (Object.keys(carrier).length === 0) return args;
  const meta = params._meta;
  return [{ ...params, _meta: { ...carrier, ...(meta !== null && typeof meta === 'object' ? meta : {}) } }, ...rest] as Parameters<CallTool>;
}
