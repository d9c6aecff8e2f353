// A tool call can fail without throwing: an MCP result with isError, a LangChain ToolMessage with
// status "error". The integrations run such calls through traceTool (the one tool-span builder)
// by throwing this carrier inside the traced function and unwrapping it outside, so the span gets
// the error status while the caller still receives the tool's own result.
export class ToolResultError extends Error {
  constructor(
    message: string,
    readonly result: unknown,
    override readonly name: string = 'ToolResultError',
  ) {
    super(message);
  }
}

/** Awaits a traced call; a ToolResultError thrown by the inner function turns back into its result. */
export async function unwrapToolResult<R>(p: Promise<R>): Promise<R> {
  try {
    return await p;
  } catch (err) {
    if (err instanceof ToolResultError) return err.result as R;
    throw err;
  }
}

/** The text of MCP-style content blocks ([{type:'text', text}]) or of a string. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((b) => (b && typeof b === 'object' && typeof (b as { text?: unknown }).text === 'string' ? (b as { text: string }).text : ''))
      .filter(Boolean)
      .join('\n');
  }
  return '';
}
