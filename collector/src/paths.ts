// Files the collector reads at run time (SQL, .proto) live beside the code in the package;
// the same lookup works from TypeScript sources (tests) and from the compiled dist/ tree.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function findPackageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'loopwatch') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('loopwatch package root not found');
    dir = up;
  }
}

export const packageRoot = findPackageRoot();
/** The package's version: the collector's Loopwatch-Version response header, which the CLI looks for. */
export const packageVersion = (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
export const queriesDir = join(packageRoot, 'queries');
export const detectorsDir = join(queriesDir, 'detectors');

/**
 * The detector files of a directory, sorted: `<name>.sql` with a name of lower-case letters,
 * digits and `_` starting with a letter or digit (`_draft.sql` and `my-rule.sql` are not run).
 * Here, not beside the runner, so that the CLI lists the detectors without loading the engine.
 */
export function detectorFileNames(dir = detectorsDir): string[] {
  return readdirSync(dir).filter((f) => /^[a-z0-9][a-z0-9_]*\.sql$/.test(f)).sort();
}
export const protoDir = join(packageRoot, 'collector', 'proto');
