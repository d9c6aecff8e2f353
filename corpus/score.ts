// Scoring detector findings against the corpus labels: per kind, session-level precision and
// recall, where a true positive must also overlap the labelled span range in time.
import { LOOP_KINDS, type LoopKind, type Session } from './generate.js';

/** A finding reduced to what scoring needs. */
export interface ScoredFinding {
  kind: string;
  sessionId: string;
  firstMs: number;
  lastMs: number;
}

export interface KindScore {
  kind: LoopKind;
  labelled: number;
  flagged: number;
  tp: number;
  fp: number;
  fn: number;
  /** Flagged sessions where the kind was allowed (implied by another injected loop): not scored. */
  allowed: number;
  precision: number;
  recall: number;
  falsePositives: string[];
  falseNegatives: string[];
}

export function scoreFindings(sessions: Session[], findings: ScoredFinding[]): KindScore[] {
  const byKind = new Map<string, Map<string, ScoredFinding[]>>();
  for (const f of findings) {
    let m = byKind.get(f.kind);
    if (!m) byKind.set(f.kind, (m = new Map()));
    const list = m.get(f.sessionId) ?? [];
    list.push(f);
    m.set(f.sessionId, list);
  }
  return LOOP_KINDS.map((kind) => {
    const flaggedSessions = byKind.get(kind) ?? new Map<string, ScoredFinding[]>();
    const s: KindScore = { kind, labelled: 0, flagged: flaggedSessions.size, tp: 0, fp: 0, fn: 0, allowed: 0, precision: 1, recall: 1, falsePositives: [], falseNegatives: [] };
    const known = new Set<string>();
    for (const session of sessions) {
      known.add(session.sessionId);
      const labels = session.labels.fire.filter((l) => l.kind === kind);
      const found = flaggedSessions.get(session.sessionId) ?? [];
      if (labels.length) {
        s.labelled++;
        const hit = labels.some((l) => found.some((f) => f.firstMs <= l.lastMs && f.lastMs >= l.firstMs));
        if (hit) s.tp++;
        else {
          s.fn++;
          s.falseNegatives.push(session.sessionId);
          if (found.length) {
            s.fp++;
            s.falsePositives.push(`${session.sessionId} (outside the labelled range)`);
          }
        }
      } else if (found.length) {
        if (session.labels.allow.includes(kind)) s.allowed++;
        else {
          s.fp++;
          s.falsePositives.push(session.sessionId);
        }
      }
    }
    // findings on sessions that are not in the corpus count against precision too
    for (const id of flaggedSessions.keys()) {
      if (!known.has(id)) {
        s.fp++;
        s.falsePositives.push(`${id} (not in the corpus)`);
      }
    }
    s.precision = s.tp + s.fp === 0 ? 1 : s.tp / (s.tp + s.fp);
    s.recall = s.tp + s.fn === 0 ? 1 : s.tp / (s.tp + s.fn);
    return s;
  });
}

/** Sessions flagged per kind, for comparing two detectors (SQL vs guard). */
export function flaggedByKind(findings: ScoredFinding[]): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const f of findings) {
    let set = out.get(f.kind);
    if (!set) out.set(f.kind, (set = new Set()));
    set.add(f.sessionId);
  }
  return out;
}

export interface Disagreement {
  kind: string;
  onlySql: string[];
  onlyGuard: string[];
}

export function compareFlagged(sql: ScoredFinding[], guard: ScoredFinding[]): Disagreement[] {
  const a = flaggedByKind(sql);
  const b = flaggedByKind(guard);
  const kinds = new Set([...a.keys(), ...b.keys()]);
  const out: Disagreement[] = [];
  for (const kind of [...kinds].sort()) {
    const sa = a.get(kind) ?? new Set<string>();
    const sb = b.get(kind) ?? new Set<string>();
    const onlySql = [...sa].filter((x) => !sb.has(x)).sort();
    const onlyGuard = [...sb].filter((x) => !sa.has(x)).sort();
    if (onlySql.length || onlyGuard.length) out.push({ kind, onlySql, onlyGuard });
  }
  return out;
}

export function formatTable(title: string, scores: KindScore[]): string {
  const head = ['kind', 'labelled', 'flagged', 'TP', 'FP', 'FN', 'allowed', 'precision', 'recall'];
  const rows = scores.map((s) => [s.kind, s.labelled, s.flagged, s.tp, s.fp, s.fn, s.allowed, s.precision.toFixed(3), s.recall.toFixed(3)].map(String));
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [`${title}`, line(head), `|${widths.map((w, i) => (i === 0 ? ` ${'-'.repeat(w)} ` : ` ${'-'.repeat(w - 1)}: `)).join('|')}|`, ...rows.map(line)].join('\n');
}
