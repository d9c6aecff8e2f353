// `loopwatch demo` as a newcomer runs it: no collector running, so it starts one on the given
// URL and data directory, runs the sample agent, and shows the findings.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../collector/src/paths.js';
import { assertBuilt, cli, CLI, freePort } from './helpers.js';

describe('loopwatch demo (own collector)', () => {
  it('starts a collector, runs the sample agent and reports loops within the timeout', async () => {
    assertBuilt();
    const dataDir = mkdtempSync(join(tmpdir(), 'lw-demo-test-'));
    try {
      const url = `http://127.0.0.1:${await freePort()}`;
      const r = await cli(['demo', '--json', '--url', url, '--data-dir', dataDir, '--timeout', '60']);
      expect(r.code, r.stderr).toBe(0);
      const d = JSON.parse(r.stdout) as { session_id: string; collector: { url: string; started: boolean; data_dir: string }; findings: Array<{ detector: string; tools: string[] }> };
      expect(d.collector).toMatchObject({ url, started: true, data_dir: dataDir });
      // each loop the sample agent is built to show: the rewrites, the edit/test cycle, the retries
      expect(d.findings.map((f) => f.detector)).toEqual(expect.arrayContaining(['repeat', 'stuck', 'oscillation', 'retry_storm']));
      expect(existsSync(join(dataDir, 'chdb'))).toBe(true); // the data stays where the user asked
      // and the text form tells a newcomer what happened and where to go next
      const textUrl = `http://127.0.0.1:${await freePort()}`;
      const text = await cli(['demo', '--url', textUrl, '--timeout', '60']);
      expect(text.code, text.stderr).toBe(0);
      expect(text.stdout).toContain('loops and waste found:');
      expect(text.stdout).toContain('Next:');
      expect(text.stderr).toContain('starting one');
      // its collector stopped and its temporary data went: no commands that would find nothing
      expect(text.stdout).toContain("The demo's collector has stopped, and its temporary data is removed.");
      expect(text.stdout).toContain(`loopwatch demo --keep --url ${textUrl}`); // at the address given
      expect(text.stdout).toContain(`loopwatch up --port ${new URL(textUrl).port} --grpc-port off`); // 4317 is likely the default collector's
      expect(text.stdout).not.toContain('loopwatch session demo-');
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 150_000);

  it('--keep: the user\'s loop guard and trace exporter settings do not reach the sample agent; Ctrl-C stops the collector cleanly and removes its temporary directory', async () => {
    assertBuilt();
    let dataDir = '';
    try {
      const url = `http://127.0.0.1:${await freePort()}`;
      const child = spawn(process.execPath, [CLI, 'demo', '--keep', '--url', url, '--timeout', '60'], {
        cwd: packageRoot,
        // what an agent developer may have set in the shell: a halting guard, spans sent elsewhere
        env: { ...process.env, NO_COLOR: '1', LOOPWATCH_URL: undefined, LOOPWATCH_GUARD: 'halt', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://127.0.0.1:9/v1/traces' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
      const running = new Promise<void>((resolve) => child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (stderr.includes('(Ctrl-C to stop)')) resolve();
      }));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      await Promise.race([running, exited]);
      dataDir = /data in (\S+)\)/.exec(stderr)?.[1] ?? '';
      expect(dataDir, stderr).toMatch(/loopwatch-demo-/);
      expect(stdout).toContain('loops and waste found:');
      expect(stdout).toContain(`npx loopwatch findings --url ${url}`);
      expect(existsSync(join(dataDir, 'collector.pid'))).toBe(true);
      child.kill('SIGINT');
      expect(await exited, stderr).toBe(0);
      expect(stderr).not.toMatch(/TypeError|at .*\.js:\d+/);
      expect(existsSync(dataDir)).toBe(false); // closed as a collector closes, and its temporary data removed
    } finally {
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    }
  }, 150_000);
});
