// Starts a real collector (embedded chDB, real HTTP on loopback) in a temporary directory.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCollector, type Collector } from '../../collector/src/collector.js';
import { loadConfig, type ConfigInput } from '../../collector/src/config.js';
import { queryRows } from '../../collector/src/store/client.js';

export interface TestCollector {
  collector: Collector;
  url: string;
  dataDir: string;
  rows<T>(sql: string, params?: Record<string, unknown>): Promise<T[]>;
  close(): Promise<void>;
}

export async function startTestCollector(overrides: ConfigInput = {}): Promise<TestCollector> {
  const dataDir = mkdtempSync(join(tmpdir(), 'loopwatch-test-'));
  const config = loadConfig({ port: 0, dataDir, logLevel: 'silent', ...overrides }, {});
  const collector = await createCollector(config);
  const url = await collector.listen();
  return {
    collector,
    url,
    dataDir,
    rows: (sql, params) => queryRows(collector.store.client, sql, params),
    async close() {
      await collector.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
