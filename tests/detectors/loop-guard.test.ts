// The in-process LoopGuard through the real OpenTelemetry SDK: warn adds a
// loopwatch.loop_detected event to the tool span that completed a loop; halt throws a typed
// LoopDetectedError before the next looping call runs. The InMemorySpanExporter only reads
// what the SDK produced.
import { context, ROOT_CONTEXT } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { traceTool, withSession } from '../../instrumentation/src/api.js';
import { enableLoopGuard, guardPolicyFromEnv, LogLimit, type LoopGuardHandle } from '../../instrumentation/src/guard/enable.js';
import { LoopDetectedError, LoopGuard, loopDetectedIn, type GuardFinding } from '../../instrumentation/src/guard/loop-guard.js';
import { SessionSpanProcessor } from '../../instrumentation/src/sdk.js';
import { DETECTOR_DEFAULTS } from '../../queries/src/detector-defaults.js';

const exporter = new InMemorySpanExporter();
const provider = new NodeTracerProvider({ spanProcessors: [new SessionSpanProcessor(), new SimpleSpanProcessor(exporter)] });
let handle: LoopGuardHandle | null = null;

beforeAll(() => {
  provider.register();
});
afterAll(async () => {
  await provider.shutdown();
});
afterEach(() => {
  handle?.disable();
  handle = null;
  exporter.reset();
});

const loopEvents = (s: ReadableSpan) => s.events.filter((e) => e.name === 'loopwatch.loop_detected');
const toolSpans = () => exporter.getFinishedSpans().filter((s) => s.name.startsWith('execute_tool'));

describe('LoopGuard policy warn', () => {
  it('logs and marks the span that completed the loop; every call still runs', async () => {
    const warnings: GuardFinding[] = [];
    handle = enableLoopGuard({ policy: 'warn', log: (_m, f) => warnings.push(f) });
    let runs = 0;
    const read = traceTool('read_file', async (path: string) => {
      runs++;
      return `contents of ${path}`;
    });
    await withSession('guard-warn', async () => {
      for (let i = 0; i < 4; i++) await read('a.ts');
    });
    expect(runs).toBe(4);
    const spans = toolSpans();
    expect(spans).toHaveLength(4);
    // stuck fires on the 3rd identical call (stuckMinRun = 3), redundant at the same time
    expect(loopEvents(spans[0]!)).toHaveLength(0);
    expect(loopEvents(spans[1]!)).toHaveLength(0);
    const ev = loopEvents(spans[2]!);
    expect(ev.map((e) => e.attributes?.['loop.detector']).sort()).toEqual(['redundant', 'stuck']);
    const stuck = ev.find((e) => e.attributes?.['loop.detector'] === 'stuck')!;
    expect(stuck.attributes?.['loop.first_span_id']).toBe(spans[0]!.spanContext().spanId);
    expect(stuck.attributes?.['loop.last_span_id']).toBe(spans[2]!.spanContext().spanId);
    expect(stuck.attributes?.['loop.repeats']).toBe(3);
    expect(stuck.attributes?.['loop.session_id']).toBe('guard-warn');
    expect(loopEvents(spans[3]!)).toHaveLength(0); // raised once; growth is not re-announced
    expect(warnings.map((w) => w.kind).sort()).toEqual(['redundant', 'stuck']);
  });

  it('a loop found again and again in a session is logged once a minute; events and onLoop get every one', async () => {
    const lines: string[] = [];
    const found: GuardFinding[] = [];
    handle = enableLoopGuard({ policy: 'warn', log: (m) => lines.push(m), onLoop: (f) => found.push(f) });
    // a poller that sees the same answer three times between other work: a new stuck run each time
    const poll = traceTool('job_status', async () => 'pending');
    const work = traceTool('work', async (i: number) => i);
    await withSession('guard-warn-volume', async () => {
      for (let i = 0; i < 20; i++) {
        for (let k = 0; k < 3; k++) await poll();
        await work(i);
      }
    });
    const stuck = found.filter((f) => f.kind === 'stuck');
    expect(stuck).toHaveLength(20);
    expect(toolSpans().flatMap(loopEvents).filter((e) => e.attributes?.['loop.detector'] === 'stuck')).toHaveLength(20);
    expect(lines.filter((l) => l.startsWith('stuck loop'))).toHaveLength(1);
  });

  it('stays quiet on polling whose result changes, pagination and reading different files', async () => {
    handle = enableLoopGuard({ policy: 'halt', log: () => undefined });
    let tick = 0;
    const status = traceTool('job_status', async (_id: number) => `progress ${tick++}`);
    const sleep = traceTool('sleep', async (_s: number) => undefined);
    const list = traceTool('list_items', async (page: number) => [`item ${page}`]);
    const read = traceTool('read_file', async (path: string) => `contents of ${path}`);
    await withSession('guard-negatives', async () => {
      for (let i = 0; i < 8; i++) {
        await sleep(1);
        await status(7);
      }
      for (let i = 0; i < 8; i++) await list(i);
      for (let i = 0; i < 10; i++) await read(`f${i}.ts`);
    });
    expect(toolSpans().flatMap(loopEvents)).toHaveLength(0);
    expect(handle.guard.findings('guard-negatives')).toEqual([]);
  });
});

describe('LoopGuard policy halt', () => {
  it('throws LoopDetectedError before the next looping call runs; other calls go on', async () => {
    handle = enableLoopGuard({ policy: 'halt', log: () => undefined });
    let runs = 0;
    const search = traceTool('search', async (q: string) => {
      runs++;
      return q === 'x' ? 'no results' : `results for ${q}`;
    });
    let caught: unknown;
    await withSession('guard-halt', async () => {
      for (let i = 0; i < 3; i++) await search('x');
      try {
        await search('x');
      } catch (err) {
        caught = err;
      }
      await search('y'); // a different call is not part of the loop
    });
    expect(runs).toBe(4); // 3 looping calls ran, the 4th was stopped, then 'y'
    expect(caught).toBeInstanceOf(LoopDetectedError);
    const f = (caught as LoopDetectedError).finding;
    expect(f.kind).toBe('stuck');
    expect(f.repeats).toBe(3);
    const spans = toolSpans();
    expect(spans).toHaveLength(5);
    const halted = spans[3]!;
    expect(halted.status.code).toBe(2); // ERROR
    expect(halted.attributes['error.type']).toBe('LoopDetectedError');
    expect(loopEvents(halted).map((e) => e.attributes?.['loop.action'])).toEqual(['halt']);
    expect(spans[4]!.status.code).not.toBe(2);
  });

  it('stops a retry storm: the same tool failing retryStormMinRun times in a row', async () => {
    handle = enableLoopGuard({ policy: 'halt', log: () => undefined });
    let runs = 0;
    const get = traceTool('http_get', async (url: string) => {
      runs++;
      throw new Error(`503 from ${url}`);
    });
    const errors: unknown[] = [];
    await withSession('guard-storm', async () => {
      for (let i = 0; i < DETECTOR_DEFAULTS.retryStormMinRun + 2; i++) {
        try {
          await get(`https://example.test/${i}`);
        } catch (err) {
          errors.push(err);
        }
      }
    });
    expect(runs).toBe(DETECTOR_DEFAULTS.retryStormMinRun);
    expect(errors.slice(DETECTOR_DEFAULTS.retryStormMinRun).every((e) => e instanceof LoopDetectedError && e.finding.kind === 'retry_storm')).toBe(true);
  });

  it('a retry that then succeeds is not stopped', async () => {
    handle = enableLoopGuard({ policy: 'halt', log: () => undefined });
    let n = 0;
    const flaky = traceTool('flaky', async () => {
      if (n++ < 2) throw new Error('ECONNRESET');
      return 'ok';
    });
    await withSession('guard-retry', async () => {
      for (let i = 0; i < 3; i++) await flaky().catch(() => undefined);
    });
    expect(n).toBe(3);
    expect(toolSpans().flatMap(loopEvents)).toHaveLength(0);
  });

  it('stops a call that would run deeper than the depth budget before it runs (a recursion without end)', async () => {
    const logged: string[] = [];
    handle = enableLoopGuard({ policy: 'halt', params: { budgetMaxToolDepth: 5 }, log: (m) => logged.push(m) });
    let deepest = 0;
    // a planner that delegates to itself and would stop only at level 40
    const plan: (level: number) => Promise<string> = traceTool('plan_step', async (level: number) => {
      deepest = Math.max(deepest, level);
      return level < 40 ? `${level}>${await plan(level + 1)}` : 'leaf';
    });
    const err = await withSession('guard-depth', () => plan(1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LoopDetectedError);
    expect((err as LoopDetectedError).finding).toMatchObject({ kind: 'runaway', repeats: 6, severity: 'critical' });
    expect(deepest).toBe(5); // levels 1-5 ran; the 6th was stopped
    expect(logged).toEqual([expect.stringMatching(/plan_step would run at tool depth 6, over the budget of 5/)]);
    const stopped = toolSpans().find((x) => x.events.some((e) => e.name === 'loopwatch.loop_detected'))!;
    expect(stopped.events.find((e) => e.name === 'loopwatch.loop_detected')!.attributes).toMatchObject({ 'loop.detector': 'runaway', 'loop.action': 'halt' });
  });

  it('the levels a depth stop unwinds through are not stopped calls: 25 of them raise no no-progress run after it (as SQL leaves them out)', async () => {
    const logged: string[] = [];
    const raised: string[] = [];
    handle = enableLoopGuard({ policy: 'halt', params: { budgetMaxToolDepth: 25 }, log: (m) => logged.push(m), onLoop: (f) => raised.push(f.message) });
    const solve: (n: number) => Promise<number> = traceTool('solve', async (n: number) => (n >= 1000 ? n : await solve(n + 1)));
    const err = await withSession('guard-depth-unwind', () => solve(1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(LoopDetectedError);
    expect(raised).toEqual([expect.stringMatching(/solve would run at tool depth 26, over the budget of 25/)]);
    expect(logged).toHaveLength(1);
  });

  it('a call a tool starts in the root context on purpose (work handed to a trace of its own) starts at depth 1, as SQL sees it', async () => {
    handle = enableLoopGuard({ policy: 'halt', params: { budgetMaxToolDepth: 3 }, log: () => undefined });
    const job: (n: number) => Promise<number> = traceTool('job', async (n: number) => (n >= 6 ? n : await context.with(ROOT_CONTEXT, () => job(n + 1))));
    await expect(withSession('guard-detached', () => job(1))).resolves.toBe(6);
  });
});

describe('LoopGuard without OpenTelemetry', () => {
  const row = (i: number, over: Partial<Parameters<LoopGuard['observe']>[0]> = {}) => ({
    sessionId: 's', tool: 'a', argsHash: '1', resultHash: '2', status: 'ok', errorType: '', errorMessage: '',
    ts: 1_700_000_000_000 + i * 1000, spanId: `span${i}`, parentSpanId: 'root', ...over,
  });

  it('observe() returns what a call raised, then grows it', () => {
    const g = new LoopGuard();
    expect(g.observe(row(1))).toEqual([]);
    expect(g.observe(row(2))).toEqual([]);
    const third = g.observe(row(3));
    expect(third.map((f) => [f.kind, f.isNew, f.firstSpanId, f.lastSpanId, f.repeats])).toEqual([
      ['stuck', true, 'span1', 'span3', 3],
      ['redundant', true, 'span1', 'span3', 3],
    ]);
    const fourth = g.observe(row(4));
    expect(fourth.find((f) => f.kind === 'stuck')).toMatchObject({ isNew: false, repeats: 4, lastSpanId: 'span4' });
  });

  it('a retry storm\'s message says, as retry_storm.sql does, whether the retries had the same arguments', () => {
    const storm = (args: (i: number) => string) => {
      const g = new LoopGuard();
      for (let i = 0; i < DETECTOR_DEFAULTS.retryStormMinRun; i++) {
        g.observe(row(i, { tool: 'fetch', argsHash: args(i), resultHash: undefined, status: 'error', errorType: 'TimeoutError', errorMessage: `timeout ${i}` }));
      }
      return g.findings('s').find((f) => f.kind === 'retry_storm')?.message;
    };
    const n = DETECTOR_DEFAULTS.retryStormMinRun;
    expect(storm(() => 'a')).toBe(`Tool fetch failed ${n} times in a row (the same arguments; last error: TimeoutError).`);
    expect(storm((i) => (i % 2 ? 'a' : 'b'))).toBe(`Tool fetch failed ${n} times in a row (2 distinct argument sets; last error: TimeoutError).`);
  });

  it('oscillation A B C A B C A B C with identical args and results', () => {
    const g = new LoopGuard();
    const keys = ['e', 'b', 'r'];
    for (let i = 0; i < 9; i++) g.observe(row(i, { tool: keys[i % 3]!, argsHash: keys[i % 3]!, resultHash: `res-${keys[i % 3]}` }));
    const osc = g.findings('s').filter((f) => f.kind === 'oscillation');
    expect(osc.map((f) => [f.firstSpanId, f.lastSpanId, f.repeats, f.wastedCalls])).toEqual([['span0', 'span8', 9, 6]]);
  });

  it('calls it stopped still spend: a model that keeps asking for a halted call runs away on its budget', () => {
    // the AI SDK hands a halt back to the model as a tool error; a model that asks again and again pays each time
    const g = new LoopGuard({ params: { stuckMinRun: 3, budgetMaxTokens: 5000 } });
    const ask = (i: number, halted: boolean) =>
      g.observe(row(i, { tokens: 1000, ...(halted ? { status: 'error' as const, errorType: 'LoopDetectedError', errorMessage: 'Loopwatch halted…', resultHash: '' } : {}) }));
    for (let i = 1; i <= 3; i++) ask(i, false); // stuck after 3: the next one is halted
    expect(g.check({ sessionId: 's', tool: 'a', argsHash: '1' })?.kind).toBe('stuck');
    const raised = [4, 5].flatMap((i) => ask(i, true)); // 5000 tokens: at the budget, not over
    expect(raised.filter((f) => f.kind === 'runaway')).toEqual([]);
    const over = ask(6, true);
    expect(over.find((f) => f.kind === 'runaway')).toMatchObject({ isNew: true, severity: 'critical', message: expect.stringMatching(/tokens \(0 calls wasted, 3 stopped by the guard; used 6000 tokens of 5000\)/) });
    // a runaway session: any call is stopped now, not only the looping one
    expect(g.check({ sessionId: 's', tool: 'read_file', argsHash: 'new' })?.kind).toBe('runaway');
    // and the halted calls were in no loop rule: the stuck run is still 3
    expect(g.findings('s').find((f) => f.kind === 'stuck')!.repeats).toBe(3);
  });

  it('a repeat run taken back and found again (its new answers hover at the limit) is announced once', () => {
    const g = new LoopGuard();
    // a status poll: 'pending' five times, then progress, then every other answer new
    const outcomes = ['p', 'p', 'p', 'p', 'p', 'q1', 'q2', 'q3', 'q4'];
    for (let i = 5; i <= 44; i++) outcomes.push(i % 2 ? 'p' : `q${i}`);
    let announced = 0;
    outcomes.forEach((o, i) => {
      for (const f of g.observe(row(i, { tool: 'job_status', argsHash: 'j', resultHash: o }))) if (f.kind === 'repeat' && f.isNew) announced++;
    });
    expect(announced).toBe(1); // was 21: each time the run was found again
  });

  it('an error loop\'s message quotes the error, as SQL\'s does', () => {
    const g = new LoopGuard({ params: { errorLoopMinCount: 3 } });
    const found: GuardFinding[] = [];
    for (let i = 1; i <= 5; i++) {
      const failing = i % 2 === 1;
      found.push(...g.observe(row(i, failing
        ? { tool: 'deploy', argsHash: `env${i}`, status: 'error', errorType: 'Error', errorMessage: 'permission denied for role deployer', resultHash: '' }
        : { tool: 'read_file', argsHash: `f${i}`, resultHash: `r${i}` })));
    }
    expect(found.find((f) => f.kind === 'error_loop')!.message).toBe(
      'Tool deploy hit the same error 3 times in this session (Error: permission denied for role deployer): the task may be impossible as attempted.');
    // halt stops the call that failed again, not the tool: with other arguments it may run (the guard cannot see a cause fixed)
    expect(g.check({ sessionId: 's', tool: 'deploy', argsHash: 'env5' })?.kind).toBe('error_loop');
    expect(g.check({ sessionId: 's', tool: 'deploy', argsHash: 'staging' })).toBeUndefined();
  });

  it('failures the same call got past later, after other calls (tests passing after fixes), are all taken out of the error loop, and its message says what is left', () => {
    const g = new LoopGuard({ params: { errorLoopMinCount: 3 } });
    const failing = (i: number, command: string) => row(i, { tool: 'run_shell', argsHash: command, status: 'error', errorType: 'Error', errorMessage: 'Command failed with exit code 1', resultHash: '' });
    let i = 0;
    // another command fails alike three times, never got past: a loop of its own calls
    for (const command of ['deploy', 'npm test', 'deploy', 'npm test', 'deploy', 'npm test', 'npm test']) {
      g.observe(failing(++i, command));
      g.observe(row(++i, { tool: 'edit_file', argsHash: `e${i}`, resultHash: `r${i}` }));
    }
    expect(g.findings().filter((f) => f.kind === 'error_loop').map((f) => f.repeats)).toEqual([7]);
    g.observe(row(++i, { tool: 'run_shell', argsHash: 'npm test', resultHash: 'passed' })); // npm test passes at last
    const left = g.findings().filter((f) => f.kind === 'error_loop');
    expect(left.map((f) => [f.repeats, f.wastedCalls, f.message])).toEqual([
      [3, 2, 'Tool run_shell hit the same error 3 times in this session (Error: Command failed with exit code 1): the task may be impossible as attempted.'],
    ]);
    expect(g.check({ sessionId: 's', tool: 'run_shell', argsHash: 'npm test' })).toBeUndefined();
  });

  it('an error whose failures were all got past starts again: a burst of it afterwards is no error loop (as SQL), nor does it stop the next call', () => {
    const g = new LoopGuard();
    const shell = (i: number, command: string, fails: boolean) =>
      row(i, fails ? { tool: 'run_shell', argsHash: command, status: 'error', errorType: 'Error', errorMessage: 'Command failed with exit code 1', resultHash: '' } : { tool: 'run_shell', argsHash: command, resultHash: `ok${i}` });
    let i = 0;
    const raised: GuardFinding[] = [];
    for (let k = 0; k < 4; k++) {
      raised.push(...g.observe(shell(++i, 'npm test', true)));
      raised.push(...g.observe(row(++i, { tool: 'edit_file', argsHash: `e${k}`, resultHash: `r${k}` })));
    }
    expect(raised.filter((f) => f.kind === 'error_loop' && f.isNew)).toHaveLength(1); // live, at the 4th failure
    g.observe(shell(++i, 'npm test', false)); // passes: every failure got past, the finding taken back
    for (let k = 0; k < 4; k++) raised.push(...g.observe(shell(++i, 'npm run build', true))); // a burst: a retry storm's, not an error loop
    expect(g.findings().filter((f) => f.kind === 'error_loop')).toEqual([]);
    expect(raised.filter((f) => f.kind === 'error_loop' && f.isNew)).toHaveLength(1);
    expect(g.check({ sessionId: 's', tool: 'run_shell', argsHash: 'npm run build' })?.kind).not.toBe('error_loop');
  });

  it('a call failing with more distinct errors than are kept per call, then passing: the error that made the loop is still taken back; waste never below nothing', () => {
    const g = new LoopGuard({ params: { errorLoopMinCount: 3 } });
    let i = 0;
    const test = (message: string | null, tokens = 10) =>
      g.observe(row(++i, message === null ? { tool: 'run_tests', argsHash: 'all', resultHash: 'passed', tokens } : { tool: 'run_tests', argsHash: 'all', status: 'error', errorType: 'TestFailure', errorMessage: message, resultHash: '', tokens }));
    const edit = () => g.observe(row(++i, { tool: 'edit_file', argsHash: `e${i}`, resultHash: `r${i}` }));
    for (let k = 0; k < 3; k++) (test('FAIL src/a.test.ts'), edit());
    expect(g.findings().filter((f) => f.kind === 'error_loop')).toHaveLength(1);
    for (const t of 'bcdefghi') (test(`FAIL src/${t}.test.ts`), edit()); // 8 other errors of the same call
    test(null);
    expect(g.findings().filter((f) => f.kind === 'error_loop')).toEqual([]);

    // a first failure with a large turn, got past; the error goes on with another call
    const h = new LoopGuard({ params: { errorLoopMinCount: 2 } });
    let j = 0;
    const shell = (command: string, fails: boolean, tokens: number) =>
      h.observe(row(++j, fails ? { tool: 'run_shell', argsHash: command, status: 'error', errorType: 'Error', errorMessage: 'Command failed with exit code 1', resultHash: '', tokens } : { tool: 'run_shell', argsHash: command, resultHash: `ok${j}`, tokens }));
    shell('npm test', true, 50_000);
    shell('npm run build', true, 10);
    shell('npm test', false, 10);
    h.observe(row(++j, { tool: 'edit_file', argsHash: 'x', resultHash: 'y' }));
    shell('npm run build', true, 100);
    h.observe(row(++j, { tool: 'edit_file', argsHash: 'x2', resultHash: 'y2' }));
    shell('npm run build', true, 100);
    for (const f of h.findings()) expect(f.wastedTokens, f.kind).toBeGreaterThanOrEqual(0);
  });

  it('an error loop taken back and found again is announced once; failures are taken back only from the record that counted them', () => {
    // A/B: run_shell calls failing with one error; lower case: the same call succeeding; x: other work
    const play = (g: LoopGuard, script: string, messageOf: (k: number) => string = () => 'Command failed with exit code 1') => {
      const out: GuardFinding[] = [];
      [...script].forEach((ch, i) => {
        const call = ch === 'x' ? { tool: 'edit_file', argsHash: `x${i}`, resultHash: `x${i}` }
          : ch === ch.toUpperCase() ? { tool: 'run_shell', argsHash: ch, status: 'error' as const, errorType: 'Error', errorMessage: messageOf(i), resultHash: '' }
            : { tool: 'run_shell', argsHash: ch.toUpperCase(), resultHash: `ok${i}` };
        out.push(...g.observe(row(i, call)).filter((f) => f.kind === 'error_loop'));
      });
      return out;
    };
    const announced = play(new LoopGuard({ params: { errorLoopMinCount: 3 } }), 'BxBAxAaxB').filter((f) => f.isNew);
    expect(announced.map((f) => f.firstSpanId)).toEqual([row(0).spanId]); // once, not again at the last B

    // past the 256 errors kept per session, A's failure is dropped with its record; A's success
    // later must not take B's failures of the same error back from the new record
    const g = new LoopGuard({ params: { errorLoopMinCount: 3 } });
    const probes = Array.from({ length: 256 }, () => 'P').join('');
    const letters = 'abcdefghijklmnopqrstuvwxyz';
    play(g, `AxA${probes}BxBxaxBxB`, (i) => (i >= 3 && i < 3 + 256 ? `probe ${letters[i % 26]}${letters[Math.floor(i / 26) % 26]} failed` : 'Command failed with exit code 1'));
    expect(g.findings().filter((f) => f.kind === 'error_loop').map((f) => f.repeats)).toEqual([4]);
  });

  it('an error loop\'s message quotes a long error\'s first 120 characters, whole ones (a character outside the BMP is not cut in two)', () => {
    const g = new LoopGuard({ params: { errorLoopMinCount: 3 } });
    const message = '🚫'.repeat(130); // 260 UTF-16 code units
    const found: GuardFinding[] = [];
    for (let i = 1; i <= 5; i++) {
      found.push(...g.observe(row(i, i % 2 === 1
        ? { tool: 'deploy', argsHash: `env${i}`, status: 'error', errorType: 'Error', errorMessage: message, resultHash: '' }
        : { tool: 'read_file', argsHash: `f${i}`, resultHash: `r${i}` })));
    }
    expect(found.filter((f) => f.kind === 'error_loop').map((f) => f.message)).toEqual([
      `Tool deploy hit the same error 3 times in this session (Error: ${'🚫'.repeat(120)}): the task may be impossible as attempted.`,
    ]);
  });

  it('LogLimit: a line per session, kind and tools a minute, the next saying how many were left out', () => {
    let t = 0;
    const limit = new LogLimit(100, 60_000, () => t);
    const f = (sessionId: string, kind: GuardFinding['kind'] = 'stuck') => ({ kind, sessionId, tools: ['poll'] }) as GuardFinding;
    expect(limit.admit(f('a'))).toBe('');
    t = 1_000;
    expect(limit.admit(f('a'))).toBeNull();
    expect(limit.admit(f('a'))).toBeNull();
    expect(limit.admit(f('b'))).toBe(''); // another session
    expect(limit.admit(f('a', 'repeat'))).toBe(''); // another kind
    expect(limit.admit({ ...f('a'), agent: 'beta' })).toBe(''); // another agent of the session
    expect(limit.admit(f('a'), 'halt')).toBe(''); // a halt is said apart from the finding
    t = 61_000;
    expect(limit.admit(f('a'))).toBe(' (and 2 more like it in the minute before, not logged)');
    expect(limit.admit(f('a'))).toBeNull();
  });

  it('more sessions active than kept: counted (the hook warns); a runaway session crowded out stays stopped', () => {
    const g = new LoopGuard({ maxSessions: 10, params: { budgetMaxCalls: 3 } });
    // s0 blows its call budget
    for (let i = 1; i <= 4; i++) g.observe(row(i, { sessionId: 's0', argsHash: `a${i}`, resultHash: `r${i}` }));
    expect(g.check({ sessionId: 's0', tool: 'x', argsHash: 'y' })?.kind).toBe('runaway');
    // 11 other sessions taking turns, round after round: each forgotten before its next call
    for (let round = 0; round < 3; round++) for (let k = 1; k <= 11; k++) g.observe(row(100 * round + k, { sessionId: `s${k}`, argsHash: `b${round}`, resultHash: 'r' }));
    expect(g.activeSessionsForgotten).toBeGreaterThan(0);
    expect(g.findings('s0')).toEqual([]); // forgotten...
    expect(g.check({ sessionId: 's0', tool: 'x', argsHash: 'y' })?.kind).toBe('runaway'); // ...and still stopped
    g.end('s0');
    expect(g.check({ sessionId: 's0', tool: 'x', argsHash: 'y' })).toBeUndefined();
    // a quiet process: sessions end one after another, none forgotten while active
    const calm = new LoopGuard({ maxSessions: 10 });
    for (let k = 0; k < 100; k++) for (let i = 0; i < 3; i++) calm.observe(row(10 * k + i, { sessionId: `c${k}`, argsHash: `a${i}`, resultHash: 'r' }));
    expect(calm.activeSessionsForgotten).toBe(0);
    const oneCallEach = new LoopGuard({ maxSessions: 10 }); // chat turns: one call per session, never back
    for (let k = 0; k < 100; k++) oneCallEach.observe(row(k, { sessionId: `t${k}` }));
    expect(oneCallEach.activeSessionsForgotten).toBe(0);
  });

  it('maxSessions must be a whole number from 1 (NaN kept every session, 0 detected nothing)', () => {
    for (const bad of [Number.NaN, 0, -5, 2.5]) expect(() => new LoopGuard({ maxSessions: bad })).toThrow(/maxSessions must be a whole number from 1/);
    expect(() => enableLoopGuard({ policy: 'warn', maxSessions: Number(undefined) })).toThrow(/maxSessions/);
    expect(new LoopGuard({ maxSessions: 1 }).findings()).toEqual([]);
  });

  it('loopDetectedIn finds the halt a framework rethrew in its own error (OpenAI runTools: as the cause)', () => {
    const g = new LoopGuard({ params: { stuckMinRun: 2 } });
    const call = (i: number) => ({ sessionId: 's', tool: 't', argsHash: 'a', resultHash: 'r', status: 'ok' as const, ts: i, spanId: `0000000000000${i}`.slice(-16) });
    g.observe(call(1));
    const f = g.observe(call(2))[0]!;
    const halt = new LoopDetectedError(f);
    expect(loopDetectedIn(halt)).toBe(halt);
    expect(loopDetectedIn(new Error('tool t failed', { cause: halt }))).toBe(halt);
    expect(loopDetectedIn(new Error('other', { cause: new Error('deeper') }))).toBeUndefined();
    expect(loopDetectedIn('a string')).toBeUndefined();
  });

  it('state is bounded: sessions beyond maxSessions are forgotten, long sessions keep bounded maps', () => {
    const g = new LoopGuard({ maxSessions: 100 });
    const t = performance.now();
    for (let i = 0; i < 50_000; i++) {
      g.observe(row(i, { sessionId: `s${i % 500}`, argsHash: String(i), resultHash: String(i) }));
    }
    const perCall = (performance.now() - t) / 50_000;
    expect((g as unknown as { sessions: Map<string, unknown> }).sessions.size).toBe(100);
    expect(perCall).toBeLessThan(0.5); // ms: generous, it is microseconds
  });

  it('long sessions: call keys are kept least recently used first out, 1024 per session', () => {
    const g = new LoopGuard({ params: { budgetMaxCalls: 0 } });
    const redundant = (fs: GuardFinding[]) => fs.filter((f) => f.kind === 'redundant').map((f) => f.repeats);
    const call = (i: number, key: string) => g.observe(row(i, { argsHash: key, resultHash: `r-${key}` }));
    call(0, 'k0');
    call(1, 'k0');
    for (let i = 1; i < 1024; i++) call(1 + i, `k${i}`); // 1024 keys: all kept
    expect(redundant(call(2000, 'k0'))).toEqual([3]); // k0 was touched last of the old ones: kept
    call(2001, 'new'); // one key too many: k1, the least recently used, goes
    expect(redundant(call(2002, 'k1'))).toEqual([]); // counted from 1 again (and k2 goes)
    expect(redundant(call(2003, 'k1'))).toEqual([]);
    expect(redundant(call(2004, 'k1023'))).toEqual([]);
    expect(redundant(call(2005, 'k1023'))).toEqual([3]);
  });

  it('nesting depth: given with each call, it holds in completion order; from parent links, only in start order', () => {
    const params = { budgetMaxToolDepth: 3 };
    // a chain of six nested calls, each with distinct arguments: span1 holds span2 holds ... span6
    const chain = [1, 2, 3, 4, 5, 6].map((d) => row(d, { argsHash: `a${d}`, resultHash: `r${d}`, parentSpanId: d === 1 ? 'root' : `span${d - 1}` }));
    const runaway = (g: LoopGuard) => g.findings('s').filter((f) => f.kind === 'runaway');
    const completion = [...chain].reverse(); // the innermost call ends first
    const given = new LoopGuard({ params });
    for (const c of completion) given.observe({ ...c, depth: Number(c.spanId.slice(4)) });
    expect(runaway(given).map((f) => [f.wastedCalls, f.message.includes('depth')])).toEqual([[3, true]]);
    const linked = new LoopGuard({ params });
    for (const c of chain) linked.observe(c);
    expect(runaway(linked).map((f) => f.wastedCalls)).toEqual([3]);
    const linkedLate = new LoopGuard({ params });
    for (const c of completion) linkedLate.observe(c);
    expect(runaway(linkedLate)).toEqual([]); // no parent was seen before its child: why the instrumentation gives the depth
  });

  it('LOOPWATCH_GUARD selects the policy', () => {
    expect(guardPolicyFromEnv({ LOOPWATCH_GUARD: 'halt' })).toBe('halt');
    expect(guardPolicyFromEnv({ LOOPWATCH_GUARD: 'OFF' })).toBe('off');
    const said: string[] = [];
    expect(guardPolicyFromEnv({ LOOPWATCH_GUARD: 'on' }, (m) => said.push(m))).toBeUndefined();
    expect(said).toEqual(['LOOPWATCH_GUARD="on" ignored: use warn, halt or off']);
    expect(guardPolicyFromEnv({}, (m) => said.push(m))).toBeUndefined();
    expect(said).toHaveLength(1);
    expect(enableLoopGuard({ policy: 'off' }).policy).toBe('off');
  });
});
