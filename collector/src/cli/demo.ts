// `loopwatch demo`: a newcomer's first minute. Uses the collector at --url when one answers,
// else starts one (temporary data dir unless --data-dir) with the detectors on a short interval;
// runs the bundled sample agent (a coding agent that loops) against it, waits for the detectors'
// findings, and shows the session's timeline with the loops highlighted.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { createCollector, type Collector } from '../collector.js';
import { loadConfig } from '../config.js';
import { packageRoot } from '../paths.js';
import type { FindingRow } from '../api/queries.js';
import { apiFor, positiveInt, withCommon, type CommonOpts } from './common.js';
import { c, forTerminal, progress, writeJson } from './format.js';
import { CliError, DEFAULT_URL, sessionPath } from './http-api.js';
import { loopsOf, renderSession, type SessionDetail } from './session.js';

const run = promisify(execFile);

interface DemoOpts extends CommonOpts {
  dataDir?: string;
  timeout: number;
  keep?: boolean;
}

async function startOwnCollector(url: string, dataDir: string): Promise<Collector> {
  const u = new URL(url);
  // the sample agent exports over HTTP: no gRPC port to hold (or find taken)
  const config = loadConfig({ host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port ? Number(u.port) : 4318, grpcPort: null, dataDir, logLevel: 'warn', detect: { intervalMs: 1000 } });
  const collector = await createCollector(config);
  try {
    await collector.listen();
  } catch (err) {
    await collector.close();
    // the collector's message names the address; its advice names up's flag, the demo's is --url
    throw new CliError((err as Error).message.replace(/choose another with --port( \(LOOPWATCH_PORT\))?/, 'choose another with --url'));
  }
  return collector;
}

/**
 * Where a newcomer goes from here. The commands that read the session need a collector: the one
 * the demo used when it stays up (it was already running, or --keep). A collector the demo
 * started stops when it ends, and a temporary data directory goes with it: then say how to get
 * one that stays, rather than list commands that would find nothing.
 */
function nextSteps(url: string, session: string, stillUp: boolean, keptDataDir: string | undefined): string[] {
  const instrument = `  instrument your agent: OTEL_EXPORTER_OTLP_ENDPOINT=${url} node --import loopwatch/instrumentation your-agent.js`;
  // the address given, in the commands suggested (a newcomer copies them as they are)
  const atUrl = url === DEFAULT_URL ? '' : ` --url ${url}`;
  const u = new URL(url);
  // on another port than the default, gRPC's default (4317) is likely taken too (by the collector on 4318)
  const onPort = u.port && u.port !== '4318' ? ` --port ${u.port} --grpc-port off` : '';
  if (stillUp) {
    return [
      'Next:',
      `  npx loopwatch findings --url ${url}                 all findings`,
      `  npx loopwatch session ${session} --url ${url}`,
      `  npx loopwatch export ${session} -o session.jsonl --url ${url}`,
      instrument,
    ];
  }
  return [
    keptDataDir
      ? `The demo's collector has stopped; its data stays in ${keptDataDir}.`
      : "The demo's collector has stopped, and its temporary data is removed.",
    'Next:',
    keptDataDir
      ? `  npx loopwatch up --data-dir ${keptDataDir}${onPort}         serve it again, then: npx loopwatch session ${session}${atUrl}`
      : `  npx loopwatch demo --keep${atUrl}                          the same, with the collector left running to explore the session`,
    `  npx loopwatch up${onPort}                                   a collector that keeps its data (in .loopwatch)`,
    instrument,
  ];
}

/**
 * The sample agent's environment: the user's, less what would change what the demo shows (a loop
 * guard that halts the agent, a session or agent name of the user's, trace exporter settings
 * that send the spans elsewhere or not at all), pointed at the demo's collector.
 */
function sampleAgentEnv(url: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^LOOPWATCH_(GUARD|SESSION_ID|AGENT|INSTRUMENTATION|CAPTURE)/.test(k)) continue;
    if (/^OTEL_(EXPORTER_OTLP_(TRACES_)?(ENDPOINT|PROTOCOL)|TRACES_EXPORTER|TRACES_SAMPLER(_ARG)?|SDK_DISABLED)$/.test(k)) continue;
    env[k] = v;
  }
  return { ...env, OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_SERVICE_NAME: 'loopwatch-demo', LOOPWATCH_INSTRUMENTATION: 'on' };
}

export function registerDemoCommand(program: Command): void {
  withCommon(program.command('demo'))
    .description('see a loop detected within a minute: runs the bundled sample agent against a collector (started here unless one answers at --url); exit 1 if no loop is found in time')
    .option('-d, --data-dir <dir>', 'data directory for the collector started here (default: a temporary one, removed afterwards)')
    .option('--timeout <seconds>', 'wait at most this long for findings', positiveInt, 60)
    .option('--keep', 'keep the collector started here running afterwards (Ctrl-C stops it)')
    .action(async (opts: DemoOpts) => {
      const api = apiFor(opts);
      const say = (s: string) => {
        if (!opts.json) process.stderr.write(s + '\n');
      };
      let own: Collector | null = null;
      let tempDir: string | null = null;
      if (await api.reachable()) {
        say(`using the collector at ${api.url}`);
        // a collector with keys: a read key that will not do is said now, before the sample agent runs
        await api.get('/api/v1/status');
      } else {
        // the demo's own collector serves plain HTTP: it would start, and then not answer the https:// asked for
        if (new URL(api.url).protocol === 'https:') {
          throw new CliError(`no collector at ${api.url}, and the demo starts one only on an http:// URL (start yours with \`loopwatch up --tls-cert … --tls-key …\` first, or give --url http://…)`, 2);
        }
        const dataDir = opts.dataDir ?? (tempDir = mkdtempSync(join(tmpdir(), 'loopwatch-demo-')));
        say(`no collector at ${api.url}: starting one (data in ${dataDir})`);
        try {
          own = await startOwnCollector(api.url, dataDir);
        } catch (err) {
          if (tempDir) rmSync(tempDir, { recursive: true, force: true });
          throw err;
        }
      }
      try {
        const agent = join(packageRoot, 'dist', 'instrumentation', 'examples', 'sample-agent.js');
        const register = join(packageRoot, 'dist', 'instrumentation', 'src', 'index.js');
        if (!existsSync(agent) || !existsSync(register)) throw new CliError(`sample agent not built (${agent}): run \`npm run build\``);
        const session = `demo-${new Date().toISOString().replace(/[:.]/g, '-')}`;
        say(`running the sample agent (session ${session}): it rewrites one file, bounces between tests and edits, retries a command that cannot work`);
        // what the instrumentation said (spans the collector refused: a collector with keys, no ingest key)
        let agentSaid = '';
        try {
          const { stderr } = await run(process.execPath, ['--import', pathToFileURL(register).href, agent, session], { cwd: packageRoot, env: sampleAgentEnv(api.url) });
          agentSaid = stderr.split('\n').filter((l) => l.startsWith('[loopwatch]')).slice(0, 6).join('\n');
        } catch (err) {
          const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim().split('\n').slice(0, 6).join('\n');
          throw new CliError(`the sample agent failed (${(err as { code?: unknown }).code ?? 'no exit code'}):\n${stderr || (err as Error).message}`);
        }
        if (own) await own.flush();

        // Wait for the detectors: they run every few seconds on sessions with new calls.
        const deadline = Date.now() + opts.timeout * 1000;
        const bar = progress(opts.timeout, { json: opts.json, label: 'waiting for the detectors' });
        const started = Date.now();
        let findings: FindingRow[] = [];
        let settledAt = 0;
        while (Date.now() < deadline) {
          findings = (await api.get<{ findings: FindingRow[] }>('/api/v1/findings', { session, since: '1d', limit: 1000 })).findings;
          bar.update(Math.min(opts.timeout, Math.round((Date.now() - started) / 1000)), { stage: `${findings.length} findings` });
          // once something is found, give the other detectors one more pass to report theirs
          if (findings.length && !settledAt) settledAt = Date.now() + 2500;
          if (settledAt && Date.now() >= settledAt) break;
          await new Promise((r) => setTimeout(r, 500));
        }
        bar.stop();
        if (!findings.length && agentSaid) process.stderr.write(`the sample agent's instrumentation said:\n${agentSaid}\n`);
        let detail: SessionDetail;
        try {
          detail = await api.get<SessionDetail>(sessionPath(session), { limit: 500 });
        } catch (err) {
          // none of its calls reached the store: said as that, not as an unknown session the user asked for
          if (err instanceof CliError && err.exitCode === 5) {
            throw new CliError(`none of the sample agent's calls reached the collector at ${api.url}${agentSaid ? ' (see above)' : ''}`, 1);
          }
          throw err;
        }
        if (opts.json) {
          writeJson({
            session_id: session,
            collector: { url: api.url, started: !!own, data_dir: own ? own.config.dataDir : undefined },
            findings: detail.findings,
            scorecard: detail.scorecard,
            calls: detail.calls.map((call) => ({ ...call, loops: loopsOf(call, detail.findings, detail.calls).map((f) => f.detector) })),
          });
        } else {
          process.stdout.write(renderSession(forTerminal(detail)));
          process.stdout.write(
            [
              '',
              detail.findings.length
                ? c.yellow(`${detail.findings.length} loop/waste findings in ${Math.round((Date.now() - started) / 1000)}s.`)
                : c.red(`no findings within ${opts.timeout}s (is the collector's detector scheduler on?)`),
              ...nextSteps(api.url, session, !own || !!opts.keep, tempDir === null ? own?.config.dataDir : undefined),
              '',
            ].join('\n'),
          );
        }
        if (!detail.findings.length) process.exitCode = 1;
        if (own && opts.keep) {
          const kept = own; // `own` and `tempDir` are cleared below: the handler keeps its own references
          const keptDir = tempDir;
          const stop = () => void kept.close().then(
            () => {
              if (keptDir) rmSync(keptDir, { recursive: true, force: true }); // as without --keep
              process.exit(0);
            },
            () => process.exit(1),
          );
          process.once('SIGINT', stop);
          process.once('SIGTERM', stop);
          own = null; // the signal handler closes it
          tempDir = null;
          // said once Ctrl-C is handled: a signal right after the line would otherwise kill the
          // process with the collector open (seen in the tests on a loaded machine)
          say(`collector running on ${api.url} (Ctrl-C to stop)`);
        }
      } finally {
        if (own) await own.close();
        if (tempDir) rmSync(tempDir, { recursive: true, force: true });
      }
    });
}
