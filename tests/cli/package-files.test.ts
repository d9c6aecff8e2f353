// What `npm install loopwatch` gets: the package's `files` list, checked with npm itself (`npm pack
// --dry-run`). Everything the code reads at run time must be in it: the compiled code behind `bin`
// and `exports`, the SQL (schema, detectors, features, reports, prices), the OTLP .proto and the
// sample agent of `loopwatch demo`. Tests, benchmarks and sources are not. Then the packed
// tarball itself, unpacked into a project of its own (its dependencies linked from this
// checkout: no network), runs `loopwatch demo` and takes `import 'loopwatch/instrumentation'`.
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot, protoDir, queriesDir } from '../../collector/src/paths.js';
import { assertBuilt, freePort } from './helpers.js';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile())
    .map((e) => relative(packageRoot, join(e.parentPath, e.name)));
}

describe('the published package', () => {
  it('holds every file read at run time, and no tests, benchmarks or sources', () => {
    const out = execFileSync(npm, ['pack', '--dry-run', '--ignore-scripts', '--json'], { cwd: packageRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const packed = new Set((JSON.parse(out) as [{ files: { path: string }[] }])[0].files.map((f) => f.path));

    const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { bin: Record<string, string>; exports: Record<string, string | Record<string, string>> };
    const entries = [
      ...Object.values(pkg.bin),
      ...Object.values(pkg.exports).flatMap((e) => (typeof e === 'string' ? [e] : Object.values(e))),
      'dist/instrumentation/examples/sample-agent.js',
    ].map((p) => p.replace(/^\.\//, ''));
    const runtime = [
      ...entries,
      ...['schema', 'detectors', 'features', 'reports', 'prices'].flatMap((d) => filesUnder(join(queriesDir, d))),
      ...filesUnder(protoDir),
    ];
    expect(runtime.filter((f) => !packed.has(f))).toEqual([]);
    expect([...packed].filter((f) => /^(tests|bench|corpus|\.ci|\.prof)\/|^(collector|instrumentation)\/src\/|^queries\/src\//.test(f))).toEqual([]);
  });

  it('installed from its tarball, runs `loopwatch demo` and instruments an agent with one import', async () => {
    assertBuilt();
    const dir = mkdtempSync(join(tmpdir(), 'lw-installed-'));
    try {
      execFileSync(npm, ['pack', '--ignore-scripts', '--pack-destination', dir], { cwd: packageRoot, stdio: 'ignore' });
      const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
      const modules = join(dir, 'node_modules');
      const installed = join(modules, 'loopwatch');
      mkdirSync(installed, { recursive: true });
      execFileSync('tar', ['-xzf', join(dir, tarball), '-C', installed, '--strip-components=1']);
      // its dependencies, as npm would have installed them beside it
      for (const name of readdirSync(join(packageRoot, 'node_modules'))) {
        if (name === '.bin' || name === 'loopwatch') continue;
        symlinkSync(join(packageRoot, 'node_modules', name), join(modules, name));
      }
      const run = (args: string[], timeout = 120_000) =>
        new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
          execFile(process.execPath, args, { cwd: dir, timeout, env: { ...process.env, LOOPWATCH_URL: undefined, NO_COLOR: '1' }, maxBuffer: 64 * 1024 * 1024 },
            (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })));

      const demo = await run([join(installed, 'dist/collector/src/cli/main.js'), 'demo', '--json', '--url', `http://127.0.0.1:${await freePort()}`, '--timeout', '60']);
      expect(demo.code, demo.stderr).toBe(0);
      expect((JSON.parse(demo.stdout) as { findings: { detector: string }[] }).findings.map((f) => f.detector)).toContain('stuck');

      // an agent of the user's: the one import, resolved from its node_modules
      const agent = `import { traceTool, withSession } from 'loopwatch/instrumentation';
        const read = traceTool('read_file', (p) => 'x' + p);
        withSession('installed', () => read('a'));
        process.stdout.write('ok');`;
      const imported = await run(['--input-type=module', '-e', agent], 30_000);
      expect(imported.stderr).not.toMatch(/ERR_MODULE_NOT_FOUND|Cannot find/);
      expect(imported.stdout).toBe('ok');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
