// `loopwatch models`: per-model reliability by day (queries/reports/model-reliability.sql).
import type { Command } from 'commander';
import type { ModelReliabilityRow } from '../../../queries/src/reports.js';
import { apiFor, positiveInt, withCommon, type CommonOpts } from './common.js';
import { c, forTerminal, pct, table, usd, writeJson } from './format.js';

export function registerModelsCommand(program: Command): void {
  withCommon(program.command('models'))
    .description('per-model reliability by day: tool-call error rate, loop rate, recovery rate, cost per session, latency')
    .option('--since <time>', 'from (ISO time, epoch ms, or an age: 24h, 7d, 30d)', '30d')
    .option('--until <time>', 'to (default: a day from now, so that no call of today is left out)')
    .option('--model <name>', 'only this model')
    .option('--agent <name>', 'only this agent')
    .option('-n, --limit <n>', 'at most this many rows, the newest', positiveInt, 100)
    .action(async (opts: CommonOpts & { since: string; until?: string; model?: string; agent?: string; limit: number }) => {
      const got = await apiFor(opts).get<{ since: string; until: string; total: number; models: ModelReliabilityRow[] }>('/api/v1/models', { since: opts.since, until: opts.until, model: opts.model, agent: opts.agent, limit: opts.limit });
      if (opts.json) return writeJson(got);
      const r = forTerminal(got);
      if (!r.models.length) {
        process.stdout.write(`no LLM calls since ${r.since}\n`);
        return;
      }
      process.stdout.write(
        table(
          ['day', 'model', 'sessions', 'llm calls', 'tool calls', 'tool errors', 'loop rate', 'recovery', 'cost/session', 'p50', 'p95', 'p99'],
          r.models.map((m) => [
            m.day, c.bold(m.model), m.sessions, m.llm_calls, m.tool_calls, pct(m.tool_error_rate),
            m.loop_rate > 0 ? c.yellow(pct(m.loop_rate)) : pct(m.loop_rate), pct(m.recovery_rate), usd(m.cost_per_session),
            `${m.latency_p50_ms}ms`, `${m.latency_p95_ms}ms`, `${m.latency_p99_ms}ms`,
          ]),
        ),
      );
      const earlier = r.total - r.models.length;
      if (earlier > 0) process.stdout.write(c.dim(`  … ${earlier} earlier rows (--since, --model, --agent, --limit)\n`));
    });
}
