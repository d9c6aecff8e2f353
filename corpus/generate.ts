// Labeled corpus of agent sessions for calibrating and evaluating the loop detectors.
// Deterministic: a seed gives the same sessions, ids, arguments, results and hashes (only the
// wall-clock origin moves, so rows stay inside the store's retention window).
//
// Three agent types (coding, support, research) alternate LLM calls and tool calls. Into some
// sessions a loop of one kind is injected (repeat, stuck, oscillation, retry_storm, error_loop,
// runaway, redundant); others are hard negatives that look repetitive but are legitimate
// (polling whose result changes, pagination, reading many files, a retry that then succeeds,
// re-running tests after edits, an outage failing several tools); the rest are plain sessions.
// Each session carries its labels: the kinds that must fire (with the span range of the
// injected loop), the kinds that may fire (implied by the injected one), and by omission the
// kinds that must not. See docs/corpus.md.
import { valueHash } from '../instrumentation/src/canonical.js';

export const LOOP_KINDS = ['repeat', 'stuck', 'oscillation', 'retry_storm', 'error_loop', 'runaway', 'redundant'] as const;
export type LoopKind = (typeof LOOP_KINDS)[number];
export type AgentType = 'coder' | 'support' | 'research';

export interface ToolCall {
  type: 'tool';
  spanId: string;
  parentSpanId: string;
  tool: string;
  args: Record<string, unknown>;
  /** Absent for a failed call. */
  result?: unknown;
  status: 'ok' | 'error';
  errorType?: string;
  errorMessage?: string;
  argsHash: string;
  /** '' for a failed call (no result). */
  resultHash: string;
  startMs: number;
  endMs: number;
  /** Tokens and cost of the LLM call that asked for this tool call. */
  tokens: number;
  costUsd: number;
}

export interface LlmCall {
  type: 'llm';
  spanId: string;
  parentSpanId: string;
  model: string;
  provider: string;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
  startMs: number;
  endMs: number;
}

export type Call = ToolCall | LlmCall;

export interface FireLabel {
  kind: LoopKind;
  /** Variant of the injection (e.g. runaway: calls, tokens, cost, wall_time, depth). */
  variant: string;
  firstSpanId: string;
  lastSpanId: string;
  firstMs: number;
  lastMs: number;
}

export interface SessionLabels {
  /** Kinds that must fire, with the span range of the injected loop. */
  fire: FireLabel[];
  /** Kinds that may fire (implied by an injected loop); any other kind must not. */
  allow: LoopKind[];
  /** Hard-negative pattern this session contains, if any. */
  negative?: string;
}

export interface Session {
  sessionId: string;
  traceId: string;
  rootSpanId: string;
  agent: AgentType;
  model: string;
  provider: string;
  scenario: string;
  startMs: number;
  endMs: number;
  calls: Call[];
  labels: SessionLabels;
}

export interface CorpusOptions {
  seed?: number;
  /** Number of sessions (default 300). */
  sessions?: number;
  /** Wall-clock origin of the first session (ms since epoch). */
  startMs?: number;
  /** Share of sessions with an injected loop; the rest split between hard negatives and plain sessions. */
  loopShare?: number;
  negativeShare?: number;
}

/** USD per million tokens (input, output): list prices, used for cost in the corpus. */
export const MODEL_PRICES: Record<string, { provider: string; input: number; output: number }> = {
  'gpt-4o': { provider: 'openai', input: 2.5, output: 10 },
  'gpt-4o-mini': { provider: 'openai', input: 0.15, output: 0.6 },
  'claude-sonnet-4-5': { provider: 'anthropic', input: 3, output: 15 },
  'gemini-2.5-flash': { provider: 'gcp.gemini', input: 0.3, output: 2.5 },
};
const MODELS_BY_AGENT: Record<AgentType, string[]> = {
  coder: ['claude-sonnet-4-5', 'gpt-4o'],
  support: ['gpt-4o-mini', 'gpt-4o'],
  research: ['gemini-2.5-flash', 'claude-sonnet-4-5'],
};

// ---------------------------------------------------------------------------------------------
// Deterministic randomness

export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }
  /** mulberry32 */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  hex(chars: number): string {
    let out = '';
    while (out.length < chars) out += Math.floor(this.next() * 0x10000).toString(16).padStart(4, '0');
    return out.slice(0, chars);
  }
  shuffle<T>(xs: T[]): T[] {
    for (let i = xs.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [xs[i], xs[j]] = [xs[j]!, xs[i]!];
    }
    return xs;
  }
}

// ---------------------------------------------------------------------------------------------
// Vocabulary

const DIRS = ['src', 'src/api', 'src/core', 'src/util', 'lib', 'test', 'src/db', 'src/auth'];
const STEMS = ['index', 'server', 'router', 'config', 'cache', 'user', 'session', 'parser', 'queue', 'worker', 'logger', 'retry', 'schema', 'client', 'auth', 'token', 'billing', 'report'];
const SYMBOLS = ['parseConfig', 'handleRequest', 'UserService', 'retryWithBackoff', 'flushQueue', 'validateToken', 'renderReport', 'connectDb'];
const COMMANDS = ['git status', 'git diff --stat', 'npm run lint', 'npm run build', 'ls -la src', 'node --version', 'npx tsc --noEmit', 'git log --oneline -5'];
const TOPICS = ['vector databases', 'rust async runtimes', 'llm evaluation', 'carbon capture', 'solid state batteries', 'quantum error correction', 'crdt sync', 'wasm component model'];
const KB = ['refund policy', 'shipping times', 'change address', 'cancel order', 'warranty claim', 'damaged item', 'gift card balance'];
const DOMAINS = ['arxiv.org', 'en.wikipedia.org', 'github.com', 'news.ycombinator.com', 'acm.org', 'blog.example.com', 'nature.com'];

// ---------------------------------------------------------------------------------------------
// Session builder

/** Builds one session call by call (exported for tests that need hand-made sessions). */
export class SessionBuilder {
  readonly calls: Call[] = [];
  readonly labels: SessionLabels = { fire: [], allow: [] };
  private t: number;
  private turn = 0;
  private marks = new Map<string, number>();
  readonly traceId: string;
  readonly rootSpanId: string;
  readonly model: string;
  readonly provider: string;
  /** Input tokens of each LLM call during a context blow-up (0: normal growth). */
  hugeContext = 0;
  /** LLM latency multiplier (a slow model-day). */
  latencyScale = 1;

  constructor(
    readonly rng: Rng,
    readonly sessionId: string,
    readonly agent: AgentType,
    readonly scenario: string,
    readonly startMs: number,
    model?: string,
  ) {
    this.t = startMs;
    this.traceId = rng.hex(32);
    this.rootSpanId = rng.hex(16);
    this.model = model ?? rng.pick(MODELS_BY_AGENT[agent]);
    this.provider = MODEL_PRICES[this.model]!.provider;
  }

  private llm(parent: string): LlmCall {
    // context grows with the conversation up to a compaction limit; a blow-up re-sends a huge history
    const base = Math.min(1500 + 350 * this.turn, 60_000) + this.rng.int(0, 400);
    const inputTokens = this.hugeContext > 0 ? this.hugeContext + this.rng.int(0, 10_000) : base;
    const outputTokens = this.rng.int(40, 400) * (this.hugeContext > 0 ? 3 : 1);
    const p = MODEL_PRICES[this.model]!;
    const costUsd = (inputTokens * p.input + outputTokens * p.output) / 1e6;
    const dur = Math.round((400 + outputTokens * 12 + this.rng.int(0, 900)) * this.latencyScale);
    const call: LlmCall = {
      type: 'llm', spanId: this.rng.hex(16), parentSpanId: parent, model: this.model, provider: this.provider,
      inputTokens, outputTokens, costUsd, startMs: this.t, endMs: this.t + dur,
    };
    this.t += dur + this.rng.int(5, 40);
    this.turn++;
    this.calls.push(call);
    return call;
  }

  /** One agent step: an LLM call, then the tool call it asked for. */
  tool(tool: string, args: Record<string, unknown>, outcome: { result: unknown } | { error: [string, string] }, opts: { parent?: string; durMs?: number; noLlm?: boolean } = {}): ToolCall {
    const parent = opts.parent ?? this.rootSpanId;
    const llm = opts.noLlm ? undefined : this.llm(this.rootSpanId);
    const dur = opts.durMs ?? this.rng.int(30, 1500);
    const ok = 'result' in outcome;
    const call: ToolCall = {
      type: 'tool', spanId: this.rng.hex(16), parentSpanId: parent, tool, args,
      status: ok ? 'ok' : 'error',
      argsHash: valueHash(args),
      resultHash: ok ? valueHash(outcome.result) : '',
      startMs: this.t, endMs: this.t + dur,
      tokens: llm ? llm.inputTokens + llm.outputTokens : 0,
      costUsd: llm ? llm.costUsd : 0,
    };
    if (ok) call.result = outcome.result;
    else [call.errorType, call.errorMessage] = outcome.error;
    this.t += dur + this.rng.int(5, 60);
    this.calls.push(call);
    return call;
  }

  /** A tool call made inside another tool call (a nested span), without an LLM call of its own. */
  nested(parent: ToolCall, tool: string, args: Record<string, unknown>, result: unknown): ToolCall {
    return this.tool(tool, args, { result }, { parent: parent.spanId, noLlm: true, durMs: this.rng.int(20, 300) });
  }

  pause(ms: number): void {
    this.t += ms;
  }

  /** The last call ran `ms` longer (a slow job it waited on): it ends later, and so does the session. */
  waitInLast(ms: number): void {
    const last = this.calls.at(-1);
    if (last) last.endMs += ms;
    this.t += ms;
  }

  toolCount(): number {
    return this.calls.filter((c) => c.type === 'tool').length;
  }

  begin(kind: string): void {
    this.marks.set(kind, this.calls.length);
  }

  end(kind: LoopKind, variant: string, allow: LoopKind[] = []): void {
    const from = this.marks.get(kind) ?? 0;
    const tools = this.calls.slice(from).filter((c): c is ToolCall => c.type === 'tool');
    const first = tools[0]!;
    const last = tools[tools.length - 1]!;
    this.labels.fire.push({ kind, variant, firstSpanId: first.spanId, lastSpanId: last.spanId, firstMs: first.startMs, lastMs: last.endMs });
    for (const a of allow) if (!this.labels.allow.includes(a) && a !== kind) this.labels.allow.push(a);
  }

  build(): Session {
    const endMs = Math.max(...this.calls.map((c) => c.endMs)) + 50;
    return {
      sessionId: this.sessionId, traceId: this.traceId, rootSpanId: this.rootSpanId, agent: this.agent, model: this.model,
      provider: this.provider, scenario: this.scenario, startMs: this.startMs, endMs, calls: this.calls, labels: this.labels,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Normal behaviour per agent type (distinct arguments, results that move on)

function filePath(rng: Rng, used?: Set<string>): string {
  for (;;) {
    const p = `${rng.pick(DIRS)}/${rng.pick(STEMS)}${rng.chance(0.3) ? `-${rng.int(2, 9)}` : ''}.ts`;
    if (!used || !used.has(p)) {
      used?.add(p);
      return p;
    }
  }
}

function fileContent(rng: Rng, path: string): unknown {
  return { path, content: `// ${path}\nexport const v${rng.hex(6)} = ${rng.int(1, 1e6)};`, bytes: rng.int(200, 9000) };
}

function codingPrefix(b: SessionBuilder, files: Set<string>): void {
  const rng = b.rng;
  const sym = rng.pick(SYMBOLS);
  const hits = [filePath(rng), filePath(rng), filePath(rng)];
  b.tool('search_code', { query: sym }, { result: { matches: hits.map((f) => ({ file: f, line: rng.int(1, 400) })) } });
  const reads = rng.int(1, 3);
  for (let i = 0; i < reads; i++) {
    const p = filePath(rng, files);
    b.tool('read_file', { path: p }, { result: fileContent(rng, p) });
  }
}

function codingFix(b: SessionBuilder, files: Set<string>, cycles: number): void {
  const rng = b.rng;
  let failing = rng.int(cycles, cycles + 4);
  let output: unknown = null;
  let lastUnchanged = false;
  const target = [...files][0] ?? filePath(rng, files);
  for (let c = 0; c < cycles; c++) {
    b.tool('edit_file', { path: target, old: `line ${rng.int(1, 300)}`, new: `fix ${rng.hex(6)}` }, { result: { ok: true, diff: `+${rng.int(1, 20)} -${rng.int(0, 12)}` } });
    // an edit that did not help gives the same test output as before (never twice in a row)
    const unchanged: boolean = c > 0 && c < cycles - 1 && !lastUnchanged && rng.chance(0.3);
    lastUnchanged = unchanged;
    if (!unchanged) {
      failing = c === cycles - 1 ? 0 : Math.max(1, failing - rng.int(1, 2));
      output = failing === 0 ? { passed: 42 + c, failed: 0 } : { passed: 42 - failing, failed: failing, first: `expected ${rng.int(1, 99)} got ${rng.int(100, 199)}` };
    }
    b.tool('run_tests', { command: 'npm test' }, { result: output }, { durMs: rng.int(2000, 9000) });
  }
}

function codingSuffix(b: SessionBuilder): void {
  const rng = b.rng;
  const cmds = rng.shuffle([...COMMANDS]).slice(0, rng.int(1, 2));
  for (const command of cmds) b.tool('run_shell', { command }, { result: { exitCode: 0, stdout: `${command}: ${rng.hex(10)}` } });
}

function supportPrefix(b: SessionBuilder): { email: string; order: string } {
  const rng = b.rng;
  const email = `customer${rng.int(1000, 99999)}@example.com`;
  const order = `ORD-${rng.int(100000, 999999)}`;
  b.tool('lookup_customer', { email }, { result: { id: `cus_${rng.hex(8)}`, name: 'A. Customer', tier: rng.pick(['free', 'pro', 'business']) } });
  b.tool('get_order', { order_id: order }, { result: { order_id: order, status: rng.pick(['processing', 'shipped', 'delivered']), total: rng.int(10, 900) } });
  return { email, order };
}

function supportResolve(b: SessionBuilder, ctx: { email: string; order: string }): void {
  const rng = b.rng;
  const q = rng.pick(KB);
  b.tool('search_kb', { query: q }, { result: { articles: [`kb-${rng.int(1, 400)}`, `kb-${rng.int(401, 800)}`], top: `${q}: ${rng.hex(8)}` } });
  if (rng.chance(0.5)) b.tool('refund', { order_id: ctx.order, amount: rng.int(5, 200) }, { result: { refund_id: `re_${rng.hex(10)}`, status: 'succeeded' } });
  b.tool('send_email', { to: ctx.email, template: rng.pick(['resolution', 'refund_issued', 'follow_up']) }, { result: { message_id: `msg_${rng.hex(12)}` } });
}

function researchPrefix(b: SessionBuilder): string {
  const rng = b.rng;
  const topic = rng.pick(TOPICS);
  b.tool('web_search', { query: topic }, { result: { results: [1, 2, 3].map(() => `https://${rng.pick(DOMAINS)}/${rng.hex(8)}`) } });
  const n = rng.int(1, 3);
  for (let i = 0; i < n; i++) {
    const url = `https://${rng.pick(DOMAINS)}/${rng.hex(10)}`;
    b.tool('fetch_url', { url }, { result: { url, status: 200, text_id: `doc_${rng.hex(8)}`, chars: rng.int(2000, 40000) } });
  }
  return topic;
}

function researchFinish(b: SessionBuilder, topic: string): void {
  const rng = b.rng;
  const s = b.tool('summarize', { topic, docs: rng.int(2, 6), style: 'brief' }, { result: { summary: `${topic}: ${rng.hex(16)}` } });
  // legitimate nesting: the summarizer fetches one citation itself (depth 2)
  if (rng.chance(0.5)) b.nested(s, 'fetch_url', { url: `https://${rng.pick(DOMAINS)}/${rng.hex(10)}` }, { status: 200, chars: rng.int(1000, 9000) });
}

function normalSession(b: SessionBuilder): void {
  const files = new Set<string>();
  if (b.agent === 'coder') {
    codingPrefix(b, files);
    codingFix(b, files, b.rng.int(1, 2));
    codingSuffix(b);
  } else if (b.agent === 'support') {
    supportResolve(b, supportPrefix(b));
  } else {
    researchFinish(b, researchPrefix(b));
  }
}

function prefix(b: SessionBuilder): void {
  if (b.agent === 'coder') codingPrefix(b, new Set());
  else if (b.agent === 'support') supportPrefix(b);
  else researchPrefix(b);
}

/** After a loop the agent sometimes recovers and finishes, sometimes the session just ends. */
function maybeSuffix(b: SessionBuilder): void {
  if (!b.rng.chance(0.5)) return;
  if (b.agent === 'coder') codingSuffix(b);
  else if (b.agent === 'support') b.tool('send_email', { to: `customer${b.rng.int(1000, 99999)}@example.com`, template: 'follow_up' }, { result: { message_id: `msg_${b.rng.hex(12)}` } });
  else b.tool('summarize', { topic: b.rng.pick(TOPICS), docs: b.rng.int(2, 6), style: 'long' }, { result: { summary: b.rng.hex(20) } });
}

// ---------------------------------------------------------------------------------------------
// Injected loops

/** A call an agent of this type could make, with distinct arguments each time it is asked for. */
function someCall(b: SessionBuilder): [string, Record<string, unknown>, unknown] {
  const rng = b.rng;
  if (b.agent === 'coder') {
    const kind = rng.int(0, 2);
    if (kind === 0) {
      const p = filePath(rng);
      return ['read_file', { path: p, offset: rng.int(0, 5000) }, fileContent(rng, p)];
    }
    if (kind === 1) return ['search_code', { query: `${rng.pick(SYMBOLS)}_${rng.hex(4)}` }, { matches: [{ file: filePath(rng), line: rng.int(1, 400) }] }];
    return ['run_shell', { command: `grep -rn ${rng.hex(6)} src` }, { exitCode: 0, stdout: rng.hex(12) }];
  }
  if (b.agent === 'support') {
    const kind = rng.int(0, 1);
    if (kind === 0) return ['search_kb', { query: `${rng.pick(KB)} ${rng.hex(4)}` }, { articles: [`kb-${rng.int(1, 800)}`] }];
    return ['get_order', { order_id: `ORD-${rng.int(100000, 999999)}` }, { status: rng.pick(['processing', 'shipped']), total: rng.int(10, 900) }];
  }
  const kind = rng.int(0, 1);
  if (kind === 0) return ['web_search', { query: `${rng.pick(TOPICS)} ${rng.hex(4)}` }, { results: [`https://${rng.pick(DOMAINS)}/${rng.hex(8)}`] }];
  const url = `https://${rng.pick(DOMAINS)}/${rng.hex(10)}`;
  return ['fetch_url', { url }, { url, status: 200, chars: rng.int(1000, 30000) }];
}

/** The same call, same arguments, N times in a row; results change (no two consecutive equal) but cycle. */
function injectRepeat(b: SessionBuilder): void {
  const rng = b.rng;
  const n = rng.int(6, 12);
  const [tool, args] = someCall(b);
  const variants = [0, 1, 2].map(() => someCall(b)[2]);
  const period = rng.int(2, 3);
  b.begin('repeat');
  for (let i = 0; i < n; i++) b.tool(tool, args, { result: variants[i % period] });
  b.end('repeat', `${tool}x${n}`, ['stuck', 'redundant', 'runaway']);
}

/** The same call, arguments and result, N times in a row. */
function injectStuck(b: SessionBuilder): void {
  const n = b.rng.int(3, 8);
  const [tool, args, result] = someCall(b);
  b.begin('stuck');
  for (let i = 0; i < n; i++) b.tool(tool, args, { result });
  b.end('stuck', `${tool}x${n}`, ['repeat', 'redundant', 'runaway']);
}

/** A cycle of 2-4 distinct calls repeated (A B A B ..., A B C A B C ...). */
function injectOscillation(b: SessionBuilder): void {
  const rng = b.rng;
  const period = rng.int(2, 4);
  const rounds = rng.int(3, 6);
  let cycle: [string, Record<string, unknown>, unknown][];
  if (b.agent === 'coder' && period === 2) {
    // the classic: toggle an edit back and forth, run the tests each time
    const p = filePath(rng);
    cycle = [
      ['edit_file', { path: p, old: 'a < b', new: 'a <= b' }, { ok: true }],
      ['edit_file', { path: p, old: 'a <= b', new: 'a < b' }, { ok: true }],
    ];
  } else {
    cycle = Array.from({ length: period }, () => someCall(b));
  }
  b.begin('oscillation');
  for (let r = 0; r < rounds; r++) for (const [tool, args, result] of cycle) b.tool(tool, args, { result });
  b.end('oscillation', `period${period}x${rounds}`, ['redundant', 'runaway']);
}

const STORM_ERRORS: Record<AgentType, [string, string, string][]> = {
  coder: [['run_shell', 'ETIMEDOUT', 'command timed out after 30s'], ['run_tests', 'ProcessCrashed', 'jest worker exited with code 137']],
  support: [['get_order', 'ServiceUnavailable', '503 orders-api unavailable'], ['refund', 'RateLimitError', '429 Too Many Requests']],
  research: [['fetch_url', 'RateLimitError', '429 Too Many Requests'], ['web_search', 'RateLimitError', 'quota exceeded for search api']],
};

/** The same tool failing N times in a row, whatever the arguments. */
function injectRetryStorm(b: SessionBuilder): void {
  const rng = b.rng;
  const [tool, errType, errMsg] = rng.pick(STORM_ERRORS[b.agent]);
  const n = rng.int(5, 10);
  b.begin('retry_storm');
  for (let i = 0; i < n; i++) {
    const args = tool === 'run_shell' ? { command: `npm run build -- --retry ${i}` } : tool === 'fetch_url' ? { url: `https://${rng.pick(DOMAINS)}/${rng.hex(10)}` } : { order_id: `ORD-${rng.int(100000, 999999)}`, attempt: i };
    b.tool(tool, args, { error: [errType, errMsg] }, { durMs: rng.int(50, 400) });
  }
  b.end('retry_storm', `${tool}x${n}`, ['error_loop', 'repeat', 'runaway']);
}

const IMPOSSIBLE: Record<AgentType, [string, (rng: Rng, i: number) => Record<string, unknown>, string, string]> = {
  coder: ['write_file', (rng) => ({ path: `/etc/${rng.pick(STEMS)}.conf`, content: rng.hex(8) }), 'EACCES', 'permission denied'],
  support: ['refund', (rng, i) => ({ order_id: 'ORD-100001', amount: 20 + i * 5 + rng.int(0, 4) }), 'RefundWindowExpired', 'order is older than 30 days'],
  research: ['fetch_url', (rng) => ({ url: `https://paywalled.example.com/${rng.hex(10)}` }), 'HTTPError', '403 Forbidden: subscription required'],
};

/** The same error again and again across a session, with other (successful) work in between. */
function injectErrorLoop(b: SessionBuilder): void {
  const rng = b.rng;
  const [tool, argsOf, errType, errMsg] = IMPOSSIBLE[b.agent];
  const n = rng.int(4, 7);
  b.begin('error_loop');
  for (let i = 0; i < n; i++) {
    b.tool(tool, argsOf(rng, i), { error: [errType, errMsg] });
    if (i < n - 1) {
      const between = rng.int(1, 2);
      for (let j = 0; j < between; j++) {
        const [t, a, r] = someCall(b);
        b.tool(t, a, { result: r });
      }
    }
  }
  b.end('error_loop', `${tool}x${n}`, ['runaway', 'retry_storm']);
}

/** The same call (same arguments, same result) made again later in the session, non-consecutively. */
function injectRedundant(b: SessionBuilder): void {
  const rng = b.rng;
  const n = rng.int(3, 6);
  const [tool, args, result] = someCall(b);
  b.begin('redundant');
  for (let i = 0; i < n; i++) {
    b.tool(tool, args, { result });
    if (i < n - 1) {
      const between = rng.int(1, 3);
      for (let j = 0; j < between; j++) {
        const [t, a, r] = someCall(b);
        b.tool(t, a, { result: r });
      }
    }
  }
  b.end('redundant', `${tool}x${n}`, ['stuck', 'runaway']);
}

export type RunawayVariant = 'no_progress' | 'calls' | 'tokens' | 'cost' | 'wall_time' | 'depth';

/**
 * A runaway session: a long stretch of calls that return nothing new, or a blown budget (calls,
 * tokens, cost, wall time, nesting depth of a recursive tool chain). Sized against
 * DETECTOR_DEFAULTS (queries/src/detector-defaults.ts): no_progress 22-40 calls (run 20),
 * calls 520-600 (budget 500), tokens 6-8M (5M), cost $12-15 at claude-sonnet-4-5 prices with
 * fewer than 5M tokens ($10), wall time 2.5-6 h (2 h), depth 8-14 (5). No other session comes
 * within 2x of any budget.
 */
function injectRunaway(b: SessionBuilder, variant: RunawayVariant): void {
  const rng = b.rng;
  b.begin('runaway');
  if (variant === 'no_progress') {
    // different queries, the same empty answer every time: searching without learning anything
    const n = rng.int(22, 40);
    const tool = b.agent === 'coder' ? 'search_code' : b.agent === 'support' ? 'search_kb' : 'web_search';
    const empty = b.agent === 'coder' ? { matches: [] } : b.agent === 'support' ? { articles: [] } : { results: [] };
    const words = b.agent === 'coder' ? SYMBOLS : b.agent === 'support' ? KB : TOPICS;
    for (let i = 0; i < n; i++) b.tool(tool, { query: `${rng.pick(words)} ${rng.hex(6)}` }, { result: empty });
  } else if (variant === 'calls') {
    // hundreds of distinct calls that never converge
    const n = rng.int(520, 600);
    for (let i = 0; i < n; i++) {
      const [t, a, r] = someCall(b);
      b.tool(t, a, { result: r }, { durMs: rng.int(20, 200) });
    }
  } else if (variant === 'tokens' || variant === 'cost') {
    // the context explodes: each turn re-sends a huge history
    b.hugeContext = variant === 'tokens' ? 170_000 : 140_000;
    const n = variant === 'tokens' ? rng.int(36, 45) : 30;
    for (let i = 0; i < n; i++) {
      const [t, a, r] = someCall(b);
      b.tool(t, a, { result: r });
    }
    b.hugeContext = 0;
  } else if (variant === 'wall_time') {
    // a few calls that each wait 25-40 minutes on a slow job: hours of running (a pause between
    // calls as long is a person's turn or a resumed conversation, not running time)
    const n = rng.int(6, 9);
    for (let i = 0; i < n; i++) {
      const [t, a, r] = someCall(b);
      b.tool(t, a, { result: r });
      b.waitInLast(rng.int(25, 40) * 60_000);
    }
  } else {
    // a tool that calls itself through a sub-agent: a chain of nested tool spans
    const depth = rng.int(8, 14);
    const tool = b.agent === 'research' ? 'delegate_research' : b.agent === 'coder' ? 'run_subtask' : 'escalate';
    let parent = b.tool(tool, { goal: `level 0 ${rng.hex(6)}` }, { result: { delegated: true, level: 0 } });
    for (let d = 1; d < depth; d++) parent = b.nested(parent, tool, { goal: `level ${d} ${rng.hex(6)}` }, { delegated: true, level: d });
  }
  b.end('runaway', variant, ['redundant', 'repeat', 'stuck', 'oscillation']);
}

// ---------------------------------------------------------------------------------------------
// Hard negatives: repetition that is legitimate

/**
 * Polling a status until it changes (same tool, same arguments). The answer may stay the same for
 * two polls in a row, but most polls see something new (in any stretch, more than 60%): progress.
 */
function negPolling(b: SessionBuilder): void {
  const rng = b.rng;
  const n = rng.int(4, 10);
  // which polls see the same answer as the previous one: at least two new answers between two
  // such polls, so every stretch of polls sees more than 60% new answers
  const same: boolean[] = [];
  let sinceDup = 0;
  for (let i = 0; i < n; i++) {
    const dup = i > 0 && sinceDup >= 2 && rng.chance(0.5);
    same.push(dup);
    sinceDup = dup ? 0 : sinceDup + 1;
  }
  let step = 0;
  const poll = (tool: string, args: Record<string, unknown>, answer: (step: number) => unknown, pauseS: [number, number]) => {
    for (let i = 0; i < n; i++) {
      if (!same[i]) step++;
      b.tool(tool, args, { result: answer(step) });
      b.pause(rng.int(pauseS[0], pauseS[1]) * 1000);
    }
  };
  if (b.agent === 'support') {
    const order = `ORD-${rng.int(100000, 999999)}`;
    poll('get_order', { order_id: order }, (s) => ({ order_id: order, status: s < n ? 'in_transit' : 'delivered', last_scan: `hub-${s}` }), [5, 30]);
  } else if (b.agent === 'coder') {
    poll('run_shell', { command: 'gh run view --json status,steps' }, (s) => ({ exitCode: 0, stdout: `{"status":"in_progress","completed_steps":${s}}` }), [10, 30]);
  } else {
    const job = `job_${rng.hex(6)}`;
    poll('fetch_url', { url: `https://api.example.com/jobs/${job}` }, (s) => ({ status: 'running', progress: s * 9 }), [5, 20]);
  }
}

/** An outage: several different tools fail one after the other (no tool fails 4 times), then work resumes. */
function negOutage(b: SessionBuilder): void {
  const rng = b.rng;
  const tools: Record<AgentType, string[]> = {
    coder: ['run_shell', 'run_tests', 'search_code'],
    support: ['get_order', 'lookup_customer', 'search_kb', 'send_email'],
    research: ['fetch_url', 'web_search', 'summarize'],
  };
  const list = tools[b.agent];
  const n = rng.int(4, 7);
  for (let i = 0; i < n; i++) {
    const tool = list[i % list.length]!;
    b.tool(tool, { attempt: i, id: rng.hex(6) }, { error: ['ConnectionError', `connect ECONNREFUSED 10.0.0.${rng.int(2, 250)}:443`] });
    b.pause(rng.int(1, 5) * 1000);
  }
  const [t, a, r] = someCall(b);
  b.tool(t, a, { result: r });
}

/** Pagination: the same tool with a page argument that moves on. */
function negPagination(b: SessionBuilder): void {
  const rng = b.rng;
  const pages = rng.int(6, 12);
  const tool = b.agent === 'support' ? 'search_kb' : b.agent === 'coder' ? 'search_code' : 'web_search';
  const query = b.agent === 'support' ? rng.pick(KB) : b.agent === 'coder' ? rng.pick(SYMBOLS) : rng.pick(TOPICS);
  for (let p = 1; p <= pages; p++) b.tool(tool, { query, page: p }, { result: { page: p, items: [rng.hex(8), rng.hex(8), rng.hex(8)], next: p < pages ? p + 1 : null } });
}

/** Reading many different files one after the other. */
function negManyFiles(b: SessionBuilder): void {
  const rng = b.rng;
  const files = new Set<string>();
  const n = rng.int(15, 30);
  const contents = new Map<string, unknown>();
  for (let i = 0; i < n; i++) {
    const p = `${rng.pick(DIRS)}/${rng.pick(STEMS)}-${i}.ts`;
    files.add(p);
    contents.set(p, fileContent(rng, p));
    b.tool('read_file', { path: p }, { result: contents.get(p) });
    // now and then a file read earlier is read once more (twice in all: an occasional re-read)
    if (i > 3 && rng.chance(0.1)) {
      const again = [...contents.keys()][rng.int(0, contents.size - 2)]!;
      if (contents.has(again) && again !== p) {
        b.tool('read_file', { path: again }, { result: contents.get(again) });
        contents.delete(again);
      }
    }
  }
}

/** A retry that then succeeds: one or two failures, then the same call works. */
function negRetrySucceeds(b: SessionBuilder): void {
  const rng = b.rng;
  const [tool, errType, errMsg] = rng.pick(STORM_ERRORS[b.agent]);
  const args = tool === 'run_shell' ? { command: 'npm ci' } : tool === 'fetch_url' ? { url: `https://${rng.pick(DOMAINS)}/${rng.hex(10)}` } : tool === 'web_search' ? { query: rng.pick(TOPICS) } : { order_id: `ORD-${rng.int(100000, 999999)}` };
  const fails = rng.int(1, 3);
  for (let i = 0; i < fails; i++) b.tool(tool, args, { error: [errType, errMsg] });
  b.tool(tool, args, { result: { ok: true, data: rng.hex(10) } });
}

/** Re-running the tests after each edit (results change as failures are fixed). */
function negTestReruns(b: SessionBuilder): void {
  const files = new Set<string>();
  codingPrefix(b, files);
  codingFix(b, files, b.rng.int(3, 5));
}

/** Tests that fail less after each edit: the error names how many fail, so each run's error is another one. */
function negFailingLess(b: SessionBuilder): void {
  const rng = b.rng;
  const files = new Set<string>();
  const cycles = rng.int(4, 6);
  let failing = cycles + rng.int(0, 3);
  for (let c = 0; c < cycles; c++) {
    b.tool('edit_file', { path: filePath(rng, files), old: `line ${rng.int(1, 300)}`, new: `fix ${rng.hex(6)}` }, { result: { ok: true, diff: `+${rng.int(1, 20)} -${rng.int(0, 12)}` } });
    const status = rng.pick([401, 404, 422, 500]);
    if (c < cycles - 1) b.tool('run_tests', { command: 'npm test' }, { error: ['TestFailure', `${failing} tests failed (first: expected status 200, got ${status})`] }, { durMs: rng.int(2000, 9000) });
    else b.tool('run_tests', { command: 'npm test' }, { result: { passed: 40 + c, failed: 0 } }, { durMs: rng.int(2000, 9000) });
    failing = Math.max(1, failing - rng.int(1, 2));
  }
}

/** A flaky upstream: items fetched one by one, several fail once with a passing error and work when retried at once. */
function negFlaky(b: SessionBuilder): void {
  const rng = b.rng;
  const [tool, errType, errMsg] = rng.pick(STORM_ERRORS[b.agent]);
  const n = rng.int(5, 8);
  for (let i = 0; i < n; i++) {
    const args = tool === 'run_shell' ? { command: `npm run build:${rng.pick(STEMS)}-${i}` } : tool === 'fetch_url' ? { url: `https://${rng.pick(DOMAINS)}/${rng.hex(10)}` } : tool === 'web_search' ? { query: `${rng.pick(TOPICS)} ${i}` } : { order_id: `ORD-${rng.int(100000, 999999)}` };
    if (i % 2 === 0 || rng.chance(0.3)) b.tool(tool, args, { error: [errType, errMsg] });
    b.tool(tool, args, { result: { ok: true, data: rng.hex(10) } });
    const [t, a, r] = someCall(b);
    b.tool(t, a, { result: r });
  }
}

/** Scaffolding: many different files written, by a tool that returns nothing (an action). */
function negScaffold(b: SessionBuilder): void {
  const rng = b.rng;
  const files = new Set<string>();
  const n = rng.int(22, 30);
  for (let i = 0; i < n; i++) b.tool('write_file', { path: filePath(rng, files), content: `export const m${i} = ${rng.int(0, 999)};\n` }, { result: null });
}

const NEGATIVES: Record<string, { agents: AgentType[]; run: (b: SessionBuilder) => void }> = {
  polling: { agents: ['support', 'coder', 'research'], run: negPolling },
  pagination: { agents: ['support', 'coder', 'research'], run: negPagination },
  many_files: { agents: ['coder'], run: negManyFiles },
  retry_succeeds: { agents: ['support', 'coder', 'research'], run: negRetrySucceeds },
  test_reruns: { agents: ['coder'], run: negTestReruns },
  outage: { agents: ['support', 'coder', 'research'], run: negOutage },
  failing_less: { agents: ['coder'], run: negFailingLess },
  scaffold: { agents: ['coder'], run: negScaffold },
  flaky: { agents: ['support', 'coder', 'research'], run: negFlaky },
};

type Injector = (b: SessionBuilder) => void;
// Every kind gets the same share; runaway rotates through its variants.
const INJECTIONS: { kind: LoopKind; run: Injector }[] = [
  { kind: 'repeat', run: injectRepeat },
  { kind: 'stuck', run: injectStuck },
  { kind: 'oscillation', run: injectOscillation },
  { kind: 'retry_storm', run: injectRetryStorm },
  { kind: 'error_loop', run: injectErrorLoop },
  { kind: 'redundant', run: injectRedundant },
  { kind: 'runaway', run: () => undefined },
];
const RUNAWAY_VARIANTS: RunawayVariant[] = ['no_progress', 'calls', 'tokens', 'cost', 'wall_time', 'depth'];

// ---------------------------------------------------------------------------------------------

const AGENTS: AgentType[] = ['coder', 'support', 'research'];

export function generateCorpus(opts: CorpusOptions = {}): Session[] {
  const seed = opts.seed ?? 1;
  const count = opts.sessions ?? 300;
  const loopShare = opts.loopShare ?? 0.45;
  const negShare = opts.negativeShare ?? 0.35;
  const origin = opts.startMs ?? Date.UTC(2026, 0, 1);
  const rng = new Rng(seed);
  const sessions: Session[] = [];
  // Stratified: every injection and every negative appears in round-robin order, so even a
  // small corpus has each kind several times.
  let inj = 0;
  let neg = 0;
  const negNames = Object.keys(NEGATIVES);
  for (let i = 0; i < count; i++) {
    const start = origin + i * 90_000 + rng.int(0, 60_000);
    const u = (i * 0.618034) % 1; // low-discrepancy split between loops, negatives, plain
    const id = String(i).padStart(5, '0');
    let b: SessionBuilder;
    if (u < loopShare) {
      const round = Math.floor(inj / INJECTIONS.length);
      const injection = INJECTIONS[inj++ % INJECTIONS.length]!;
      const agent = AGENTS[(round + Math.floor(round / RUNAWAY_VARIANTS.length)) % 3]!; // every variant meets every agent type
      const variant = injection.kind === 'runaway' ? RUNAWAY_VARIANTS[round % RUNAWAY_VARIANTS.length]! : undefined;
      const scenario = variant ? `${injection.kind}:${variant}` : injection.kind;
      // the cost blow-up is priced on the most expensive model, so it blows cost without tokens
      const model = variant === 'cost' ? 'claude-sonnet-4-5' : undefined;
      b = new SessionBuilder(new Rng(seed * 1_000_003 + i), `corpus-${seed}-${id}-${agent}-${scenario.replace(':', '-')}`, agent, scenario, start, model);
      prefix(b);
      if (variant) injectRunaway(b, variant);
      else injection.run(b);
      maybeSuffix(b);
    } else if (u < loopShare + negShare) {
      const name = negNames[neg++ % negNames.length]!;
      const spec = NEGATIVES[name]!;
      const agent = spec.agents[Math.floor(neg / negNames.length) % spec.agents.length]!;
      b = new SessionBuilder(new Rng(seed * 1_000_003 + i), `corpus-${seed}-${id}-${agent}-neg-${name}`, agent, `negative:${name}`, start);
      b.labels.negative = name;
      if (name !== 'test_reruns') prefix(b);
      spec.run(b);
      maybeSuffix(b);
    } else {
      const agent = AGENTS[i % 3]!;
      b = new SessionBuilder(new Rng(seed * 1_000_003 + i), `corpus-${seed}-${id}-${agent}-normal`, agent, 'normal', start);
      normalSession(b);
    }
    sessions.push(b.build());
  }
  return sessions;
}

// ---------------------------------------------------------------------------------------------
// Many days of plain sessions, for per-model-day reports and the degradation detector

export interface DailyOptions {
  seed?: number;
  /** Midnight UTC of the first day, ms since epoch. */
  firstDayMs: number;
  days: number;
  sessionsPerDay: number;
  models: string[];
  toolCallsPerSession?: number;
  /** Chance that a tool call fails, per model and day index. */
  errorRate?: (model: string, day: number) => number;
  /** LLM latency multiplier per model and day index. */
  latencyScale?: (model: string, day: number) => number;
}

/** Plain sessions spread over days and models; failures are scattered (different tools and messages). */
export function generateDailySessions(opts: DailyOptions): Session[] {
  const seed = opts.seed ?? 7;
  const out: Session[] = [];
  const calls = opts.toolCallsPerSession ?? 12;
  const errors: [string, string][] = [['HTTPError', 'upstream returned 502'], ['Timeout', 'deadline exceeded'], ['ValidationError', 'bad argument'], ['ToolError', 'tool crashed']];
  for (let day = 0; day < opts.days; day++) {
    for (const model of opts.models) {
      for (let i = 0; i < opts.sessionsPerDay; i++) {
        const rng = new Rng(seed * 7919 + day * 100_003 + opts.models.indexOf(model) * 10_007 + i);
        const agent = AGENTS[i % 3]!;
        const start = opts.firstDayMs + day * 86_400_000 + 3600_000 + Math.floor((i / opts.sessionsPerDay) * 18 * 3600_000) + rng.int(0, 60_000);
        const b = new SessionBuilder(rng, `daily-${seed}-d${day}-${model}-${i}`, agent, 'daily', start, model);
        b.latencyScale = opts.latencyScale?.(model, day) ?? 1;
        const p = opts.errorRate?.(model, day) ?? 0.03;
        for (let c = 0; c < calls; c++) {
          const [t, a, r] = someCall(b);
          if (rng.chance(p)) b.tool(t, a, { error: errors[c % errors.length]! });
          else b.tool(t, a, { result: r });
        }
        out.push(b.build());
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Output shapes

/** agent_tool_calls-shaped rows for the in-process LoopGuard, in call order per session. */
export interface GuardRow {
  sessionId: string;
  tool: string;
  argsHash: string;
  resultHash: string;
  status: 'ok' | 'error';
  errorType: string;
  errorMessage: string;
  /** Start of the call, ms since epoch. */
  ts: number;
  endTs: number;
  spanId: string;
  parentSpanId: string;
  tokens?: number;
  costUsd?: number;
}

export function guardRows(session: Session): GuardRow[] {
  return session.calls
    .filter((c): c is ToolCall => c.type === 'tool')
    .map((c) => ({
      sessionId: session.sessionId, tool: c.tool, argsHash: c.argsHash, resultHash: c.resultHash, status: c.status,
      errorType: c.errorType ?? '', errorMessage: c.errorMessage ?? '', ts: c.startMs, endTs: c.endMs,
      spanId: c.spanId, parentSpanId: c.parentSpanId, tokens: c.tokens, costUsd: c.costUsd,
    }));
}

export function corpusStats(sessions: Session[]): Record<string, number> {
  const stats: Record<string, number> = { sessions: sessions.length, toolCalls: 0, llmCalls: 0 };
  for (const s of sessions) {
    for (const c of s.calls) stats[c.type === 'tool' ? 'toolCalls' : 'llmCalls']!++;
    const key = s.scenario;
    stats[key] = (stats[key] ?? 0) + 1;
  }
  return stats;
}
