// Attribute names Loopwatch emits: OpenTelemetry GenAI semantic conventions, plus loopwatch.*
// for what the conventions do not carry (hashes that let raw arguments stay in the process).
export const ATTR = {
  operationName: 'gen_ai.operation.name',
  toolName: 'gen_ai.tool.name',
  toolType: 'gen_ai.tool.type',
  toolCallId: 'gen_ai.tool.call.id',
  toolCallArguments: 'gen_ai.tool.call.arguments',
  toolCallResult: 'gen_ai.tool.call.result',
  conversationId: 'gen_ai.conversation.id',
  agentName: 'gen_ai.agent.name',
  errorType: 'error.type',
  argsHash: 'loopwatch.tool.args_hash',
  resultHash: 'loopwatch.tool.result_hash',
} as const;

/**
 * The attributes a span names its session with, and its agent, first found first: as the
 * collector reads them (queries/schema loopwatch_session_id, loopwatch_agent).
 */
export const SESSION_ATTRIBUTES = [
  'gen_ai.conversation.id', 'session.id', 'ai.telemetry.metadata.sessionId', 'ai.telemetry.metadata.session_id',
  'ai.telemetry.metadata.conversationId', 'traceloop.association.properties.session_id', 'gcp.vertex.agent.session_id',
] as const;
export const AGENT_ATTRIBUTES = ['gen_ai.agent.name', 'agent.name', 'ai.telemetry.functionId'] as const;

/**
 * The operation of a tool span that only wraps the call made inside it, not a second call: the
 * collector's agent_tool_calls takes execute_tool spans only.
 */
export const TOOL_WRAPPER_OPERATION = 'loopwatch.tool_wrapper';

/**
 * Which spans are model calls, as the collector's agent_llm_calls view has it
 * (queries/schema/002_agent_calls.sql, 015_other_languages.sql): gen_ai.operation.name in GenAI semconv, ai.operationId
 * in the Vercel AI SDK's legacy spans.
 */
export const GENAI_MODEL_CALL_OPERATIONS: ReadonlySet<string> = new Set(['chat', 'generate_content', 'text_completion', 'chat.completions', 'text.completions']);
export const AI_SDK_MODEL_CALL_OPERATIONS: ReadonlySet<string> = new Set(['ai.generateText.doGenerate', 'ai.streamText.doStream', 'ai.generateObject.doGenerate', 'ai.streamObject.doStream']);
