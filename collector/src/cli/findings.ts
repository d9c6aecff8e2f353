// `loopwatch findings`: loop and waste findings, newest first; with --follow, as they are found.
import { Option, type Command } from 'commander';
import { detectorFileNames } from '../paths.js';
import type { FindingRow } from '../api/queries.js';
import { apiFor, positiveInt, withCommon, type CommonOpts } from './common.js';
import { CliError, type ApiClient } from './http-api.js';
import { c, forTerminal, ms, short, table, usd, writeJson } from './format.js';

interface FindingsOpts extends CommonOpts {
  session?: string;
  detector?: string;
  since: string;
  limit: number;
  follow?: boolean;
  interval: number;
}


export function registerFindingsCommand(program: Command): void {
  withCommon(program.command('findings'))
    .description('list loop and waste findings (repeat, stuck, oscillation, retry storm, error loop, runaway, …)')
    .option('--session <id>', 'only this session')
    // the detectors this package runs (queries/detectors/*.sql): a misspelt one is refused, not "no findings"
    .addOption(new Option('--detector <name>', 'only this detector').choices(detectorFileNames().map((f) => f.slice(0, -4))))
    .option('--since <time>', 'findings whose loop ran since (ISO time, epoch ms, or an age: 30m, 24h, 7d)', '7d')
    .option('-n, --limit <n>', 'at most this many', positiveInt, 50)
    .option('-f, --follow', 'keep watching: print each finding when it is stored, and again when its loop grows (--json: one JSON object per line with "event": existing, new or grew), until Ctrl-C')
    .option('--interval <seconds>', 'with --follow, how often to ask the collector', positiveInt, 2)
    .action(async (opts: FindingsOpts) => {
      const api = apiFor(opts);
      if (opts.follow) return follow(api, opts);
      const got = await api.get<{ findings: FindingRow[] }>('/api/v1/findings', { session: opts.session, detector: opts.detector, since: opts.since, limit: opts.limit });
      if (opts.json) return writeJson(got);
      const r = forTerminal(got);
      if (!r.findings.length) {
        process.stdout.write('no findings\n');
        return;
      }
      process.stdout.write(
        table(
          ['detected', 'detector', 'severity', 'session', 'tools', 'repeats', 'wasted', 'cost', 'time', 'message'],
          r.findings.map((f) => [
            f.detected_at.slice(0, 19).replace('T', ' '),
            c.yellow(f.detector),
            severity(f.severity),
            short(f.session_id, 32),
            short(f.tools.join(', '), 32),
            f.repeats,
            `${f.wasted_calls} calls`,
            usd(f.wasted_cost_usd),
            ms(f.wasted_time_ms),
            short(f.message, 60),
          ]),
        ),
      );
    });
}

const severity = (s: string) => (s === 'critical' || s === 'high' ? c.red(s) : s);

/** How many of the newest findings each poll reads. */
const WATCHED = 1000;

/**
 * Polls the findings API and prints what is new: a finding not seen before, or one whose loop
 * grew (more repeats or wasted calls: the loop keeps going, and the finding is updated in place).
 * The newest `limit` findings are printed first, oldest first, as `tail -f` does. A collector
 * that stops answering is reported once and asked again; follow ends only on a signal.
 */
async function follow(api: ApiClient, opts: FindingsOpts): Promise<never> {
  const seen = new Map<string, string>();
  const progressOf = (f: FindingRow) => `${f.repeats}/${f.wasted_calls}`;
  let down: string | undefined;
  for (let first = true; ; first = false) {
    let found: FindingRow[] | undefined;
    try {
      found = (await api.get<{ findings: FindingRow[] }>('/api/v1/findings', { session: opts.session, detector: opts.detector, since: opts.since, limit: WATCHED })).findings;
      if (down) process.stderr.write(`loopwatch: the collector at ${api.url} answers again\n`);
      down = undefined;
    } catch (err) {
      // a bad argument or a refused key will not get better by asking again
      if (first || !(err instanceof CliError) || err.exitCode !== 3) throw err;
      if (!down) process.stderr.write(`loopwatch: ${err.message}; asking again every ${opts.interval}s\n`);
      down = err.message;
    }
    // newest first from the API, printed oldest first. At the start the newest `limit` are
    // printed and all are remembered, so older ones never show up later as new.
    const list = found ?? [];
    let events: [FollowEvent, FindingRow][];
    if (first) {
      for (const f of list) seen.set(f.finding_id, progressOf(f));
      events = list.slice(0, opts.limit).map((f) => ['existing', f]);
    } else {
      events = list.flatMap((f): [FollowEvent, FindingRow][] => {
        const before = seen.get(f.finding_id);
        const now = progressOf(f);
        if (before === now) return [];
        seen.set(f.finding_id, now);
        return [[before === undefined ? 'new' : 'grew', f]];
      });
    }
    for (const [event, f] of events.reverse()) printEvent(event, f, opts.json);
    await new Promise((r) => setTimeout(r, opts.interval * 1000));
  }
}

/** existing: stored before follow started; new: stored since; grew: its loop went on. */
type FollowEvent = 'existing' | 'new' | 'grew';

function printEvent(event: FollowEvent, found: FindingRow, json: boolean | undefined): void {
  if (json) {
    process.stdout.write(JSON.stringify({ event, ...found }) + '\n');
    return;
  }
  const f = forTerminal(found);
  process.stdout.write(
    [
      f.detected_at.slice(11, 19),
      event === 'new' ? c.bold('new ') : event === 'grew' ? c.dim('grew') : '    ',
      c.yellow(f.detector.padEnd(11)),
      severity(f.severity.padEnd(8)),
      short(f.session_id, 32).padEnd(24),
      short(f.tools.join(', '), 32).padEnd(24),
      `×${f.repeats}`.padEnd(4),
      `wasted ${f.wasted_calls} calls ${usd(f.wasted_cost_usd)}`.padEnd(24),
      short(f.message, 80),
    ].join('  ') + '\n',
  );
}
