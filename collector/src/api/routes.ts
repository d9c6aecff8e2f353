// Read API for the CLI and scripts: JSON over HTTP under /api/v1/ (the auth middleware guards
// /api/* with read keys). It exists so that nothing else has to open the embedded database, which
// chDB locks to the collector's process. Bound query parameters only; every input is validated.
//
//   GET /api/v1/sessions?since=&until=&agent=&limit=        latest sessions, scored (session-scorecard report)
//   GET /api/v1/sessions/:id                                 one session: scorecard, findings, first calls
//   GET /api/v1/sessions/:id/calls?offset=&limit=&after_ts=&after_span=  its tool and LLM calls in start order (paged; after a call: a cursor)
//   GET /api/v1/sessions/:id/export                          the same as JSON Lines (application/x-ndjson)
//   GET /api/v1/findings?session=&detector=&since=&limit=   loop and waste findings, newest first
//   GET /api/v1/models?since=&until=&model=&agent=&limit=   per-model, per-day reliability (model-reliability report), the newest rows
//   GET /api/v1/status                                       the collector's health: spans in and stored, spool, detectors, problems
import type { ClickHouseClient } from '@clickhouse/client';
import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { modelReliabilityByDays, runReport } from '../../../queries/src/reports.js';
import type { Logger } from '../logger.js';
import type { CollectorStatus } from '../status.js';
import { findingsQuery, sessionCallsQuery, sessionCallCountQuery, type CallRow, type FindingRow } from './queries.js';
import { exportHeader, exportLine } from '../export/session-file.js';

export const API_PREFIX = '/api/v1';
// calls per query of a session export
const EXPORT_PAGE = 5000;

// The times the store's nanosecond DateTime64(9) columns hold (to 2262-04-11, where 2^63 ns ends);
// a time past it overflows in the comparison and fails the query. The API asks for 1970 on.
const EARLIEST = Date.UTC(1970, 0, 1);
const LATEST = Date.UTC(2262, 3, 11);

/** A time: ISO text, epoch milliseconds (10 digits or more), or an age like 30m, 24h, 7d (before now), from 1970 to 2262-04-11. */
export function parseTime(text: string, now = Date.now()): Date {
  const t = text.trim();
  const what = `(ISO, epoch milliseconds, or an age like 24h)`;
  const age = /^(\d+(?:\.\d+)?)(s|m|h|d|w)$/.exec(t);
  let d: Date;
  if (age) {
    const unit = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3, w: 604800e3 }[age[2] as 's' | 'm' | 'h' | 'd' | 'w'];
    d = new Date(now - Number(age[1]) * unit);
  } else if (/^\d{10,}$/.test(t)) {
    d = new Date(Number(t));
  } else if (/^[-+]?\d+(\.\d*)?$/.test(t)) {
    // Date would read "0" or "12345" as a year
    throw new Error(`not a time: ${text} ${what}: a number is epoch milliseconds, 10 digits or more`);
  } else {
    // ISO 8601 only (Date also reads "Dec 1 2026" and "02/03/2026", in the process's zone, and
    // rolls 2026-02-30 over to March 2). A date and time without a zone is UTC, as every time
    // Loopwatch prints.
    const iso = /^(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(\.\d+)?)?)?(Z|[+-]\d\d:?\d\d)?$/i.exec(t);
    if (!iso) throw new Error(`not a time: ${text} ${what}`);
    const [, y, mo, da, h = '00', mi = '00', se = '00', frac = '', zone = 'Z'] = iso;
    const daysInMonth = new Date(Date.UTC(Number(y), Number(mo), 0)).getUTCDate();
    if (Number(mo) < 1 || Number(mo) > 12 || Number(da) < 1 || Number(da) > daysInMonth || Number(h) > 23 || Number(mi) > 59 || Number(se) > 59) {
      throw new Error(`not a date: ${text} (no such day or time)`);
    }
    const offset = zone.toUpperCase() === 'Z' ? 'Z' : `${zone.slice(0, 3)}:${zone.slice(-2)}`;
    d = new Date(`${y}-${mo}-${da}T${h}:${mi}:${se}${frac}${offset}`);
  }
  if (Number.isNaN(d.getTime())) throw new Error(`not a time: ${text} ${what}`);
  if (d.getTime() < EARLIEST || d.getTime() > LATEST) throw new Error(`out of range: ${text} (times from 1970 to 2262-04-11)`);
  return d;
}

const time = z.string().transform((s, ctx) => {
  try {
    return parseTime(s);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});
// longer than ingest used to cap them (512: an id listed could not be opened), as long as a URL
// holds (4,096 characters, up to 9 bytes each encoded, within the server's 64 KiB of headers)
const name = z.string().max(4096);
/** A whole number from min to max, refused in plain words. */
const wholeIn = (min: number, max: number) =>
  z.coerce.number({ message: 'not a number' }).int({ message: 'a whole number' }).min(min, { message: `at least ${min}` }).max(max, { message: `at most ${max.toLocaleString('en-US')}` });
const limit = (max: number, dflt: number) => wholeIn(1, max).default(dflt);

const sessionsQuery = z.object({ since: time.optional(), until: time.optional(), agent: name.default(''), limit: limit(1000, 50) });
// offset binds as UInt32 in SQL: beyond it the number would wrap around, not page
const callsQuery = z
  .object({
    offset: wholeIn(0, 0xffff_ffff).default(0),
    limit: limit(10_000, 1000),
    // a cursor: the calls after this one (its ts, as the API gives it, and span id)
    after_ts: z.string().regex(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/, 'a call\'s ts as the API gives it (ISO-8601 UTC, nanoseconds)').optional(),
    after_span: z.string().min(1).max(64).optional(),
  })
  .refine((q) => (q.after_ts === undefined) === (q.after_span === undefined), { message: 'after_ts and after_span go together (a call\'s ts and span_id)' });
const findingsParams = z.object({ session: name.default(''), detector: name.default(''), since: time.optional(), limit: limit(10_000, 100) });
const modelsQuery = z.object({ since: time.optional(), until: time.optional(), model: name.default(''), agent: name.default(''), limit: limit(100_000, 1000) });
const sessionId = z.string().min(1, 'a session id is required').max(4096, 'a session id is at most 4,096 characters (it goes in a URL)');

class BadRequest extends Error {}

/** Parses a request's input; `what` names it in the message when the schema is not an object (a path segment). */
function parse<T extends z.ZodType>(schema: T, input: unknown, what = 'query'): z.infer<T> {
  const r = schema.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new BadRequest(`${i?.path.join('.') || what}: ${i?.message ?? 'invalid'}`);
  }
  return r.data;
}

/** The window of a query: defaults for what is not given, and since before until. */
function window(q: { since?: Date; until?: Date }, sinceDefaultMs: number): { since: Date; until: Date } {
  const until = q.until ?? new Date(Date.now() + DAY);
  const since = q.since ?? new Date(Date.now() - sinceDefaultMs);
  if (since.getTime() > until.getTime()) {
    throw new BadRequest(q.until ? `since (${since.toISOString()}) is after until (${until.toISOString()})` : `since (${since.toISOString()}) is more than a day in the future`);
  }
  return { since, until };
}

async function rows<T>(client: ClickHouseClient, query: string, params: Record<string, unknown>): Promise<T[]> {
  const rs = await client.query({ query, format: 'JSONEachRow', query_params: params, clickhouse_settings: { output_format_json_quote_64bit_integers: 0 } });
  return rs.json<T>();
}

const DAY = 86_400_000;

export interface ApiDeps {
  client: ClickHouseClient;
  log?: Logger;
  /** The collector's status (status.ts); without it, /status answers 404. */
  status?: () => Promise<CollectorStatus>;
}

export function registerApiRoutes(app: Hono, deps: ApiDeps): void {
  const { client } = deps;
  const handle =
    (fn: (c: Context) => Promise<Response>) =>
    async (c: Context): Promise<Response> => {
      try {
        return await fn(c);
      } catch (err) {
        if (err instanceof BadRequest) return c.json({ error: 'bad_request', message: err.message }, 400);
        deps.log?.error({ err }, 'read API query failed');
        // said as the collector's failure (a store that is down: its connection error), not the caller's
        return c.json({ error: 'query_failed', message: `the collector could not answer (${(err as Error).message.split('\n')[0]}): see the collector's log, and /healthz for its store` }, 503);
      }
    };

  const calls = (id: string, offset: number, lim: number, after?: { ts: string; span: string }) =>
    rows<CallRow>(client, sessionCallsQuery, { session: id, offset, limit: lim, after_ts: after?.ts ?? '', after_span: after?.span ?? '' });
  const callCount = async (id: string) => Number((await rows<{ n: number }>(client, sessionCallCountQuery, { session: id }))[0]?.n ?? 0);
  const findings = (p: { session: string; detector: string; since: Date; limit: number }) =>
    rows<FindingRow>(client, findingsQuery, { session: p.session, detector: p.detector, since: (p.since.getTime() / 1000).toFixed(3), limit: p.limit });

  app.get(`${API_PREFIX}/sessions`, handle(async (c) => {
    const q = parse(sessionsQuery, c.req.query());
    const { since, until } = window(q, 7 * DAY);
    const sessions = await runReport(client, 'session-scorecard', { from: since, to: until, agent: q.agent, limit: q.limit, newest_first: 1 });
    return c.json({ since: since.toISOString(), until: until.toISOString(), sessions });
  }));

  app.get(`${API_PREFIX}/sessions/:id`, handle(async (c) => {
    const id = parse(sessionId, c.req.param('id'), 'session id');
    const q = parse(callsQuery, c.req.query());
    const [score, total, page, found] = await Promise.all([
      runReport(client, 'session-scorecard', { from: 0, to: new Date(Date.now() + DAY), session_id: id, limit: 1 }),
      callCount(id),
      calls(id, q.offset, q.limit),
      findings({ session: id, detector: '', since: new Date(0), limit: 10_000 }),
    ]);
    if (total === 0 && found.length === 0) return c.json({ error: 'not_found', message: `no session ${id}` }, 404);
    return c.json({ session_id: id, scorecard: score[0] ?? null, total_calls: total, offset: q.offset, calls: page, findings: found });
  }));

  app.get(`${API_PREFIX}/sessions/:id/calls`, handle(async (c) => {
    const id = parse(sessionId, c.req.param('id'), 'session id');
    const q = parse(callsQuery, c.req.query());
    const after = q.after_span !== undefined ? { ts: q.after_ts!, span: q.after_span } : undefined;
    const [total, page] = await Promise.all([callCount(id), calls(id, q.offset, q.limit, after)]);
    return c.json({ session_id: id, total, offset: q.offset, calls: page });
  }));

  app.get(`${API_PREFIX}/sessions/:id/export`, handle(async (c) => {
    const id = parse(sessionId, c.req.param('id'), 'session id');
    const total = await callCount(id);
    if (total === 0) return c.json({ error: 'not_found', message: `no calls in session ${id}` }, 404);
    // the first page before the answer starts: a store that cannot answer is still a 503
    const first = await calls(id, 0, EXPORT_PAGE);
    // then page by page as the client reads (a session of millions of calls is not held whole),
    // after a cursor, not by offset: calls stored meanwhile neither repeat nor drop one
    async function* text(): AsyncGenerator<string> {
      yield JSON.stringify(exportHeader(id, total)) + '\n';
      for (let page = first; page.length > 0; ) {
        yield page.map((call) => JSON.stringify(exportLine(call)) + '\n').join('');
        const last = page[page.length - 1]!;
        page = page.length < EXPORT_PAGE ? [] : await calls(id, 0, EXPORT_PAGE, { ts: last.ts, span: last.span_id });
      }
    }
    const parts = text();
    const utf8 = new TextEncoder();
    const body = new ReadableStream<Uint8Array>({
      async pull(out) {
        try {
          const next = await parts.next();
          if (next.done) out.close();
          else out.enqueue(utf8.encode(next.value));
        } catch (err) {
          // the status is sent: the answer is cut off (an error to the client), not ended as if whole
          deps.log?.error({ err }, 'session export failed part-way');
          out.error(err);
        }
      },
      async cancel() {
        await parts.return(undefined);
      },
    });
    c.header('Content-Type', 'application/x-ndjson; charset=utf-8');
    c.header('Content-Disposition', `attachment; filename="loopwatch-session.jsonl"`);
    return c.body(body);
  }));

  app.get(`${API_PREFIX}/findings`, handle(async (c) => {
    const q = parse(findingsParams, c.req.query());
    // as the other lists' windows, which end a day from now: a later since can hold nothing
    const { since } = window({ since: q.since ?? new Date(0) }, 0);
    const found = await findings({ session: q.session, detector: q.detector, since, limit: q.limit });
    return c.json({ findings: found });
  }));

  app.get(`${API_PREFIX}/models`, handle(async (c) => {
    const q = parse(modelsQuery, c.req.query());
    const { since, until } = window(q, 30 * DAY);
    const models = await modelReliabilityByDays(client, { from: since, to: until, model: q.model, agent: q.agent });
    // a row per model and day: 500 models over 30 days are 15,000 rows. The newest are kept (the
    // report is ordered by day), and `total` says how many there were.
    return c.json({ since: since.toISOString(), until: until.toISOString(), total: models.length, models: models.slice(-q.limit) });
  }));

  const status = deps.status;
  if (status) app.get(`${API_PREFIX}/status`, handle(async (c) => c.json(await status())));
}
