// A collector closed in a process that goes on (an application embedding it, a restart) lets go
// of what it held: its spool, store client and metrics. The process's own metrics (memory, heap,
// event loop) are collected once per process: prom-client never stops what collects them, so
// registering them per collector kept every closed collector reachable. Run in a plain process
// of its own (the compiled collector), where nothing else holds on to the collectors.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, expect, it } from 'vitest';
import { packageRoot } from '../../collector/src/paths.js';
import { tempDirs } from '../helpers/temp-dirs.js';
import { ensureBuilt } from './helpers.js';

const tempDir = tempDirs();
beforeAll(() => ensureBuilt());

it('a closed collector is released, and every collector serves the process metrics', () => {
  const dist = (p: string) => pathToFileURL(join(packageRoot, 'dist', 'collector', 'src', p)).href;
  const script = `
    import { createCollector } from ${JSON.stringify(dist('collector.js'))};
    import { loadConfig } from ${JSON.stringify(dist('config.js'))};
    const refs = [];
    let served = 0;
    for (let i = 0; i < 3; i++) {
      const c = await createCollector(loadConfig({ port: 0, grpcPort: 'off', dataDir: ${JSON.stringify(tempDir('lw-release-'))}, logLevel: 'silent', detect: { enabled: false } }, {}));
      await c.listen();
      if (/^process_resident_memory_bytes [1-9]/m.test(await c.metrics.text())) served++;
      refs.push(new WeakRef(c.metrics.registry), new WeakRef(c.spool));
      await c.close();
    }
    for (let i = 0; i < 5; i++) { gc(); await new Promise((r) => setTimeout(r, 50)); }
    console.log(JSON.stringify({ served, released: refs.slice(0, 4).map((r) => r.deref() === undefined) }));
    process.exit(0);`;
  const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 120_000 });
  expect(r.status, r.stderr).toBe(0);
  // the first two (the last is still referenced by the script's own variables at that point)
  expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).toEqual({ served: 3, released: [true, true, true, true] });
});
