// What `npm install loopwatch` gets: the package's `files` list, checked with npm itself (`npm pack
// --dry-run`). Everything the code reads at run time must be in it: the compiled code behind `bin`
// and `exports`, the SQL (schema, detectors, features, reports, prices), the OTLP .proto and the
// sample agent of `loopwatch demo`. Tests, benchmarks and sources are not.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot, protoDir, queriesDir } from '../../collector/src/paths.js';

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
});
