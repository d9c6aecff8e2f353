// OpenAI SDK (v4+): instrumentOpenAI(client) makes every chat.completions.create and
// responses.create call a GenAI `chat {model}` span: models, tokens (cached included), cost,
// finish reasons and the tool calls the model requested. Streaming calls are observed as the
// caller reads the stream (ask for usage with stream_options: { include_usage: true }).
// Only types come from the `openai` package: it is an optional peer dependency, and the client
// instance is the application's own.
import type { ChatCompletion, ChatCompletionChunk } from 'openai/resources/chat/completions';
import type { Response as OpenAIResponse, ResponseStreamEvent } from 'openai/resources/responses/responses';
import { instrumentCopies, markOnce, observeCall, startChatSpan, type ChatOutcome, type RequestedToolCall } from './llm-span.js';

const INSTRUMENTED = Symbol.for('loopwatch.openai');

type CreateFn = (body: Record<string, unknown>, options?: unknown) => unknown;
interface Creatable {
  create: CreateFn;
}
interface OpenAIClientLike {
  chat?: { completions?: Creatable };
  responses?: Creatable;
}

export interface InstrumentOpenAIOptions {
  /** gen_ai.provider.name (default "openai"; e.g. "azure.ai.openai" or a compatible vendor). */
  provider?: string;
}

function chatOutcome(value: unknown): ChatOutcome {
  const c = value as Partial<ChatCompletion>;
  const toolCalls: RequestedToolCall[] = [];
  const finish: string[] = [];
  for (const choice of c.choices ?? []) {
    if (choice.finish_reason) finish.push(choice.finish_reason);
    for (const tc of choice.message?.tool_calls ?? []) {
      if (tc.type === 'function') toolCalls.push({ id: tc.id, name: tc.function.name, arguments: tc.function.arguments });
    }
  }
  const u = c.usage;
  return {
    responseModel: c.model,
    responseId: c.id,
    finishReasons: finish,
    toolCalls,
    usage: u
      ? { inputTokens: u.prompt_tokens, outputTokens: u.completion_tokens, cacheReadTokens: u.prompt_tokens_details?.cached_tokens ?? 0 }
      : undefined,
  };
}

function chatChunk(acc: ChatOutcome & { partial?: Map<number, RequestedToolCall> }, value: unknown): void {
  const c = value as Partial<ChatCompletionChunk>;
  if (c.model) acc.responseModel = c.model;
  if (c.id) acc.responseId = c.id;
  for (const choice of c.choices ?? []) {
    if (choice.finish_reason) (acc.finishReasons ??= []).push(choice.finish_reason);
    for (const d of choice.delta?.tool_calls ?? []) {
      acc.partial ??= new Map();
      let tc = acc.partial.get(d.index);
      // some OpenAI-compatible servers send every parallel call at index 0: a new id is a new call
      if (!tc || (d.id && tc.id && d.id !== tc.id)) {
        tc = { id: d.id ?? '', name: d.function?.name ?? '', arguments: '' };
        acc.partial.set(d.index, tc);
        (acc.toolCalls ??= []).push(tc);
      }
      if (d.id) tc.id = d.id;
      if (d.function?.name) tc.name = d.function.name;
      if (d.function?.arguments) tc.arguments = String(tc.arguments ?? '') + d.function.arguments;
    }
  }
  if (c.usage) {
    acc.usage = { inputTokens: c.usage.prompt_tokens, outputTokens: c.usage.completion_tokens, cacheReadTokens: c.usage.prompt_tokens_details?.cached_tokens ?? 0 };
  }
}

function responseOutcome(value: unknown): ChatOutcome {
  const r = value as Partial<OpenAIResponse>;
  const toolCalls: RequestedToolCall[] = [];
  for (const item of r.output ?? []) {
    if (item.type === 'function_call') toolCalls.push({ id: item.call_id, name: item.name, arguments: item.arguments });
  }
  const u = r.usage;
  const finish = r.status === 'incomplete' ? (r.incomplete_details?.reason ?? 'incomplete') : toolCalls.length ? 'tool_calls' : r.status;
  const out: ChatOutcome = {
    responseModel: r.model,
    responseId: r.id,
    finishReasons: finish ? [finish] : [],
    toolCalls,
    usage: u ? { inputTokens: u.input_tokens, outputTokens: u.output_tokens, cacheReadTokens: u.input_tokens_details?.cached_tokens ?? 0 } : undefined,
  };
  // a response that failed (its stream's response.failed event) is a failed call: the SDK does not throw
  if (r.status === 'failed') out.error = { type: r.error?.code ?? 'failed', message: r.error?.message ?? 'the response failed' };
  return out;
}

function responseChunk(acc: ChatOutcome, value: unknown): void {
  const e = value as Partial<ResponseStreamEvent>;
  if ((e.type === 'response.completed' || e.type === 'response.incomplete' || e.type === 'response.failed') && 'response' in e && e.response) {
    Object.assign(acc, responseOutcome(e.response));
  }
}

function wrapCreate(target: Creatable, provider: string, kind: 'chat' | 'responses'): void {
  const original = target.create;
  target.create = function (this: unknown, body: Record<string, unknown>, options?: unknown) {
    const chat = startChatSpan({
      provider,
      model: typeof body?.model === 'string' ? body.model : undefined,
      maxTokens: (body?.max_completion_tokens ?? body?.max_tokens ?? body?.max_output_tokens) as number | undefined,
      temperature: body?.temperature as number | undefined,
    });
    return observeCall(chat, () => original.call(this ?? target, body, options), {
      streaming: body?.stream === true,
      outcome: kind === 'chat' ? chatOutcome : responseOutcome,
      chunk: kind === 'chat' ? chatChunk : responseChunk,
    });
  };
}

/** Traces the client's chat.completions.create and responses.create calls; returns the same client. */
export function instrumentOpenAI<T extends object>(client: T, opts: InstrumentOpenAIOptions = {}): T {
  if (!markOnce(client, INSTRUMENTED)) return client;
  const c = client as OpenAIClientLike;
  const provider = opts.provider ?? 'openai';
  if (c.chat?.completions && typeof c.chat.completions.create === 'function') wrapCreate(c.chat.completions, provider, 'chat');
  if (c.responses && typeof c.responses.create === 'function') wrapCreate(c.responses, provider, 'responses');
  instrumentCopies(client, (copy) => instrumentOpenAI(copy, opts));
  return client;
}
