// The CLI against a collector with API keys: the read API (/api/*) wants a read key, which the
// CLI sends from LOOPWATCH_API_KEY as `Authorization: Bearer`.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { assertBuilt, cli } from './helpers.js';

const sha = (k: string) => createHash('sha256').update(k).digest('hex');
let tc: TestCollector;

beforeAll(async () => {
  assertBuilt();
  tc = await startTestCollector({ detect: { enabled: false }, auth: { readKeyHashes: [sha('read-key-1')], ingestKeyHashes: [sha('ingest-key-1')] } });
});
afterAll(async () => {
  await tc?.close();
});

describe('CLI with a keyed collector', () => {
  it('is refused without the read key and served with it', async () => {
    const without = await cli(['findings', '--json', '--url', tc.url]);
    expect(without.code).toBe(4);
    expect(without.stderr).toContain('LOOPWATCH_API_KEY');
    const wrong = await cli(['findings', '--json', '--url', tc.url], { LOOPWATCH_API_KEY: 'ingest-key-1' });
    expect(wrong.code).toBe(4);
    const ok = await cli(['findings', '--json', '--url', tc.url], { LOOPWATCH_API_KEY: 'read-key-1' });
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({ findings: [] });
  });
});
