// The embedded store keeps UTC whatever the machine's time zone: a collector run under
// TZ=America/Los_Angeles read its loops' times as local text (loop spans 8 hours off, an hour
// off or ending before they began around a daylight-saving change). A process of its own: the
// engine reads the zone once, when it starts.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { packageRoot } from '../../collector/src/paths.js';
import { assertBuilt } from '../cli/helpers.js';

const dist = (p: string) => JSON.stringify(join(packageRoot, 'dist', 'collector', 'src', p));

describe('the embedded store under another time zone', () => {
  it('keeps UTC: a loop found, its finding and its loop span at the calls\' times', () => {
    assertBuilt();
    const script = `
      import { mkdtempSync, rmSync } from 'node:fs';
      import { tmpdir } from 'node:os';
      import { join } from 'node:path';
      import { createCollector } from ${dist('collector.js')};
      import { loadConfig } from ${dist('config.js')};
      import { runDetectors } from ${dist('detect/run-detectors.js')};
      import { queryRows } from ${dist('store/client.js')};
      const dataDir = mkdtempSync(join(tmpdir(), 'lw-tz-'));
      const c = await createCollector(loadConfig({ port: 0, dataDir, logLevel: 'silent', detect: { enabled: false } }, {}));
      const url = await c.listen();
      // six identical calls a second apart, ten minutes ago
      const t0 = BigInt(Date.now() - 600_000) * 1_000_000n;
      const spans = Array.from({ length: 6 }, (_, i) => ({
        traceId: 'ab'.repeat(16), spanId: (i + 1).toString(16).padStart(16, '0'), name: 'execute_tool grep',
        startTimeUnixNano: String(t0 + BigInt(i) * 1_000_000_000n), endTimeUnixNano: String(t0 + BigInt(i) * 1_000_000_000n + 100_000_000n),
        attributes: [['gen_ai.operation.name', 'execute_tool'], ['gen_ai.tool.name', 'grep'], ['gen_ai.conversation.id', 'tz-session'],
                     ['gen_ai.tool.call.arguments', '{"q":"x"}'], ['gen_ai.tool.call.result', 'nothing']].map(([key, v]) => ({ key, value: { stringValue: v } })),
      }));
      const res = await fetch(url + '/v1/traces', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans }] }] }) });
      await c.flush();
      await runDetectors(c.store.client);
      const [zone] = await queryRows(c.store.client, 'SELECT timezone() AS tz');
      const [f] = await queryRows(c.store.client, "SELECT toString(toUnixTimestamp64Nano(first_ts)) AS first, toString(toUnixTimestamp64Nano(last_ts)) AS last FROM agent_findings FINAL WHERE session_id = 'tz-session' AND detector = 'repeat'", {});
      const [span] = await queryRows(c.store.client, "SELECT toString(toUnixTimestamp64Nano(Timestamp)) AS start, toString(Duration) AS duration FROM otel_traces WHERE SpanName = 'loopwatch.loop' AND SpanAttributes['loop.detector'] = 'repeat' ORDER BY Timestamp DESC LIMIT 1", {});
      await c.close();
      rmSync(dataDir, { recursive: true, force: true });
      process.stdout.write(JSON.stringify({ status: res.status, processZone: process.env.TZ, storeZone: zone.tz, t0: String(t0), f, span }));`;
    const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: packageRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TZ: 'America/Los_Angeles' },
    })) as { status: number; storeZone: string; t0: string; f: { first: string; last: string }; span: { start: string; duration: string } };
    expect(out.status).toBe(200);
    expect(out.storeZone).toBe('UTC');
    const t0 = BigInt(out.t0);
    // the finding from the first call's start to the last call's end; the loop span over the same time
    expect(BigInt(out.f.first)).toBe(t0);
    expect(BigInt(out.f.last)).toBe(t0 + 5_100_000_000n);
    expect(BigInt(out.span.start)).toBe(t0);
    expect(BigInt(out.span.duration)).toBe(5_100_000_000n);
  }, 120_000);
});
