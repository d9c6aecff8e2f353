// `loopwatch demo` as a newcomer runs it: no collector running, so it starts one on the given
// URL and data directory, runs the sample agent, and shows the findings.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assertBuilt, cli, freePort } from './helpers.js';

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
      const text = await cli(['demo', '--url', `http://127.0.0.1:${await freePort()}`, '--timeout', '60']);
      expect(text.code, text.stderr).toBe(0);
      expect(text.stdout).toContain('loops and waste found:');
      expect(text.stdout).toContain('Next:');
      expect(text.stderr).toContain('starting one');
      // its collector stopped and its temporary data went: no commands that would find nothing
      expect(text.stdout).toContain("The demo's collector has stopped, and its temporary data is removed.");
      expect(text.stdout).toContain('loopwatch demo --keep');
      expect(text.stdout).not.toContain('loopwatch session demo-');
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 150_000);
});
