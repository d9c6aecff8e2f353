// `loopwatch/instrumentation/integrations`: wrappers for agent libraries. None of them imports
// its library at run time (types only): install only the SDKs your agent uses.
export { instrumentOpenAI, type InstrumentOpenAIOptions } from './openai.js';
export { instrumentAnthropic, type InstrumentAnthropicOptions } from './anthropic.js';
export { instrumentMcpClient, type InstrumentMcpOptions } from './mcp.js';
export { instrumentLangChainTool, instrumentLangChainTools, type Invokable } from './langchain.js';
export { aiSdkTelemetry, aiSdkTracer, AiSdkSpanProcessor, stopWhenHalted, type AiSdkTelemetryOptions, type AiSdkTelemetrySettings } from './ai-sdk.js';
export { startChatSpan, type ChatOutcome, type ChatSpan, type RequestedToolCall } from './llm-span.js';
export { callCost, configurePrices, costUsd, modelKey, priceFor, type ModelPrice, type PriceFile, type TokenUsage } from '../cost.js';
