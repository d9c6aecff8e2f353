// The kill -9 rounds of kill9.test.ts and kill9-mid-insert.test.ts: the collector process is
// SIGKILLed during sustained ingest, round after round, and restarted on the same data directory;
// afterwards every acknowledged span is in otel_traces exactly once and in agent_tool_calls
// (FINAL) exactly once, no span is stored twice, and nothing was set aside as refused data.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { ensureBuilt, postProto, queryDir, range, startProcess, stopProcess, toolSpansRequest, waitDrained } from './helpers.js';

export const ROUNDS = 12;
const WORKERS = 6;
const SPANS_PER_REQUEST = 100;

// Small, quickly sealed segments: the loader inserts (and deletes) often, so kills land in
// every phase: mid-append, between fdatasync and the answer, mid-INSERT, between INSERT and unlink.
const ENV = { LOOPWATCH_SPOOL_SEGMENT_MAX_BYTES: String(256 * 1024), LOOPWATCH_SPOOL_SEGMENT_MAX_AGE_MS: '100' };

/**
 * midInsert false: the kill follows a round's last counted acknowledgement at once. true: ingest
 * goes on for 0.3-1.8 s more, so most kills land while the loader inserts (docs/data-safety.md,
 * "Interrupted INSERTs").
 */
/** The rounds, in a data directory of their own that is removed afterwards. */
export async function killRounds(midInsert: boolean): Promise<void> {
  ensureBuilt();
  const dataDir = mkdtempSync(join(tmpdir(), midInsert ? 'lw-safety-kill9-mid-' : 'lw-safety-kill9-'));
  try {
    await rounds(dataDir, midInsert);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function rounds(dataDir: string, midInsert: boolean): Promise<void> {
  const acked = new Set<string>();
  const sent = new Set<string>();
  let next = 0;
  const log: string[] = [];
  // what each process logged at warn and above: a failure below shows it (refused inserts, retries)
  const logged: string[] = [];
  const keepLog = (round: number | 'recovery', output: string) => {
    for (const line of output.split('\n')) if (line.trim() && !line.includes('"otlp_traces_endpoint"')) logged.push(`[${round}] ${line.slice(0, 400)}`);
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
            if (midInsert) {
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
  const recoveryStart = Date.now();
  // every segment found at start is checked table by table after its replay (spool/repair.ts):
  // a few hundred of them take a while on a loaded machine
  try {
    await waitDrained(p.url, {}, 1800);
  } catch (err) {
    await stopProcess(p);
    throw new Error(`${(err as Error).message}\n${log.join('\n')}\n${p.output().split('\n').slice(-40).join('\n')}`);
  }
  log.push(`recovery: the spool drained in ${Date.now() - recoveryStart} ms`);
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
  console.log(`${log.join('\n')}\nacknowledged ${acked.size} spans, sent ${sent.size}, stored ${inTraces.size}; raw agent_tool_calls duplicates before FINAL: ${tracesRaw.length}; segments completed after an interrupted INSERT: ${logged.filter((l) => l.includes('inserted what was missing')).length}`);

  expect(acked.size).toBeGreaterThan(ROUNDS * 20 * SPANS_PER_REQUEST - 1);
  const missing = [...acked].filter((id) => inTraces.get(id) !== 1);
  expect(missing.slice(0, 5), `${missing.length} acknowledged spans not stored exactly once in otel_traces\n${log.join('\n')}\n${logged.join('\n')}`).toEqual([]);
  const missingTools = [...acked].filter((id) => inTools.get(id) !== 1);
  expect(missingTools.slice(0, 5), `${missingTools.length} acknowledged spans not exactly once in agent_tool_calls FINAL\n${log.join('\n')}\n${logged.join('\n')}`).toEqual([]);
  // No span at all (acknowledged or not) was stored twice, and nothing unknown appeared.
  expect([...inTraces.values()].filter((n) => n !== 1)).toEqual([]);
  expect([...inTraces.keys()].filter((id) => !sent.has(id))).toEqual([]);
  // Every stored trace's time range (otel_traces_trace_id_ts, read first by Grafana's trace lookup) spans its spans.
  const uncovered = queryDir<{ t: string }>(
    dataDir,
    `SELECT t.TraceId AS t FROM (SELECT TraceId, toDateTime(min(Timestamp)) AS s, toDateTime(max(Timestamp)) AS e FROM otel_traces WHERE ServiceName = 'safety-test' GROUP BY TraceId) AS t
     LEFT JOIN (SELECT TraceId, min(Start) AS s, max(End) AS e FROM otel_traces_trace_id_ts GROUP BY TraceId) AS r ON t.TraceId = r.TraceId
     WHERE r.TraceId = '' OR r.s > t.s OR r.e < t.e`,
  );
  expect(uncovered.slice(0, 5), `${uncovered.length} traces without their whole time range in otel_traces_trace_id_ts`).toEqual([]);
}
