// LangChain.js tools (@langchain/core StructuredTool, DynamicStructuredTool, tool()):
// instrumentLangChainTool(tool) / instrumentLangChainTools(tools) make every invoke an
// `execute_tool {name}` span through traceTool. Agents (LangGraph's ToolNode, createAgent) invoke
// tools with a ToolCall ({ name, args, id, type: 'tool_call' }): its args are the arguments, its
// id the call id, and the ToolMessage's content the result (a ToolMessage with status "error"
// is a failed call). The tool object itself is kept (bindTools and instanceof checks still work).
// Types only from @langchain/core (an optional peer dependency).
import type { StructuredToolInterface } from '@langchain/core/tools';
import { traceTool } from '../api.js';
import { markOnce } from './llm-span.js';
import { contentText, ToolResultError, unwrapToolResult } from './tool-error.js';

const INSTRUMENTED = Symbol.for('loopwatch.langchain');

interface ToolCallInput {
  type: 'tool_call';
  id?: string;
  name?: string;
  args: unknown;
}

function isToolCall(v: unknown): v is ToolCallInput {
  return !!v && typeof v === 'object' && (v as { type?: unknown }).type === 'tool_call' && 'args' in v;
}

function isToolMessage(v: unknown): v is { content: unknown; status?: string; tool_call_id?: string } {
  return !!v && typeof v === 'object' && 'content' in v && 'tool_call_id' in v;
}

/** What the wrapper needs of a tool (StructuredToolInterface has it; declared here so the types do not need @langchain/core). */
export interface Invokable {
  name: string;
  invoke: (...args: never[]) => unknown;
}
// compile-time check against @langchain/core's own interface
const fits: (t: Pick<StructuredToolInterface, 'name' | 'invoke'>) => Invokable = (t) => t;
void fits;

/** Traces one tool's invoke; returns the same tool. */
export function instrumentLangChainTool<T extends Invokable>(tool: T): T {
  if (!markOnce(tool, INSTRUMENTED)) return tool;
  const original = tool.invoke as unknown as (input: unknown, config?: unknown) => Promise<unknown>;
  const traced = traceTool(
    tool.name,
    async (input: unknown, config?: unknown) => {
      const out = await original.call(tool, input, config);
      if (isToolMessage(out) && out.status === 'error') throw new ToolResultError(contentText(out.content) || `tool ${tool.name} failed`, out, 'ToolMessageError');
      return out;
    },
    {
      callId: (args) => (isToolCall(args[0]) ? args[0].id : undefined),
      argsOf: (args) => (isToolCall(args[0]) ? args[0].args : args[0]),
      resultOf: (r) => (isToolMessage(r) ? r.content : r),
    },
  );
  (tool as { invoke: unknown }).invoke = (input: unknown, config?: unknown) => unwrapToolResult(traced(input, config));
  return tool;
}

/** Traces every tool of a list (or record); returns it. */
export function instrumentLangChainTools<T extends Invokable[] | Record<string, Invokable>>(tools: T): T {
  for (const t of Array.isArray(tools) ? tools : Object.values(tools)) instrumentLangChainTool(t);
  return tools;
}
