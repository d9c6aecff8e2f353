// The README's "Instrument an agent" example, run as written there: the JavaScript block is taken
// from README.md, saved as agent.mjs in a project of its own whose node_modules/loopwatch is this
// checkout (what `npm install <path to the clone>` makes), and run with node against a real
// collector; then `loopwatch findings` must list the loops the README promises.
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../collector/src/paths.js';
import { assertBuilt, cli, until } from '../cli/helpers.js';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { tempDirs } from '../helpers/temp-dirs.js';

let tc: TestCollector;
const tempDir = tempDirs();
beforeAll(async () => {
  assertBuilt();
  tc = await startTestCollector({ detect: { enabled: true, intervalMs: 200 } });
});
afterAll(async () => {
  await tc?.close();
});

/** The first ```js block after the heading. */
function readmeExample(heading: string): string {
  const readme = readFileSync(join(packageRoot, 'README.md'), 'utf8');
  const from = readme.indexOf(heading);
  expect(from, `README.md has no "${heading}"`).toBeGreaterThanOrEqual(0);
  const block = /```js\n([\s\S]*?)```/.exec(readme.slice(from));
  expect(block, `no js block after "${heading}"`).not.toBeNull();
  return block![1]!;
}

describe('README example agent', () => {
  it('runs as written and its loop is found', async () => {
    const project = tempDir('lw-readme-');
    mkdirSync(join(project, 'node_modules'));
    symlinkSync(packageRoot, join(project, 'node_modules', 'loopwatch'), 'dir');
    writeFileSync(join(project, 'agent.mjs'), readmeExample('### Instrument an agent'));

    const run = await new Promise<{ err: Error | null; stderr: string }>((resolve) =>
      execFile(process.execPath, ['agent.mjs'], {
        cwd: project,
        env: { ...process.env, OTEL_SERVICE_NAME: 'coder', OTEL_EXPORTER_OTLP_ENDPOINT: tc.url, LOOPWATCH_SESSION_ID: undefined, LOOPWATCH_GUARD: undefined },
        timeout: 30_000,
      }, (err, _stdout, stderr) => resolve({ err, stderr })));
    expect(run.err, run.stderr).toBeNull();
    expect(readFileSync(join(project, 'notes.txt'), 'utf8')).toBe('draft');

    // what `npx loopwatch findings` shows, as JSON
    const detectors = await until(async () => {
      const r = await cli(['findings', '--json', '--url', tc.url, '--session', 'ticket-4711']);
      const found = (JSON.parse(r.stdout) as { findings: Array<{ detector: string; repeats: number }> }).findings;
      return found.some((f) => f.detector === 'repeat') && found.some((f) => f.detector === 'stuck') ? found : undefined;
    });
    expect(detectors.find((f) => f.detector === 'repeat')!.repeats).toBe(5);
    const calls = await tc.rows<{ n: string }>("SELECT toString(count()) AS n FROM agent_tool_calls FINAL WHERE session_id = 'ticket-4711' AND tool = 'write_file' AND service = 'coder'");
    expect(calls[0]!.n).toBe('5');
  }, 90_000);

  it('without OTEL_SERVICE_NAME the service is named after the entry script, not the node binary', async () => {
    const project = tempDir('lw-readme-');
    mkdirSync(join(project, 'node_modules'));
    symlinkSync(packageRoot, join(project, 'node_modules', 'loopwatch'), 'dir');
    writeFileSync(join(project, 'my-agent.mjs'), readmeExample('### Instrument an agent').replace("'ticket-4711'", "'ticket-unnamed'"));
    const run = await new Promise<{ err: Error | null; stderr: string }>((resolve) =>
      execFile(process.execPath, ['my-agent.mjs'], {
        cwd: project,
        env: { ...process.env, OTEL_SERVICE_NAME: undefined, OTEL_RESOURCE_ATTRIBUTES: undefined, OTEL_EXPORTER_OTLP_ENDPOINT: tc.url, LOOPWATCH_SESSION_ID: undefined, LOOPWATCH_GUARD: undefined },
        timeout: 30_000,
      }, (err, _stdout, stderr) => resolve({ err, stderr })));
    expect(run.err, run.stderr).toBeNull();
    await tc.collector.flush();
    const rows = await tc.rows<{ service: string }>("SELECT DISTINCT service FROM agent_tool_calls FINAL WHERE session_id = 'ticket-unnamed'");
    expect(rows).toEqual([{ service: 'unknown_service:my-agent.mjs' }]);
  }, 60_000);
});
