// (1) Durable acknowledgement: a 200 is sent only after the spool's fdatasync. The collector
// process is SIGKILLed during sustained ingest, round after round, and restarted on the same
// data directory; afterwards every acknowledged span is in otel_traces exactly once and in
// agent_tool_calls (FINAL) exactly once, and no span is stored twice.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, postProto, queryDir, range, startProcess, stopProcess, toolSpansRequest, waitDrained } from './helpers.js';

const ROUNDS = 12;
const WORKERS = 6;
const SPANS_PER_REQUEST = 100;
// LOOPWATCH_KILL9_MID_INSERT=1: kill 0.3-1.8 s after the round's acknowledgements while ingest
// goes on, so most kills land while the loader inserts. It finds the engine-level gap described
// in docs/data-safety.md ("Known gap") in about one run of three; off by default until it is fixed.
const MID_INSERT = process.env.LOOPWATCH_KILL9_MID_INSERT === '1';

let dataDir: string;
beforeAll(() => {
  ensureBuilt();
  dataDir = mkdtempSync(join(tmpdir(), 'lw-safety-kill9-'));
});
afterAll(() => {
  rmSync(dataDir, { recursive: true, force: true });
});

// Small, quickly sealed segments: the loader inserts (and deletes) often, so kills land in
// every phase: mid-append, between fdatasync and the answer, mid-INSERT, between INSERT and unlink.
const ENV = { LOOPWATCH_SPOOL_SEGMENT_MAX_BYTES: String(256 * 1024), LOOPWATCH_SPOOL_SEGMENT_MAX_AGE_MS: '100' };

describe('kill -9 during sustained ingest', () => {
  it(`loses no acknowledged span and stores none twice over ${ROUNDS} SIGKILL rounds`, async () => {
    const acked = new Set<string>();
    const sent = new Set<string>();
    let next = 0;
    const log: string[] = [];
    // what each process logged at warn and above: a failure below shows it (refused inserts, retries)
    const logged: string[] = [];
    const keepLog = (round: number | 'recovery', output: string) => {
      for (const line of output.split('\n')) if (line.trim() && !line.includes('"otlpTracesEndpoint"')) logged.push(`[${round}] ${line.slice(0, 400)}`);
    };
    for (let round = 0; round < ROUNDS; round++) {
      const p = await startProcess(dataDir, ENV);
      // Kill after a round-dependent number of acknowledgements (counts, not clocks).
      const killAfter = 20 + ((round * 37) % 60);
      let acksThisRound = 0;
      let killed = false;
      let scheduled = false;
      const worker = async () => {
        while (!killed) {
          const specs = range(round, next, SPANS_PER_REQUEST);
          next += SPANS_PER_REQUEST;
          const { body, spanIds } = toolSpansRequest(specs);
          for (const id of spanIds) sent.add(id);
          let ok = false;
          try {
            const res = await postProto(p.url, body);
            await res.arrayBuffer();
            ok = res.status === 200;
            if (!ok && res.status !== 503 && res.status !== 429) throw new Error(`unexpected status ${res.status}`);
          } catch (err) {
            if (!killed) throw err;
          }
          if (ok && !killed) {
            // Acknowledged before the kill was issued: must survive it.
            for (const id of spanIds) acked.add(id);
            if (++acksThisRound >= killAfter && !scheduled) {
              scheduled = true;
              if (MID_INSERT) {
                // keep ingesting while the loader works, so the kill lands mid-INSERT
                setTimeout(() => {
                  killed = true;
                  p.child.kill('SIGKILL');
                }, 300 + ((round * 211) % 1500));
              } else {
                killed = true;
                p.child.kill('SIGKILL');
              }
            }
          } else if (ok) {
            // Answered 200 while the SIGKILL was on its way: acknowledged all the same.
            for (const id of spanIds) acked.add(id);
          }
        }
      };
      await Promise.all(Array.from({ length: WORKERS }, worker));
      const { signal } = await p.exited;
      keepLog(round, p.output());
      expect(signal).toBe('SIGKILL');
      const spoolFiles = readdirSync(join(dataDir, 'spool')).filter((n) => n.startsWith('seg-'));
      log.push(`round ${round}: ${acksThisRound} acks, ${spoolFiles.length} segments left in the spool`);
    }

    // Recovery: a last start replays what the spool holds, then a clean stop.
    const p = await startProcess(dataDir, ENV);
    await waitDrained(p.url);
    expect((await stopProcess(p)).code).toBe(0);
    keepLog('recovery', p.output());
    expect(readdirSync(join(dataDir, 'spool')).filter((n) => n.startsWith('seg-'))).toEqual([]);
    // nothing was set aside as data the store refuses: every span here is valid
    const quarantine = join(dataDir, 'spool', 'quarantine');
    expect(existsSync(quarantine) ? readdirSync(quarantine) : [], logged.join('\n')).toEqual([]);

    const traces = queryDir<{ id: string; n: string }>(dataDir, "SELECT SpanId AS id, count() AS n FROM otel_traces WHERE ServiceName = 'safety-test' GROUP BY SpanId");
    const tools = queryDir<{ id: string; n: string }>(dataDir, "SELECT span_id AS id, count() AS n FROM agent_tool_calls FINAL WHERE service = 'safety-test' GROUP BY span_id");
    const tracesRaw = queryDir<{ id: string; n: string }>(dataDir, "SELECT span_id AS id, count() AS n FROM agent_tool_calls WHERE service = 'safety-test' GROUP BY span_id HAVING n > 1");
    const inTraces = new Map(traces.map((r) => [r.id, Number(r.n)]));
    const inTools = new Map(tools.map((r) => [r.id, Number(r.n)]));
    console.log(`${log.join('\n')}\nacknowledged ${acked.size} spans, sent ${sent.size}, stored ${inTraces.size}; raw agent_tool_calls duplicates before FINAL: ${tracesRaw.length}`);

    expect(acked.size).toBeGreaterThan(ROUNDS * 20 * SPANS_PER_REQUEST - 1);
    const missing = [...acked].filter((id) => inTraces.get(id) !== 1);
    expect(missing.slice(0, 5), `${missing.length} acknowledged spans not stored exactly once in otel_traces\n${log.join('\n')}\n${logged.join('\n')}`).toEqual([]);
    const missingTools = [...acked].filter((id) => inTools.get(id) !== 1);
    expect(missingTools.slice(0, 5), `${missingTools.length} acknowledged spans not exactly once in agent_tool_calls FINAL`).toEqual([]);
    // No span at all (acknowledged or not) was stored twice, and nothing unknown appeared.
    expect([...inTraces.values()].filter((n) => n !== 1)).toEqual([]);
    expect([...inTraces.keys()].filter((id) => !sent.has(id))).toEqual([]);
  }, 240_000);
});
