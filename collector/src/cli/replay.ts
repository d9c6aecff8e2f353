// `loopwatch replay <file>`: the loop rules over a session file written by `loopwatch export`,
// offline: which loops do these settings find in this session? For tuning thresholds on a
// recorded run before changing them in the collector, or for checking a run in CI.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { DetectorSettingsError, parseDetectorSettings, type DetectorParams } from '../../../queries/src/detector-defaults.js';
import { checkPricesOverride } from '../detect/prices.js';
import { replaySession } from '../export/replay.js';
import { parseSessionFile, SessionFileError } from '../export/session-file.js';
import { c, forTerminal, short, table, usd, writeJson } from './format.js';
import { CliError } from './http-api.js';

export function registerReplayCommand(program: Command): void {
  program
    .command('replay')
    .description('run the loop rules over a session file from `loopwatch export` (offline), with the default or given detector settings')
    .argument('<file>', 'session file (JSON Lines); - reads stdin')
    .option('--detectors <settings>', 'detector settings, e.g. "repeatMinRun=4,stuckMinRun=2" (default: LOOPWATCH_DETECTORS, else the defaults)')
    .option('--fail-on-loop', 'exit with status 1 when a loop (any finding but redundant) is found')
    .option('--json', 'print JSON instead of text')
    .action((path: string, opts: { detectors?: string; failOnLoop?: boolean; json?: boolean }) => {
      let settings: Partial<DetectorParams>;
      const text = opts.detectors ?? process.env.LOOPWATCH_DETECTORS ?? '';
      try {
        settings = parseDetectorSettings(text);
      } catch (err) {
        if (err instanceof DetectorSettingsError) throw new CliError(`${opts.detectors !== undefined ? '--detectors' : 'LOOPWATCH_DETECTORS'}: ${err.message}`, 2);
        throw err;
      }
      // LLM calls without a reported cost are priced from it: a file that cannot be used is said
      // here, in one line, as `up` says it
      try {
        checkPricesOverride();
      } catch (err) {
        throw new CliError(`LOOPWATCH_MODEL_PRICES: ${(err as Error).message}`, 2);
      }
      let content: string;
      try {
        content = readFileSync(path === '-' ? 0 : path, 'utf8');
      } catch (err) {
        throw new CliError(`cannot read ${path}: ${(err as Error).message}`, 1);
      }
      let result;
      try {
        result = replaySession(parseSessionFile(content), settings);
      } catch (err) {
        if (err instanceof SessionFileError) throw new CliError(`${path === '-' ? 'stdin' : path}: ${err.message}`, 1);
        throw err;
      }
      const loops = result.findings.filter((f) => f.kind !== 'redundant').length;
      if (opts.json) {
        // findings with the keys `loopwatch findings --json` has for the collector's (replay finds the same)
        const findings = result.findings.map((f) => ({
          detector: f.kind, severity: f.severity, session_id: f.sessionId, tools: f.tools, first_span_id: f.firstSpanId, last_span_id: f.lastSpanId,
          repeats: f.repeats, wasted_calls: f.wastedCalls, wasted_tokens: f.wastedTokens, wasted_cost_usd: f.wastedCostUsd, message: f.message,
        }));
        writeJson({ session_id: result.sessionId, tool_calls: result.toolCalls, llm_calls: result.llmCalls, settings: result.settings, findings });
      } else {
        result = forTerminal(result);
        const changed = Object.entries(settings).map(([k, v]) => `${k}=${v}`).join(', ');
        process.stdout.write(`session ${result.sessionId}: ${result.toolCalls} tool calls, ${result.llmCalls} LLM calls; settings: ${changed || 'defaults'}\n`);
        if (result.findings.length === 0) {
          process.stdout.write('no loops found\n');
        } else {
          process.stdout.write(
            table(
              ['detector', 'severity', 'tools', 'repeats', 'wasted', 'tokens', 'cost', 'first span', 'last span', 'message'],
              result.findings.map((f) => [
                c.yellow(f.kind),
                f.severity === 'critical' ? c.red(f.severity) : f.severity,
                short(f.tools.join(', '), 32),
                f.repeats,
                `${f.wastedCalls} calls`,
                Math.round(f.wastedTokens),
                usd(f.wastedCostUsd),
                f.firstSpanId,
                f.lastSpanId,
                short(f.message, 60),
              ]),
            ),
          );
        }
      }
      if (opts.failOnLoop && loops > 0) process.exitCode = 1;
    });
}
