// `loopwatch session <id>`: a terminal timeline of the session's calls, loops highlighted.
import type { Command } from 'commander';
import type { SessionScorecardRow } from '../../../queries/src/reports.js';
import type { CallRow, FindingRow } from '../api/queries.js';
import { normalizeErrorMessage } from '../../../queries/src/detector-defaults.js';
import { apiFor, nonNegativeInt, positiveInt, withCommon, type CommonOpts } from './common.js';
import { c, forTerminal, ms, pct, plural, short, usd, writeJson } from './format.js';
import { sessionPath } from './http-api.js';

export interface SessionDetail {
  session_id: string;
  scorecard: SessionScorecardRow | null;
  total_calls: number;
  offset: number;
  calls: CallRow[];
  findings: FindingRow[];
}

/** Which findings a call is part of: a call of one of the finding's tools within its span of time, sharing what its calls share. */
export function loopsOf(call: CallRow, findings: FindingRow[], calls: readonly CallRow[] = []): FindingRow[] {
  return findings.filter((f) => {
    if (call.kind !== 'tool' || !f.tools.includes(call.name) || call.ts < f.first_ts || call.ts > f.last_ts) return false;
    // what the finding's calls share, from its first call (when it is among those shown): calls
    // of the tool in the loop's time with other arguments are not part of a repeat, a stuck or a
    // redundant call, nor a success part of an error loop
    const first = calls.find((x) => x.span_id === f.first_span_id);
    if (!first) return true;
    switch (f.detector) {
      case 'repeat':
        return call.args_hash === first.args_hash;
      case 'stuck':
      case 'redundant':
        return call.args_hash === first.args_hash && call.result_hash === first.result_hash;
      case 'error_loop':
        // the detector's identity of an error: tool, type and message with its ids and times left out
        return call.status === 'error' && call.name === first.name && call.error_type === first.error_type
          && normalizeErrorMessage(call.error_message ?? '') === normalizeErrorMessage(first.error_message ?? '');
      case 'retry_storm':
        return call.status === 'error';
      default:
        return true;
    }
  });
}

// a mark per finding: 62 before they repeat (a session with more is rare, and its lines wide)
const MARKS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** Epoch ms of an ISO time with up to nanosecond digits (Date.parse keeps only milliseconds). */
export function isoMs(iso: string): number {
  const m = /^(.*T\d{2}:\d{2}:\d{2})(?:\.(\d+))?Z$/.exec(iso);
  if (!m) return Date.parse(iso);
  return Date.parse(`${m[1]}Z`) + (m[2] ? Number(`0.${m[2]}`) * 1000 : 0);
}

/** The detectors whose calls share something with the finding's first call (loopsOf). */
const NEEDS_FIRST_CALL = new Set(['repeat', 'stuck', 'redundant', 'error_loop']);

export function renderSession(d: SessionDetail, anchors: readonly CallRow[] = []): string {
  const known = anchors.length ? [...d.calls, ...anchors] : d.calls;
  const out: string[] = [];
  const s = d.scorecard;
  // a session several agents share (sub-agents, handoffs): each call and finding says whose it is.
  // Known from the page, its findings and the scorecard's agent (one of the session's): a page of
  // one sub-agent's calls in a shared session still names them
  const agents = [...new Set([s?.agent ?? '', ...d.calls.map((x) => x.agent), ...d.findings.map((f) => f.agent)].filter((a) => a))];
  const shared = agents.length > 1;
  const who = shared ? `agents ${agents.join(', ')}` : `agent ${s?.agent ?? ''}`;
  out.push(c.bold(`session ${d.session_id}`) + (s ? c.dim(`  ${who}  service ${s.service}${s.model ? `  model ${s.model}` : ''}`) : ''));
  if (s) {
    out.push(
      `  ${plural(s.calls, 'tool call')}, ${plural(s.llm_calls, 'LLM call')}, ${plural(s.errors, 'error')}, ${s.halted ? c.yellow(`${s.halted} halted by the loop guard, `) : ''}${plural(s.loops_entered, 'loop')} entered, ` +
        `${plural(s.tokens, 'token')}, ${usd(s.cost_usd)}, wall ${ms(s.wall_time_s * 1000)}, waste ${pct(s.waste_ratio)}, ${s.ended_cleanly ? c.green('ended cleanly') : c.red('did not end cleanly')}`,
    );
  }
  // the findings listed, each with a margin column: those of the calls shown (all when none are),
  // up to a mark each. A session with hundreds of findings made lines of hundreds of columns
  // and thousands of lines before its first call.
  const loopsByCall = d.calls.map((call) => loopsOf(call, d.findings, known));
  const onPage = new Set(loopsByCall.flat());
  const listed = (d.calls.length ? d.findings.filter((f) => onPage.has(f)) : d.findings).slice(0, MARKS.length);
  const detectorMark = new Map<string, string>();
  if (d.findings.length) {
    out.push('', c.bold('loops and waste found:'));
    listed.forEach((f, i) => {
      const mark = MARKS[i]!;
      detectorMark.set(f.finding_id, mark);
      out.push(
        `  ${c.yellow(mark)} ${c.yellow(f.detector.padEnd(12))} ${shared ? `${f.agent || '?'}: ` : ''}${f.tools.join(', ')}  ×${f.repeats}  wasted ${f.wasted_calls} calls` +
          `${f.wasted_tokens ? `, ${f.wasted_tokens} tokens` : ''}${f.wasted_cost_usd ? `, ${usd(f.wasted_cost_usd)}` : ''}${f.wasted_time_ms ? `, ${ms(f.wasted_time_ms)}` : ''}`,
      );
      if (f.message) out.push(`    ${c.dim(f.message)}`);
    });
    const unlisted = d.findings.length - listed.length;
    const where = d.calls.length ? ' not on the calls shown' : '';
    if (unlisted > 0) out.push(c.dim(`  … ${plural(unlisted, 'more finding')}${where} (\`npx loopwatch findings --session ${d.session_id}\`)`));
  } else {
    out.push('', c.green('no loops found (yet: detectors run every few seconds)'));
  }
  out.push('', c.bold('timeline:'));
  // times from the session's start, also when the calls shown start further on (--offset)
  // (a collector before 2026-12-05 gave started_at without a zone, in its own: used only when it fits the calls)
  const first = d.calls[0] ? isoMs(d.calls[0].ts) : 0;
  const started = s?.started_at ? isoMs(s.started_at.endsWith('Z') ? s.started_at : `${s.started_at.replace(' ', 'T')}Z`) : NaN;
  const t0 = Number.isFinite(started) && started <= first && first - started <= s!.wall_time_s * 1000 + 1000 ? started : first;
  if (d.calls.length === 0 && d.offset > 0) out.push(c.dim(`  no calls from --offset ${d.offset}: the session has ${plural(d.total_calls, 'call')}`));
  d.calls.forEach((call, i) => {
    const loops = loopsByCall[i]!;
    const marks = listed.map((f) => (loops.includes(f) ? detectorMark.get(f.finding_id)! : ' ')).join('');
    const at = `+${ms(Math.max(0, isoMs(call.ts) - t0))}`.padStart(8);
    const n = String(d.offset + i + 1).padStart(4);
    let what: string;
    if (call.kind === 'llm') {
      what = `${c.cyan('llm ')} ${short(call.name || '?', 28).padEnd(28)} ${call.input_tokens}→${call.output_tokens} tok ${usd(call.cost_usd)}`;
    } else {
      const args = call.arguments ? short(call.arguments.replace(/\s+/g, ' '), 40) : c.dim(`args#${call.args_hash.slice(0, 8)}`);
      const result = call.status === 'error' ? c.red(short(`${call.error_type}: ${call.error_message}`, 50)) : call.result ? short(call.result.replace(/\s+/g, ' '), 30) : call.result_hash ? c.dim(`result#${call.result_hash.slice(0, 8)}`) : c.dim('result unknown');
      what = `${'tool'} ${short(call.name, 28).padEnd(28)} ${args}  → ${result}`;
    }
    const agent = shared ? `${short(call.agent || '?', 16).padEnd(16)} ` : '';
    const line = `${c.yellow(marks || '')} ${n} ${at} ${ms(call.duration_ms).padStart(7)}  ${agent}${what}`;
    const tag = loops.length ? `  ${c.yellow(`⟲ ${[...new Set(loops.map((f) => f.detector))].join(', ')}`)}` : '';
    out.push(loops.length ? c.bold(line) + tag : line);
  });
  if (d.total_calls > d.offset + d.calls.length) out.push(c.dim(`  … ${d.total_calls - d.offset - d.calls.length} more calls (--offset, --limit, or \`npx loopwatch export\`)`));
  return out.join('\n') + '\n';
}

export function registerSessionCommand(program: Command): void {
  withCommon(program.command('session'))
    .description('show one session as a timeline of its tool and LLM calls, loops highlighted')
    .argument('<id>', 'session id')
    .option('--offset <n>', 'start at this call (0-based)', nonNegativeInt, 0)
    .option('-n, --limit <n>', 'show at most this many calls', positiveInt, 500)
    .action(async (id: string, opts: CommonOpts & { offset: number; limit: number }) => {
      const api = apiFor(opts);
      const d = await api.get<SessionDetail>(sessionPath(id), { offset: opts.offset, limit: opts.limit });
      // the first calls of the findings on this page that start before it (--offset): what the
      // finding's calls share is read from its first call
      const shown = new Set(d.calls.map((x) => x.span_id));
      const pageFirst = d.calls[0]?.ts ?? '';
      const pageLast = d.calls[d.calls.length - 1]?.ts ?? '';
      const anchors: CallRow[] = [];
      for (const f of d.findings) {
        if (shown.has(f.first_span_id) || !NEEDS_FIRST_CALL.has(f.detector) || f.first_ts > pageLast || f.last_ts < pageFirst) continue;
        // the calls from the finding's start: a cursor just before it (' ' sorts before any span id)
        const got = await api.get<{ calls: CallRow[] }>(sessionPath(id, '/calls'), { after_ts: f.first_ts, after_span: ' ', limit: 100 });
        const first = got.calls.find((x) => x.span_id === f.first_span_id);
        if (first) anchors.push(first);
      }
      const known = [...d.calls, ...anchors];
      if (opts.json) {
        const calls = d.calls.map((call) => ({ ...call, loops: loopsOf(call, d.findings, known).map((f) => f.detector) }));
        return writeJson({ ...d, calls });
      }
      // anchors made printable as the page's calls are, so that their texts compare alike
      process.stdout.write(renderSession(forTerminal(d), forTerminal({ ...d, calls: anchors }).calls));
    });
}
