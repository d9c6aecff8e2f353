// Anthropic SDK: instrumentAnthropic(client) makes every messages.create call a GenAI
// `chat {model}` span: models, tokens (gen_ai.usage.input_tokens = input + cache read + cache
// write, as the conventions count them; the cache parts also separately), cost, stop reason and
// the tool_use blocks the model requested. Streams (stream: true) are observed as they are read.
// Recent SDK versions trace their own calls (an `anthropic.messages.create` span with GenAI
// attributes but no cost, finish reason or requested tool calls) once a tracer provider is
// registered: by default this wrapper switches the SDK's span off for the calls it traces, so
// each is one span, and leaves the SDK's other spans (beta.messages, the tool runner's agent and
// tool spans) as they are (nativeSpans: 'keep' keeps the SDK's spans and adds none).
// Only types come from `@anthropic-ai/sdk` (an optional peer dependency).
import type { Message, RawMessageStreamEvent, Usage } from '@anthropic-ai/sdk/resources/messages';
import { instrumentCopies, markOnce, observeCall, startChatSpan, type ChatOutcome, type RequestedToolCall } from './llm-span.js';

const INSTRUMENTED = Symbol.for('loopwatch.anthropic');

type CreateFn = (body: Record<string, unknown>, options?: unknown) => unknown;
interface AnthropicClientLike {
  messages?: { create: CreateFn };
}

type UsageLike = Partial<Pick<Usage, 'input_tokens' | 'output_tokens' | 'cache_read_input_tokens' | 'cache_creation_input_tokens'>> & {
  /** The writes by cache lifetime (the 1-hour cache bills 2x input, the 5-minute one 1.25x). */
  cache_creation?: { ephemeral_1h_input_tokens?: number | null } | null;
};

function usageOf(u: UsageLike | undefined | null): ChatOutcome['usage'] {
  if (!u) return undefined;
  const cacheRead = u.cache_read_input_tokens ?? 0;
  const cacheCreation = u.cache_creation_input_tokens ?? 0;
  const creation1h = u.cache_creation?.ephemeral_1h_input_tokens ?? 0;
  return {
    inputTokens: (u.input_tokens ?? 0) + cacheRead + cacheCreation,
    outputTokens: u.output_tokens ?? 0,
    cacheReadTokens: cacheRead,
    cacheCreationTokens: cacheCreation,
    ...(creation1h > 0 ? { cacheCreation1hTokens: creation1h } : {}),
  };
}

function messageOutcome(value: unknown): ChatOutcome {
  const m = value as Partial<Message>;
  const toolCalls: RequestedToolCall[] = [];
  for (const block of m.content ?? []) {
    if (block.type === 'tool_use') toolCalls.push({ id: block.id, name: block.name, arguments: block.input });
  }
  return { responseModel: m.model, responseId: m.id, finishReasons: m.stop_reason ? [m.stop_reason] : [], toolCalls, usage: usageOf(m.usage) };
}

function streamChunk(acc: ChatOutcome & { raw?: UsageLike }, value: unknown): void {
  const e = value as RawMessageStreamEvent;
  switch (e.type) {
    case 'message_start':
      acc.responseModel = e.message.model;
      acc.responseId = e.message.id;
      acc.raw = { ...e.message.usage };
      break;
    case 'content_block_start':
      // the block's input ({} for a call without arguments, as a message without streaming has
      // it), replaced by the streamed JSON text once some arrives
      if (e.content_block.type === 'tool_use') (acc.toolCalls ??= []).push({ id: e.content_block.id, name: e.content_block.name, arguments: e.content_block.input });
      break;
    case 'content_block_delta':
      if (e.delta.type === 'input_json_delta' && e.delta.partial_json !== '') {
        const last = acc.toolCalls?.[acc.toolCalls.length - 1];
        if (last) last.arguments = (typeof last.arguments === 'string' ? last.arguments : '') + e.delta.partial_json;
      }
      break;
    case 'message_delta': {
      if (e.delta.stop_reason) acc.finishReasons = [e.delta.stop_reason];
      const raw = (acc.raw ??= {});
      for (const [k, v] of Object.entries(e.usage ?? {})) if (typeof v === 'number') (raw as Record<string, number>)[k] = v;
      break;
    }
    default:
      break;
  }
  if (acc.raw) acc.usage = usageOf(acc.raw);
}

export interface InstrumentAnthropicOptions {
  /** gen_ai.provider.name (default "anthropic"; e.g. "aws.bedrock" for a Bedrock client). */
  provider?: string;
  /** The SDK's own spans: 'replace' (default) turns them off for this client, 'keep' leaves the client as it is. */
  nativeSpans?: 'replace' | 'keep';
}

/** Traces the client's messages.create calls; returns the same client. */
export function instrumentAnthropic<T extends object>(client: T, opts: InstrumentAnthropicOptions = {}): T {
  if (opts.nativeSpans === 'keep') return client;
  if (!markOnce(client, INSTRUMENTED)) return client;
  const native = client as { _tracer?: unknown };
  instrumentCopies(client, (copy) => instrumentAnthropic(copy, opts));
  const messages = (client as AnthropicClientLike).messages;
  if (!messages || typeof messages.create !== 'function') return client;
  const original = messages.create;
  const provider = opts.provider ?? 'anthropic';
  messages.create = function (this: unknown, body: Record<string, unknown>, options?: unknown) {
    const chat = startChatSpan({
      provider,
      model: typeof body?.model === 'string' ? body.model : undefined,
      maxTokens: body?.max_tokens as number | undefined,
      temperature: body?.temperature as number | undefined,
    });
    // The SDK reads its (internal) _tracer when a call starts, synchronously (its span, and
    // whether the request is traced): unset for that moment, this call gets no span of the SDK's.
    // Unsetting it for good switched off every span of the client's, the beta API's and the
    // tool runner's included, which then sent nothing at all.
    const call = () => {
      if (!('_tracer' in native) || native._tracer === undefined) return original.call(this ?? messages, body, options);
      const tracer = native._tracer;
      native._tracer = undefined;
      try {
        return original.call(this ?? messages, body, options);
      } finally {
        native._tracer = tracer;
      }
    };
    return observeCall(chat, call, {
      streaming: body?.stream === true,
      outcome: messageOutcome,
      chunk: streamChunk,
    });
  };
  return client;
}
