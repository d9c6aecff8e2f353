// The labelled corpus (corpus/generate.ts) and the detectors' evaluation on it (corpus/eval.ts):
// the corpus goes through a real collector, the SQL detectors and the in-process LoopGuard
// must each reach precision and recall >= 0.95 per kind, and flag the same sessions.
import { beforeAll, describe, expect, it } from 'vitest';
import { valueHash } from '../../instrumentation/src/canonical.js';
import { generateCorpus, guardRows, LOOP_KINDS, type ToolCall } from '../../corpus/generate.js';
import { sessionSpans } from '../../corpus/otlp.js';
import { evaluate, report, type EvalResult } from '../../corpus/eval.js';
import { scoreFindings } from '../../corpus/score.js';

describe('corpus generator', () => {
  const corpus = generateCorpus({ sessions: 240, seed: 5, startMs: Date.UTC(2026, 0, 1) });

  it('is deterministic: the same seed gives the same sessions, another seed others', () => {
    expect(JSON.stringify(generateCorpus({ sessions: 240, seed: 5, startMs: Date.UTC(2026, 0, 1) }))).toBe(JSON.stringify(corpus));
    const other = generateCorpus({ sessions: 240, seed: 6, startMs: Date.UTC(2026, 0, 1) });
    expect(other[0]!.traceId).not.toBe(corpus[0]!.traceId);
    // moving the origin moves timestamps only
    const later = generateCorpus({ sessions: 240, seed: 5, startMs: Date.UTC(2026, 0, 2) });
    expect(later.map((s) => s.calls.map((c) => c.spanId)).flat()).toEqual(corpus.map((s) => s.calls.map((c) => c.spanId)).flat());
    expect(later[0]!.startMs - corpus[0]!.startMs).toBe(86_400_000);
  });

  it('injects every loop kind and every hard negative, in every agent type', () => {
    const kinds = new Set(corpus.flatMap((s) => s.labels.fire.map((l) => l.kind)));
    expect([...kinds].sort()).toEqual([...LOOP_KINDS].sort());
    const variants = new Set(corpus.flatMap((s) => s.labels.fire.filter((l) => l.kind === 'runaway').map((l) => l.variant)));
    expect([...variants].sort()).toEqual(['calls', 'cost', 'depth', 'no_progress', 'tokens', 'wall_time']);
    const negatives = new Set(corpus.map((s) => s.labels.negative).filter(Boolean));
    expect([...negatives].sort()).toEqual(['failing_less', 'flaky', 'many_files', 'outage', 'pagination', 'polling', 'retry_succeeds', 'scaffold', 'test_reruns']);
    expect(new Set(corpus.map((s) => s.agent))).toEqual(new Set(['coder', 'support', 'research']));
    for (const kind of LOOP_KINDS) expect(corpus.filter((s) => s.labels.fire.some((l) => l.kind === kind)).length).toBeGreaterThanOrEqual(5);
  });

  it('labels point at real spans, in order, and hashes are the instrumentation hashes', () => {
    for (const s of corpus) {
      const tools = s.calls.filter((c): c is ToolCall => c.type === 'tool');
      const ids = tools.map((c) => c.spanId);
      for (const l of s.labels.fire) {
        const a = ids.indexOf(l.firstSpanId);
        const b = ids.indexOf(l.lastSpanId);
        expect(a).toBeGreaterThanOrEqual(0);
        expect(b).toBeGreaterThanOrEqual(a);
        expect(l.firstMs).toBeLessThanOrEqual(l.lastMs);
      }
      expect(s.labels.allow.some((k) => s.labels.fire.some((l) => l.kind === k))).toBe(false);
      for (const c of tools.slice(0, 3)) {
        expect(c.argsHash).toBe(valueHash(c.args));
        if (c.status === 'ok') expect(c.resultHash).toBe(valueHash(c.result));
      }
      // calls are in time order and the chat span that asked for a tool call ended before it
      for (let i = 1; i < s.calls.length; i++) expect(s.calls[i]!.startMs).toBeGreaterThanOrEqual(s.calls[i - 1]!.startMs);
    }
  });

  it('emits GenAI semconv spans and agent_tool_calls-shaped guard rows', () => {
    const s = corpus.find((x) => x.labels.fire.some((l) => l.kind === 'retry_storm'))!;
    const spans = sessionSpans(s);
    const root = spans[0]!;
    expect(root.attributes['gen_ai.operation.name']).toBe('invoke_agent');
    const chat = spans.find((x) => x.attributes['gen_ai.operation.name'] === 'chat')!;
    expect(chat.name).toBe(`chat ${s.model}`);
    expect(chat.attributes['gen_ai.usage.input_tokens']).toBeGreaterThan(0);
    const failed = spans.find((x) => x.status.code === 2)!;
    expect(failed.attributes['gen_ai.operation.name']).toBe('execute_tool');
    expect(failed.attributes['error.type']).toBeTruthy();
    expect(failed.events[0]!.name).toBe('exception');
    for (const x of spans.slice(1)) {
      expect(x.attributes['gen_ai.conversation.id']).toBe(s.sessionId);
      expect(x.parentSpanContext?.spanId).toMatch(/^[0-9a-f]{16}$/);
    }
    const rows = guardRows(s);
    expect(rows).toHaveLength(s.calls.filter((c) => c.type === 'tool').length);
    expect(rows.filter((r) => r.status === 'error').every((r) => r.resultHash === '' && r.errorType !== '')).toBe(true);
    expect(rows.every((r) => r.sessionId === s.sessionId && /^[0-9a-f]{16}$/.test(r.argsHash))).toBe(true);
  });

  it('scoring: an allowed kind is not scored, a finding outside the labelled range is a miss', () => {
    const s = corpus.find((x) => x.labels.fire.some((l) => l.kind === 'stuck'))!;
    const label = s.labels.fire[0]!;
    const inRange = { kind: 'stuck', sessionId: s.sessionId, firstMs: label.firstMs, lastMs: label.lastMs };
    const outside = { kind: 'stuck', sessionId: s.sessionId, firstMs: label.lastMs + 1, lastMs: label.lastMs + 2 };
    const allowed = { kind: 'repeat', sessionId: s.sessionId, firstMs: label.firstMs, lastMs: label.lastMs };
    const stuck = (f: typeof inRange[]) => scoreFindings([s], f).find((k) => k.kind === 'stuck')!;
    expect(stuck([inRange])).toMatchObject({ tp: 1, fp: 0, fn: 0 });
    expect(stuck([outside])).toMatchObject({ tp: 0, fp: 1, fn: 1 });
    expect(scoreFindings([s], [allowed]).find((k) => k.kind === 'repeat')).toMatchObject({ tp: 0, fp: 0, allowed: 1 });
  });
});

describe('detectors on the corpus through a real collector', () => {
  let r: EvalResult;
  beforeAll(async () => {
    r = await evaluate({ sessions: 240, seed: 1 });
    console.log(report(r));
  }, 120_000);

  it('stores every call of the corpus once', () => {
    expect(r.stored.toolCalls).toBe(r.stats.toolCalls);
    expect(r.stored.llmCalls).toBe(r.stats.llmCalls);
  });

  for (const side of ['sql', 'guard'] as const) {
    it(`${side}: precision and recall >= 0.95 for every kind`, () => {
      const scores = r[side];
      expect(scores).not.toBeNull();
      for (const s of scores!) {
        expect(s.labelled, `${s.kind} labelled`).toBeGreaterThanOrEqual(5);
        expect(s.precision, `${s.kind} precision; false positives ${s.falsePositives.join(', ')}`).toBeGreaterThanOrEqual(0.95);
        expect(s.recall, `${s.kind} recall; missed ${s.falseNegatives.join(', ')}`).toBeGreaterThanOrEqual(0.95);
      }
    });
  }

  it('the guard and the SQL detectors flag the same sessions for every kind', () => {
    expect(r.disagreements).toEqual([]);
  });

  it('no degradation finding on a single-day corpus', () => {
    expect(r.sqlFindings.filter((f) => f.kind === 'degradation')).toEqual([]);
  });
});

describe('the same corpus in three attribute conventions (GenAI semconv, OpenInference, AI SDK)', () => {
  // OpenInference and AI SDK spans carry raw JSON only: the views hash it in SQL, the guard gets
  // the instrumentation's hashes; both must still see the same loops.
  let r: EvalResult;
  beforeAll(async () => {
    r = await evaluate({ sessions: 150, seed: 3, conventions: 'mixed' });
  }, 120_000);

  it('stores every call, normalized from each convention', () => {
    expect(r.stored.toolCalls).toBe(r.stats.toolCalls);
    expect(r.stored.llmCalls).toBe(r.stats.llmCalls);
    expect(Object.keys(r.stored.conventions).sort()).toEqual(['ai_sdk', 'genai', 'openinference']);
  });

  it('precision and recall >= 0.95 per kind, and the guard agrees with SQL', () => {
    for (const s of r.sql) {
      expect(s.precision, `${s.kind} precision; false positives ${s.falsePositives.join(', ')}`).toBeGreaterThanOrEqual(0.95);
      expect(s.recall, `${s.kind} recall; missed ${s.falseNegatives.join(', ')}`).toBeGreaterThanOrEqual(0.95);
    }
    expect(r.disagreements).toEqual([]);
  });
});
