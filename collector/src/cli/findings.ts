// `loopwatch findings`: loop and waste findings, newest first.
import type { Command } from 'commander';
import type { FindingRow } from '../api/queries.js';
import { apiFor, positiveInt, withCommon, type CommonOpts } from './common.js';
import { c, ms, short, table, usd, writeJson } from './format.js';

export function registerFindingsCommand(program: Command): void {
  withCommon(program.command('findings'))
    .description('list loop and waste findings (repeat, stuck, oscillation, retry storm, error loop, runaway, …)')
    .option('--session <id>', 'only this session')
    .option('--detector <name>', 'only this detector')
    .option('--since <time>', 'findings whose loop ran since (ISO time, epoch ms, or an age: 30m, 24h, 7d)', '7d')
    .option('-n, --limit <n>', 'at most this many', positiveInt, 50)
    .action(async (opts: CommonOpts & { session?: string; detector?: string; since: string; limit: number }) => {
      const r = await apiFor(opts).get<{ findings: FindingRow[] }>('/api/v1/findings', { session: opts.session, detector: opts.detector, since: opts.since, limit: opts.limit });
      if (opts.json) return writeJson(r);
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
            f.severity === 'critical' || f.severity === 'high' ? c.red(f.severity) : f.severity,
            short(f.session_id, 32),
            short(f.tools.join(' → '), 32),
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
