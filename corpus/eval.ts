// Evaluation of the loop detectors on the labelled corpus: the corpus goes through a real
// collector (embedded chDB, OTLP/protobuf over loopback HTTP with the official exporter), the
// SQL detectors run on what the collector stored, and the in-process LoopGuard sees the same
// calls as agent_tool_calls-shaped rows. Per kind: session-level precision and recall (a true
// positive must overlap the labelled span range), and whether the guard and SQL agree.
//
// Usage: npm run eval [-- --sessions 300 --seed 1 --conventions genai|mixed --json out.json]
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { startTestCollector } from '../tests/helpers/collector.js';
import { corpusStats, generateCorpus, guardRows, type Session } from './generate.js';
import { CONVENTIONS, sendSessions } from './otlp.js';
import { compareFlagged, formatTable, scoreFindings, type Disagreement, type KindScore, type ScoredFinding } from './score.js';

export interface EvalOptions {
  sessions?: number;
  seed?: number;
  /** 'genai' (default): every session as Loopwatch's instrumentation emits it; 'mixed': sessions rotate through GenAI semconv, OpenInference and AI SDK spans. */
  conventions?: 'genai' | 'mixed';
}

export interface EvalResult {
  stats: Record<string, number>;
  sql: KindScore[];
  guard: KindScore[] | null;
  disagreements: Disagreement[] | null;
  sqlFindings: ScoredFinding[];
  guardFindings: ScoredFinding[] | null;
  timings: { generateMs: number; ingestMs: number; detectMs: number; guardMs: number };
  /** Rows the collector stored in the typed tables (should equal the corpus' calls). */
  stored: { toolCalls: number; llmCalls: number; spans: number; conventions: Record<string, number> };
  corpus: Session[];
}

/** Corpus origin: a fixed offset before the current hour, so rows are recent (retention) yet the ids do not move. */
export function corpusOrigin(now = Date.now()): number {
  return Math.floor(now / 3600_000) * 3600_000 - 24 * 3600_000;
}

interface GuardLike {
  observe(call: unknown): unknown;
}

function toMs(v: unknown): number {
  if (typeof v === 'number') return v > 1e14 ? v / 1e6 : v; // ns or ms
  if (typeof v === 'bigint') return Number(v / 1_000_000n);
  if (typeof v === 'string') return Date.parse(v.includes('T') || v.endsWith('Z') ? v : `${v.replace(' ', 'T')}Z`);
  if (v instanceof Date) return v.getTime();
  return NaN;
}

/** Runs the LoopGuard over the corpus, one guard per session, calls in order. */
export async function runGuard(corpus: Session[]): Promise<ScoredFinding[] | null> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import('../instrumentation/src/guard/loop-guard.js')) as Record<string, unknown>;
  } catch {
    return null;
  }
  const LoopGuard = mod.LoopGuard as new (opts?: unknown) => GuardLike;
  const out: ScoredFinding[] = [];
  for (const session of corpus) {
    const spanMs = new Map<string, [number, number]>();
    const guard = new LoopGuard();
    for (const row of guardRows(session)) {
      spanMs.set(row.spanId, [row.ts, row.endTs]);
      const raised = guard.observe(row);
      const list = Array.isArray(raised) ? raised : raised ? [raised] : [];
      for (const f of list as Record<string, unknown>[]) {
        const kind = String(f.detector ?? f.kind ?? '');
        const first = typeof f.firstSpanId === 'string' ? spanMs.get(f.firstSpanId) : undefined;
        const last = typeof f.lastSpanId === 'string' ? spanMs.get(f.lastSpanId) : undefined;
        out.push({
          kind,
          sessionId: String(f.sessionId ?? session.sessionId),
          firstMs: first?.[0] ?? (f.firstTs !== undefined ? toMs(f.firstTs) : row.ts),
          lastMs: last?.[1] ?? (f.lastTs !== undefined ? toMs(f.lastTs) : row.endTs),
        });
      }
    }
  }
  return out;
}

export async function evaluate(opts: EvalOptions = {}): Promise<EvalResult> {
  const t0 = performance.now();
  const corpus = generateCorpus({ sessions: opts.sessions ?? 300, seed: opts.seed ?? 1, startMs: corpusOrigin() });
  const t1 = performance.now();
  const tc = await startTestCollector({ detect: { enabled: false } });
  try {
    const spans = await sendSessions(tc.url, corpus, {
      convention: opts.conventions === 'mixed' ? (_s, i) => CONVENTIONS[i % CONVENTIONS.length]! : undefined,
    });
    await tc.collector.flush();
    const t2 = performance.now();
    const [counts] = await tc.rows<{ tools: string; llm: string }>(
      `SELECT (SELECT toString(count()) FROM agent_tool_calls FINAL) AS tools, (SELECT toString(count()) FROM agent_llm_calls FINAL) AS llm`,
    );
    const byConvention = await tc.rows<{ convention: string; n: string }>(
      `SELECT convention, toString(count()) AS n FROM agent_tool_calls FINAL GROUP BY convention ORDER BY convention`,
    );
    const { runDetectors } = (await import('../collector/src/detect/run-detectors.js')) as {
      runDetectors: (client: unknown, opts?: { full?: boolean }) => Promise<unknown>;
    };
    await runDetectors(tc.collector.store.client, { full: true });
    const t3 = performance.now();
    const rows = await tc.rows<{ detector: string; session_id: string; first_ms: string; last_ms: string }>(
      `SELECT detector, session_id, toString(toUnixTimestamp64Milli(first_ts)) AS first_ms, toString(toUnixTimestamp64Milli(last_ts)) AS last_ms
       FROM agent_findings FINAL`,
    );
    const sqlFindings = rows.map((r) => ({ kind: r.detector, sessionId: r.session_id, firstMs: Number(r.first_ms), lastMs: Number(r.last_ms) }));
    const t4 = performance.now();
    const guardFindings = await runGuard(corpus);
    const t5 = performance.now();
    return {
      stats: corpusStats(corpus),
      sql: scoreFindings(corpus, sqlFindings),
      guard: guardFindings ? scoreFindings(corpus, guardFindings) : null,
      disagreements: guardFindings ? compareFlagged(sqlFindings.filter((f) => f.kind !== 'degradation'), guardFindings) : null,
      sqlFindings,
      guardFindings,
      timings: { generateMs: t1 - t0, ingestMs: t2 - t1, detectMs: t3 - t2, guardMs: t5 - t4 },
      stored: {
        toolCalls: Number(counts?.tools), llmCalls: Number(counts?.llm), spans,
        conventions: Object.fromEntries(byConvention.map((r) => [r.convention, Number(r.n)])),
      },
      corpus,
    };
  } finally {
    await tc.close();
  }
}

export function report(r: EvalResult): string {
  const lines = [
    `corpus: ${r.stats.sessions} sessions, ${r.stats.toolCalls} tool calls, ${r.stats.llmCalls} LLM calls`,
    `timings: generate ${r.timings.generateMs.toFixed(0)} ms, ingest ${r.timings.ingestMs.toFixed(0)} ms, SQL detectors ${r.timings.detectMs.toFixed(0)} ms, guard ${r.timings.guardMs.toFixed(0)} ms`,
    '',
    formatTable('SQL detectors (queries/detectors/*.sql via runDetectors)', r.sql),
    '',
    r.guard ? formatTable('LoopGuard (instrumentation/src/guard/loop-guard.ts)', r.guard) : 'LoopGuard: not available',
  ];
  const misses = (title: string, scores: KindScore[]) => {
    for (const s of scores) {
      if (s.falsePositives.length) lines.push(`${title} ${s.kind} false positives: ${s.falsePositives.slice(0, 8).join(', ')}${s.falsePositives.length > 8 ? ' …' : ''}`);
      if (s.falseNegatives.length) lines.push(`${title} ${s.kind} false negatives: ${s.falseNegatives.slice(0, 8).join(', ')}${s.falseNegatives.length > 8 ? ' …' : ''}`);
    }
  };
  lines.push('');
  misses('SQL', r.sql);
  if (r.guard) misses('guard', r.guard);
  if (r.disagreements) {
    lines.push(r.disagreements.length ? 'guard vs SQL disagreements:' : 'guard vs SQL: the same sessions flagged for every kind');
    for (const d of r.disagreements) lines.push(`  ${d.kind}: only SQL ${JSON.stringify(d.onlySql.slice(0, 6))}, only guard ${JSON.stringify(d.onlyGuard.slice(0, 6))}`);
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({
    options: { sessions: { type: 'string', default: '300' }, seed: { type: 'string', default: '1' }, conventions: { type: 'string', default: 'genai' }, json: { type: 'string' } },
  });
  const r = await evaluate({ sessions: Number(values.sessions), seed: Number(values.seed), conventions: values.conventions === 'mixed' ? 'mixed' : 'genai' });
  console.log(report(r));
  if (values.json) {
    const { corpus: _c, sqlFindings: _s, guardFindings: _g, ...summary } = r;
    writeFileSync(values.json, `${JSON.stringify(summary, null, 2)}\n`);
  }
}
