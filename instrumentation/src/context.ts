// Session and agent travel in the OpenTelemetry context, so every span started inside
// withSession() carries them, whichever library starts the span. Outside withSession, a
// process-wide session applies when LOOPWATCH_SESSION_ID is set (an agent run per process,
// started by a harness that knows the run's id).
import { AsyncLocalStorage } from 'node:async_hooks';
import { AGENT_ATTRIBUTES, SESSION_ATTRIBUTES } from './attributes.js';
import { context, createContextKey, ROOT_CONTEXT, trace, type Attributes, type Context, type Span } from '@opentelemetry/api';

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

/** The first of the attributes that holds a non-empty text. */
function firstText(a: Attributes, keys: readonly string[]): string | undefined {
  for (const k of keys) {
    const v = a[k];
    if (typeof v === 'string' && v !== '') return v;
  }
  return undefined;
}

/**
 * The session the active span names itself, when no withSession is around: a span of another
 * library started with one (the AI SDK's telemetry metadata: `metadata: { sessionId }` without
 * withSession), or one stamped here. Read as the collector reads it (queries/schema
 * loopwatch_session_id, loopwatch_agent), so that calls made inside such a span (a traced tool
 * in an AI SDK tool's execute) land in the same session as the span.
 */
function sessionOfSpan(span: Span | undefined): SessionInfo | undefined {
  const a = (span as { attributes?: Attributes } | undefined)?.attributes;
  if (a === undefined) return undefined;
  const sessionId = firstText(a, SESSION_ATTRIBUTES);
  if (sessionId === undefined) return undefined;
  const agent = firstText(a, AGENT_ATTRIBUTES);
  return agent === undefined ? { sessionId } : { sessionId, agent };
}

// Without an OpenTelemetry SDK (LOOPWATCH_INSTRUMENTATION=off and none of the application's, the
// loop guard alone) the API's context manager is a no-op: a context set by withSession is gone
// inside the callback. The session is then carried here, so that agents stay apart (they were
// all one session, and one agent's loop halted the others).
const sessionStore = new AsyncLocalStorage<SessionInfo>();
const PROBE = ROOT_CONTEXT.setValue(createContextKey('loopwatch.context_probe'), true);

/** Whether the registered context manager carries a context into a callback. */
export function contextCarries(): boolean {
  return context.with(PROBE, () => context.active() === PROBE);
}

/** Runs fn in the session: in the OpenTelemetry context, or where no context manager carries one, in Loopwatch's own store. */
export function runInSession<T>(info: SessionInfo, fn: () => T): T {
  if (contextCarries()) return context.with(contextWithSession(info), fn);
  return sessionStore.run(info, fn);
}

/** The session: withSession's, else the one the active span names, else the process's (LOOPWATCH_SESSION_ID). */
export function sessionFrom(ctx: Context = context.active()): SessionInfo | undefined {
  return (ctx.getValue(SESSION) as SessionInfo | undefined) ?? sessionStore.getStore() ?? sessionOfSpan(trace.getSpan(ctx)) ?? PROCESS_SESSION;
}

export function contextWithSession(info: SessionInfo, ctx: Context = context.active()): Context {
  return ctx.setValue(SESSION, info);
}
