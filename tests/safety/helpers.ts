// Shared helpers for the data-safety tests: real collector processes (the built CLI), OTLP
// bodies with known span ids, and queries on a data directory from a fresh process.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { encodeTraceRequest } from '../../collector/src/ingest/otlp-proto.js';
import { packageRoot } from '../../collector/src/paths.js';

export const CLI = join(packageRoot, 'dist', 'collector', 'src', 'cli', 'main.js');

function newestMtime(dir: string): number {
  let max = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    max = Math.max(max, e.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return max;
}

/** Builds dist/ with `tsc -p .` when it is older than the collector sources (one builder at a time). */
export function ensureBuilt(): void {
  const stale = () => !existsSync(CLI) || statSync(CLI).mtimeMs < newestMtime(join(packageRoot, 'collector', 'src'));
  if (!stale()) return;
  const lock = join(packageRoot, 'dist', '.safety-build-lock');
  mkdirSync(join(packageRoot, 'dist'), { recursive: true });
  for (let i = 0; i < 600; i++) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      execFileSync('sleep', ['0.5']);
      if (!stale()) return;
    }
  }
  try {
    if (stale()) execFileSync('npx', ['tsc', '-p', '.'], { cwd: packageRoot, stdio: 'inherit' });
  } finally {
    rmdirSync(lock);
  }
}

export interface CollectorProcess {
  child: ChildProcess;
  url: string;
  pid: number;
  /** Everything the process wrote (stdout and stderr), so far. */
  output(): string;
  /** What it wrote on stdout (`up --json`'s document; logs go to stderr). */
  stdout(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `loopwatch up` on loopback, port 0, and resolves once it listens. */
export function startProcess(dataDir: string, env: Record<string, string> = {}, args: string[] = []): Promise<CollectorProcess> {
  const child = spawn(process.execPath, [CLI, 'up', '--host', '127.0.0.1', '--port', '0', '--json', '-d', dataDir, ...args], {
    cwd: packageRoot,
    env: { ...process.env, LOOPWATCH_LOG_LEVEL: 'warn', LOOPWATCH_DETECT_ENABLED: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let stdout = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  return new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`collector did not start within 60 s:\n${out}`));
    }, 60_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      stdout += d.toString();
      buffered += d.toString();
      for (let i = buffered.indexOf('\n'); i !== -1; i = buffered.indexOf('\n')) {
        const line = buffered.slice(0, i);
        buffered = buffered.slice(i + 1);
        if (line.includes('"otlp_traces_endpoint"')) {
          clearTimeout(timer);
          const { url } = JSON.parse(line) as { url: string };
          resolve({ child, url, pid: child.pid!, output: () => out, stdout: () => stdout, exited });
        }
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`collector exited (${code ?? signal}) before listening:\n${out}`));
    });
  });
}

/** Runs SQL on a data directory's embedded store from a fresh node process; rows as JSON objects. */
export function queryDir<T = Record<string, unknown>>(dataDir: string, sql: string): T[] {
  const script = `
    import { openStore, queryRows } from ${JSON.stringify(join(packageRoot, 'dist', 'collector', 'src', 'store', 'client.js'))};
    const store = openStore({ dataDir: process.argv[1], clickhouse: { user: 'default', password: '', database: 'default' } });
    const rows = await queryRows(store.client, process.argv[2]);
    await store.close();
    process.stdout.write(JSON.stringify(rows));`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script, dataDir, sql], { cwd: packageRoot, maxBuffer: 512 * 1024 * 1024 });
  return JSON.parse(out.toString()) as T[];
}

/** 8-byte span id for (batch tag, index): unique per test, readable in hex. */
export function spanIdOf(tag: number, i: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(tag + 1, 0);
  b.writeUInt32BE(i + 1, 4);
  return b;
}

const BASE_NS = BigInt(Date.now()) * 1_000_000n;

export interface SpanSpec {
  tag: number;
  index: number;
}

/**
 * An OTLP protobuf request with GenAI tool-call spans (they land in otel_traces and, through
 * the view, in agent_tool_calls). Returns the body and the span ids (hex) it carries.
 */
export function toolSpansRequest(specs: SpanSpec[], opts: { session?: string; baseNs?: bigint } = {}): { body: Uint8Array; spanIds: string[] } {
  const base = opts.baseNs ?? BASE_NS; // fixed per process: a re-sent span is the same span
  const spanIds: string[] = [];
  const spans = specs.map(({ tag, index }) => {
    const spanId = spanIdOf(tag, index);
    spanIds.push(spanId.toString('hex'));
    const traceId = Buffer.alloc(16);
    traceId.writeUInt32BE(tag + 1, 0);
    traceId.writeUInt32BE((index % 50) + 1, 12);
    const t = base + BigInt(index) * 1_000_000n;
    return {
      traceId,
      spanId,
      name: 'execute_tool read_file',
      kind: 1,
      startTimeUnixNano: t.toString(),
      endTimeUnixNano: (t + 500_000n).toString(),
      attributes: [
        { key: 'gen_ai.operation.name', value: { stringValue: 'execute_tool' } },
        { key: 'gen_ai.tool.name', value: { stringValue: 'read_file' } },
        { key: 'gen_ai.tool.call.arguments', value: { stringValue: JSON.stringify({ path: `/src/${tag}/${index}.ts` }) } },
        { key: 'gen_ai.conversation.id', value: { stringValue: opts.session ?? `safety-${tag}-${index % 50}` } },
      ],
    };
  });
  const body = encodeTraceRequest({
    resourceSpans: [{ resource: { attributes: [{ key: 'service.name', value: { stringValue: 'safety-test' } }] }, scopeSpans: [{ scope: { name: 'safety' }, spans }] }],
  });
  return { body, spanIds };
}

export function range(tag: number, from: number, count: number): SpanSpec[] {
  return Array.from({ length: count }, (_, k) => ({ tag, index: from + k }));
}

export async function postProto(url: string, body: Uint8Array, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${url}/v1/traces`, { method: 'POST', body, headers: { 'content-type': 'application/x-protobuf', ...headers } });
}

/** Polls /healthz until the spool is empty (everything acknowledged is in the store). */
export async function waitDrained(url: string, headers: Record<string, string> = {}, maxPolls = 600): Promise<void> {
  for (let i = 0; i < maxPolls; i++) {
    const h = (await (await fetch(`${url}/healthz`, { headers })).json()) as { schema?: string; spool: { bytes: number; segments: number } };
    if (h.spool.bytes === 0 && h.spool.segments === 0 && h.schema !== 'pending') return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('spool did not drain');
}

export async function stopProcess(p: CollectorProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  p.child.kill(signal);
  return p.exited;
}
