// `loopwatch sessions`: the latest sessions, scored (calls, errors, loops, tokens, cost, waste).
import type { Command } from 'commander';
import type { SessionScorecardRow } from '../../../queries/src/reports.js';
import { apiFor, positiveInt, withCommon, type CommonOpts } from './common.js';
import { c, forTerminal, pct, short, table, usd, writeJson } from './format.js';

export function registerSessionsCommand(program: Command): void {
  withCommon(program.command('sessions'))
    .description('list the latest sessions: calls, errors, loops entered, tokens, cost, waste')
    .option('--since <time>', 'sessions active since (ISO time, epoch ms, or an age: 30m, 24h, 7d)', '7d')
    .option('--agent <name>', 'only this agent')
    .option('-n, --limit <n>', 'at most this many sessions', positiveInt, 20)
    .action(async (opts: CommonOpts & { since: string; agent?: string; limit: number }) => {
      const got = await apiFor(opts).get<{ since: string; until: string; sessions: SessionScorecardRow[] }>('/api/v1/sessions', { since: opts.since, agent: opts.agent, limit: opts.limit });
      if (opts.json) return writeJson(got);
      const r = forTerminal(got);
      if (!r.sessions.length) {
        process.stdout.write(`no sessions since ${r.since}\n`);
        return;
      }
      process.stdout.write(
        table(
          ['session', 'agent', 'started', 'calls', 'errors', 'loops', 'tokens', 'cost', 'waste', 'ended'],
          r.sessions.map((s) => [
            short(s.session_id, 40),
            short(s.agent, 20),
            s.started_at.slice(0, 19).replace('T', ' '),
            s.calls,
            // calls the loop guard halted, apart: no tool failed, the model asked to continue a loop
            `${s.errors ? c.red(String(s.errors)) : '0'}${s.halted ? c.yellow(` +${s.halted} halted`) : ''}`,
            s.loops_entered ? c.yellow(`${s.loops_entered} (${s.loop_kinds.join(',')})`) : '0',
            s.tokens,
            usd(s.cost_usd),
            pct(s.waste_ratio),
            s.ended_cleanly ? c.green('clean') : c.red('no'),
          ]),
        ),
      );
    });
}
