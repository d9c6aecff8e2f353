// Runs the compiled CLI (build first: npx tsc -p .) as a child process.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { packageRoot } from '../../collector/src/paths.js';

export const CLI = join(packageRoot, 'dist/collector/src/cli/main.js');
export const SAMPLE_AGENT = join(packageRoot, 'dist/instrumentation/examples/sample-agent.js');

export function assertBuilt(): void {
  if (!existsSync(CLI) || !existsSync(SAMPLE_AGENT)) throw new Error('dist/ is missing: run `npx tsc -p .` before the CLI tests');
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function cli(args: string[], env: Record<string, string | undefined> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { cwd: packageRoot, env: { ...process.env, LOOPWATCH_URL: undefined, LOOPWATCH_API_KEY: undefined, NO_COLOR: '1', ...env }, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

export function runSampleAgent(url: string, session: string, env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'loopwatch/instrumentation', SAMPLE_AGENT, session], { cwd: packageRoot, env: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: url, ...env } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`sample agent failed: ${stderr}`));
      else resolve({ code: 0, stdout, stderr });
    });
  });
}

/** A port nothing listens on right now. */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Polls until fn returns a truthy value (no fixed sleeps in assertions: the test timeout bounds it). */
export async function until<T>(fn: () => Promise<T | undefined | null | false>, everyMs = 250): Promise<T> {
  for (;;) {
    const v = await fn();
    if (v) return v;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
