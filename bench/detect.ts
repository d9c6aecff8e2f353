// bench/detect: a full pass of every detector (queries/detectors/*.sql via runDetectors) over
// 1M (or 10M) tool calls in 100k sessions, in calls/s and as a ratio to one plain scan of the
// same columns in the same run, on the features earlier passes kept; before it, the store's
// first pass (computes and keeps every call's features) and the incremental pass after a few
// new sessions arrive.
//
// Data: generated inside the engine with INSERT INTO otel_traces SELECT ... FROM numbers(), as
// OTLP spans in the exporter layout with GenAI semconv attributes (an invoke_agent root per
// session, and per tool call a `chat` span with model and tokens followed by an `execute_tool`
// span with argument/result hashes), so the real normalizing views fill agent_tool_calls and
// agent_llm_calls and the activity log, exactly as ingest would. 2% of the sessions get a stuck
// run, 1% a retry storm, 3% of calls fail at random; everything else has distinct arguments.
//
// Usage: npm run bench:detect [-- --calls 1000000 --sessions 100000 --also 10000000]
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import type { ClickHouseClient } from '@clickhouse/client';
import { loadDetectorFiles, runDetectors, withCallsTable, withFeaturesTable } from '../collector/src/detect/run-detectors.js';
import { loadModelPrices } from '../collector/src/detect/prices.js';
import { loadConfig } from '../collector/src/config.js';
import { packageRoot } from '../collector/src/paths.js';
import { openStore, queryRows } from '../collector/src/store/client.js';
import { migrate } from '../collector/src/store/migrate.js';
import { DETECTOR_DEFAULTS, sqlParamName } from '../queries/src/detector-defaults.js';

const { values } = parseArgs({
  options: {
    calls: { type: 'string', default: '1000000' },
    sessions: { type: 'string', default: '100000' },
    /** Further sizes to run after the first, comma separated (e.g. 10000000). */
    also: { type: 'string', default: '' },
    incremental: { type: 'string', default: '20' },
    /** Skip timing each detector alone (two more passes). */
    'skip-per-detector': { type: 'boolean', default: false },
  },
});

const CHUNK = 1_000_000;

/** Spans for tool calls [from, from + count) of a corpus of `sessions` sessions with `perSession` calls each. */
function spansSql(from: number, count: number, perSession: number, originMs: number, sessionPrefix: string): string {
  return `
INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName, ResourceAttributes,
                         ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode, StatusMessage)
SELECT
    if(is_llm, ts - toIntervalMillisecond(1500), ts) AS Timestamp,
    trace_id AS TraceId,
    lower(hex(cityHash64(n, is_llm, 'span'))) AS SpanId,
    root_id AS ParentSpanId,
    if(is_llm, concat('chat ', model), concat('execute_tool ', tool)) AS SpanName,
    'Internal' AS SpanKind,
    concat(agent, '-agent') AS ServiceName,
    map('service.name', concat(agent, '-agent')) AS ResourceAttributes,
    'loopwatch' AS ScopeName, '0.1.0' AS ScopeVersion,
    if(is_llm,
       map('gen_ai.operation.name', 'chat', 'gen_ai.request.model', model, 'gen_ai.provider.name', 'openai',
           'gen_ai.usage.input_tokens', toString(1500 + 300 * i), 'gen_ai.usage.output_tokens', toString(100 + n % 300),
           'gen_ai.conversation.id', session, 'gen_ai.agent.name', agent),
       mapConcat(
           map('gen_ai.operation.name', 'execute_tool', 'gen_ai.tool.name', tool, 'gen_ai.tool.call.id', concat('call_', toString(n)),
               'loopwatch.tool.args_hash', lower(hex(args_hash)), 'gen_ai.conversation.id', session, 'gen_ai.agent.name', agent),
           if(failed, map('error.type', err_type), map('loopwatch.tool.result_hash', lower(hex(result_hash)))))) AS SpanAttributes,
    if(is_llm, 1480000000, 20000000 + (n % 200) * 1000000) AS Duration,
    if(NOT is_llm AND failed, 'Error', 'Unset') AS StatusCode,
    if(NOT is_llm AND failed, err_msg, '') AS StatusMessage
FROM (
    SELECT
        number AS n,
        intDiv(number, ${perSession}) AS s,
        number % ${perSession} AS i,
        concat('${sessionPrefix}', toString(s)) AS session,
        concat(lower(hex(cityHash64(s, 'trace'))), lower(hex(cityHash64(s, 'trace2')))) AS trace_id,
        lower(hex(cityHash64(s, 'root'))) AS root_id,
        ['coder', 'support', 'research'][s % 3 + 1] AS agent,
        ['gpt-4o', 'gpt-4o-mini', 'claude-sonnet-4-5'][s % 3 + 1] AS model,
        s % 50 = 7 AND i >= 2 AND i < 8 AS in_stuck,
        s % 100 = 13 AND i >= 2 AND i < 9 AS in_storm,
        multiIf(in_stuck, 'read_file', in_storm, 'fetch_url',
                ['read_file', 'write_file', 'edit_file', 'run_tests', 'run_shell', 'search_code'][cityHash64(s, i, 'tool') % 6 + 1]) AS tool,
        if(in_stuck, cityHash64(s, 'stuck-args'), cityHash64(s, i, 'args')) AS args_hash,
        if(in_stuck, cityHash64(s, 'stuck-result'), cityHash64(s, i, 'result')) AS result_hash,
        in_storm OR cityHash64(n, 'fail') % 100 < 3 AS failed,
        if(in_storm, 'RateLimitError', 'HTTPError') AS err_type,
        if(in_storm, '429 Too Many Requests', concat('upstream returned ', toString(500 + cityHash64(n) % 4))) AS err_msg,
        fromUnixTimestamp64Milli(toInt64(${originMs} + s * 40 + i * 2500)) AS ts
    FROM numbers(${from}, ${count})
)
ARRAY JOIN [0, 1] AS is_llm`;
}

function rootsSql(fromSession: number, count: number, perSession: number, originMs: number, sessionPrefix: string): string {
  return `
INSERT INTO otel_traces (Timestamp, TraceId, SpanId, ParentSpanId, SpanName, SpanKind, ServiceName, ResourceAttributes,
                         ScopeName, ScopeVersion, SpanAttributes, Duration, StatusCode, StatusMessage)
SELECT
    fromUnixTimestamp64Milli(toInt64(${originMs} + s * 40 - 2000)) AS Timestamp,
    concat(lower(hex(cityHash64(s, 'trace'))), lower(hex(cityHash64(s, 'trace2')))) AS TraceId,
    lower(hex(cityHash64(s, 'root'))) AS SpanId, '' AS ParentSpanId,
    concat('invoke_agent ', agent) AS SpanName, 'Internal', concat(agent, '-agent'), map('service.name', concat(agent, '-agent')),
    'loopwatch', '0.1.0',
    map('gen_ai.operation.name', 'invoke_agent', 'gen_ai.conversation.id', concat('${sessionPrefix}', toString(s)), 'gen_ai.agent.name', agent),
    toUInt64(${perSession} * 2500 + 4000) * 1000000, 'Unset', ''
FROM (SELECT number AS s, ['coder', 'support', 'research'][s % 3 + 1] AS agent FROM numbers(${fromSession}, ${count}))`;
}

export async function generate(client: ClickHouseClient, calls: number, sessions: number, originMs: number, prefix: string, firstSession = 0): Promise<number> {
  const perSession = Math.max(1, Math.round(calls / sessions));
  const t0 = performance.now();
  // session s starts at origin + s * 40 ms: the first generated session starts at originMs
  const origin = originMs - firstSession * 40;
  await client.command({ query: rootsSql(firstSession, sessions, perSession, origin, prefix) });
  const first = firstSession * perSession;
  for (let at = 0; at < calls; at += CHUNK) {
    await client.command({ query: spansSql(first + at, Math.min(CHUNK, calls - at), perSession, origin, prefix) });
  }
  return (performance.now() - t0) / 1000;
}

async function timed<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const v = await fn();
  return [v, performance.now() - t0];
}

const PLAIN_SCAN = `SELECT count() AS n, sum(cityHash64(session_id, tool, args_hash, result_hash, status)) AS h FROM agent_tool_calls`;

async function plainScan(client: ClickHouseClient): Promise<number> {
  const [, ms] = await timed(() => queryRows(client, PLAIN_SCAN));
  return ms;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface SizeResult {
  calls: number;
  sessions: number;
  storedToolCalls: number;
  storedLlmCalls: number;
  generateSeconds: number;
  fullPassMs: number;
  callsPerSecond: number;
  plainScanMs: number;
  ratioToPlainScan: number;
  findings: number;
  perDetectorFindings: Record<string, number>;
  perDetectorMs?: Record<string, number>;
  perDetectorIncrementalMs?: Record<string, number>;
  /** The store's first pass: keeps the features of every call (what a full pass cost before features were kept). */
  firstPassMs: number;
  firstPassCallsPerSecond: number;
  incrementalMs: number[];
  incrementalMedianMs: number;
  incrementalNewSessions: number;
  incrementalSessionsExamined: number;
  errors: Record<string, string>;
}

async function runSize(calls: number, sessions: number): Promise<SizeResult> {
  const dir = mkdtempSync(join(tmpdir(), 'lw-bench-detect-'));
  const config = loadConfig({ dataDir: dir }, {});
  const store = openStore(config);
  try {
    await migrate(store.client, { retentionDays: 30 });
    await loadModelPrices(store.client);
    const client = store.client;
    const originMs = Date.now() - 6 * 3600_000;
    console.log(`\n== ${calls.toLocaleString('en')} tool calls, ${sessions.toLocaleString('en')} sessions`);
    const genSeconds = await generate(client, calls, sessions, originMs, 'bench-');
    await client.command({ query: 'OPTIMIZE TABLE agent_tool_calls FINAL' });
    await client.command({ query: 'OPTIMIZE TABLE agent_llm_calls FINAL' });
    const [counts] = await queryRows<{ t: string; l: string }>(
      client,
      'SELECT (SELECT toString(count()) FROM agent_tool_calls) AS t, (SELECT toString(count()) FROM agent_llm_calls) AS l',
    );
    console.log(`generated in ${genSeconds.toFixed(1)} s (through the views): ${counts!.t} tool calls, ${counts!.l} LLM calls`);
    // the incremental pass re-reads sessions active watermarkOverlapS before its watermark: let
    // the bulk load age past that, so the incremental pass sees only the new sessions
    await sleep((DETECTOR_DEFAULTS.watermarkOverlapS + 1) * 1000);

    // the store's first pass: keeps the features of every call, none of which a pass has seen
    const [first, buildMs] = await timed(() => runDetectors(client, { full: true }));
    console.log(`first pass (keeps the features of all ${calls.toLocaleString('en')} calls): ${buildMs.toFixed(0)} ms = ${Math.round(calls / (buildMs / 1000)).toLocaleString('en')} calls/s, findings ${first.findings}`);

    // incremental: a few new sessions arrive, the next pass examines only them
    const perSession = Math.max(1, Math.round(calls / sessions));
    const incN = Number(values.incremental);
    const incMs: number[] = [];
    let examined = 0;
    for (let round = 0; round < 3; round++) {
      await generate(client, incN * perSession, incN, Date.now() - 60_000, `bench-new${round}-`, sessions + round * incN);
      const [inc, ms] = await timed(() => runDetectors(client));
      incMs.push(ms);
      examined = inc.sessions;
      if (inc.withdrawnFindings > 0) console.log(`incremental pass withdrew ${inc.withdrawnFindings} findings`);
      if (Object.keys(inc.errors).length) console.log('incremental errors', inc.errors);
    }
    console.log(`incremental pass after ${incN} new sessions: ${incMs.map((x) => x.toFixed(0)).join(', ')} ms (median ${median(incMs).toFixed(0)}), sessions examined ${examined}`);

    // the full pass: every detector over every session, on the features the passes kept
    const scans: number[] = [await plainScan(client)];
    const [full, fullMs] = await timed(() => runDetectors(client, { full: true }));
    scans.push(await plainScan(client));
    scans.push(await plainScan(client));
    const scanMs = median(scans);
    const total = calls + 3 * incN * perSession;
    console.log(`full pass: ${fullMs.toFixed(0)} ms = ${Math.round(total / (fullMs / 1000)).toLocaleString('en')} calls/s; plain scan ${scanMs.toFixed(0)} ms (runs ${scans.map((x) => x.toFixed(0)).join(', ')}); ratio ${(fullMs / scanMs).toFixed(2)}x`);
    console.log(`findings ${full.findings} ${JSON.stringify(full.perDetector)}, withdrawn ${full.withdrawnFindings}${Object.keys(full.errors).length ? ` errors ${JSON.stringify(full.errors)}` : ''}`);

    let perDetectorMs: Record<string, number> | undefined;
    let perDetectorIncrementalMs: Record<string, number> | undefined;
    if (!values['skip-per-detector']) {
      // each detector alone (same parameters as runDetectors binds), for where the time goes:
      // over the sessions of one more incremental batch, then over every session
      const timeEach = async (sinceText: string) => {
        const out: Record<string, number> = {};
        const bound: Record<string, unknown> = { since: sinceText, until: (Date.now() / 1000 + 1).toFixed(3) };
        for (const [k, v] of Object.entries(DETECTOR_DEFAULTS)) bound[sqlParamName(k)] = v;
        const each = async (table: string) => {
          for (const f of loadDetectorFiles()) {
            const params = Object.fromEntries(f.params.map((p) => [p, p === 'calls' ? table : bound[p]]));
            const [, ms] = await timed(() => queryRows(client, f.sql, params));
            out[f.name] = Math.round(ms);
          }
        };
        // the copy of the calls a pass makes: for an incremental window, its sessions' calls;
        // for every session (a full pass), their kept features
        const [, allMs] = await timed(() =>
          sinceText === '0.000'
            ? withFeaturesTable(client, { from: null, to: null }, each)
            : withCallsTable(client, { since: sinceText, until: bound.until as string }, each));
        out['(calls table + all detectors)'] = Math.round(allMs);
        return out;
      };
      const [wm] = await queryRows<{ ms: string }>(client, 'SELECT toString(max(toUnixTimestamp64Milli(watermark))) AS ms FROM loopwatch_detector_state FINAL');
      await generate(client, incN * perSession, incN, Date.now() - 60_000, 'bench-new3-', sessions + 3 * incN);
      perDetectorIncrementalMs = await timeEach(((Number(wm!.ms) - DETECTOR_DEFAULTS.watermarkOverlapS * 1000) / 1000).toFixed(3));
      console.log(`per detector alone, incremental window (ms): ${JSON.stringify(perDetectorIncrementalMs)}`);
      perDetectorMs = await timeEach('0.000');
      console.log(`per detector alone, every session (ms): ${JSON.stringify(perDetectorMs)}`);
    }
    return {
      calls, sessions, storedToolCalls: Number(counts!.t), storedLlmCalls: Number(counts!.l), generateSeconds: Number(genSeconds.toFixed(1)),
      fullPassMs: Math.round(fullMs), callsPerSecond: Math.round(total / (fullMs / 1000)), plainScanMs: Math.round(scanMs),
      ratioToPlainScan: Number((fullMs / scanMs).toFixed(2)), findings: full.findings, perDetectorFindings: full.perDetector, perDetectorMs,
      perDetectorIncrementalMs, firstPassMs: Math.round(buildMs), firstPassCallsPerSecond: Math.round(calls / (buildMs / 1000)),
      incrementalMs: incMs.map(Math.round), incrementalMedianMs: Math.round(median(incMs)), incrementalNewSessions: incN,
      incrementalSessionsExamined: examined, errors: full.errors,
    };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const sizes = [Number(values.calls), ...values.also.split(',').filter(Boolean).map(Number)];
  const outDir = join(packageRoot, 'bench', 'results');
  mkdirSync(outDir, { recursive: true });
  // results of other sizes from earlier runs are kept (each with its date); a size run again is replaced
  let results: (SizeResult & { date?: string })[] = [];
  try {
    results = (JSON.parse(readFileSync(join(outDir, 'detect.json'), 'utf8')) as { results: (SizeResult & { date?: string })[] }).results.filter((r) => !sizes.includes(r.calls));
  } catch {
    results = [];
  }
  for (const calls of sizes) results.push({ ...(await runSize(calls, Number(values.sessions))), date: new Date().toISOString() });
  results.sort((a, b) => a.calls - b.calls);

  const meta = { date: new Date().toISOString(), node: process.version, cpus: (await import('node:os')).cpus().length, targets: { callsPerSecond: 1_000_000, ratioToPlainScan: 3, incrementalMs: 250 } };
  writeFileSync(join(outDir, 'detect.json'), `${JSON.stringify({ ...meta, results }, null, 2)}\n`);
  const md = [
    '# bench/detect',
    '',
    `Node ${meta.node}, ${meta.cpus} CPUs (shared with other work: compare ratios measured in the same run), embedded chDB. Targets: >= 1M calls/s, <= 3x one plain scan of the same columns, incremental <= 250 ms.`,
    '',
    '| run | tool calls | sessions | full pass | calls/s | plain scan | ratio | incremental (20 new sessions, median of 3) | findings |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...results.map((r) => `| ${r.date ?? ''} | ${r.calls.toLocaleString('en')} | ${r.sessions.toLocaleString('en')} | ${r.fullPassMs} ms | ${r.callsPerSecond.toLocaleString('en')} | ${r.plainScanMs} ms | ${r.ratioToPlainScan}x | ${r.incrementalMedianMs} ms | ${r.findings} |`),
    '',
    ...results.flatMap((r) => [
      `At ${r.calls.toLocaleString('en')} calls: first pass of the store (keeps the features of every call) ${r.firstPassMs} ms = ${r.firstPassCallsPerSecond?.toLocaleString('en')} calls/s.`,
      ...(r.perDetectorMs ? [`Each detector alone over every session (ms): ${Object.entries(r.perDetectorMs).map(([k, v]) => `${k} ${v}`).join(', ')}.`] : []),
      ...(r.perDetectorIncrementalMs ? [`Each detector alone over an incremental window (ms): ${Object.entries(r.perDetectorIncrementalMs).map(([k, v]) => `${k} ${v}`).join(', ')}.`] : []),
      '',
    ]),
    'Plain scan: `' + PLAIN_SCAN + '` (median of 3 runs around the full pass).',
    '',
  ].join('\n');
  writeFileSync(join(outDir, 'detect.md'), md);
  console.log(`\nwrote bench/results/detect.json and detect.md`);
}
