// Session and agent travel in the OpenTelemetry context, so every span started inside
// withSession() carries them, whichever library starts the span.
import { context, createContextKey, type Context } from '@opentelemetry/api';

const SESSION = createContextKey('loopwatch.session');

export interface SessionInfo {
  sessionId: string;
  agent?: string;
}

export function sessionFrom(ctx: Context = context.active()): SessionInfo | undefined {
  return ctx.getValue(SESSION) as SessionInfo | undefined;
}

export function contextWithSession(info: SessionInfo, ctx: Context = context.active()): Context {
  return ctx.setValue(SESSION, info);
}
