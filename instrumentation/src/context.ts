// Session and agent travel in the OpenTelemetry context, so every span started inside
// withSession() carries them, whichever library starts the span. Outside withSession, a
// process-wide session applies when LOOPWATCH_SESSION_ID is set (an agent run per process,
// started by a harness that knows the run's id).
import { context, createContextKey, type Context } from '@opentelemetry/api';

const SESSION = createContextKey('loopwatch.session');

export interface SessionInfo {
  sessionId: string;
  agent?: string;
}

/** LOOPWATCH_SESSION_ID (and LOOPWATCH_AGENT): the session of calls made outside withSession. */
export function processSessionFromEnv(env: NodeJS.ProcessEnv = process.env): SessionInfo | undefined {
  const sessionId = env.LOOPWATCH_SESSION_ID?.trim();
  if (!sessionId) return undefined;
  const agent = env.LOOPWATCH_AGENT?.trim();
  return agent ? { sessionId, agent } : { sessionId };
}

const PROCESS_SESSION = processSessionFromEnv();

export function sessionFrom(ctx: Context = context.active()): SessionInfo | undefined {
  return (ctx.getValue(SESSION) as SessionInfo | undefined) ?? PROCESS_SESSION;
}

export function contextWithSession(info: SessionInfo, ctx: Context = context.active()): Context {
  return ctx.setValue(SESSION, info);
}
