// haltSignal(): an AbortSignal that ends an agent's run when the loop guard's halts do not.
// Frameworks that run tools for the model (Anthropic's tool runner, the AI SDK, LangGraph's tool
// node) hand a halted call back to the model as a tool error; a model that asks for it again and
// again then runs until the framework's own step limit (the tool runner has none), every step
// paid for. The frameworks all take an AbortSignal for their requests: this one aborts, with the
// LoopDetectedError as its reason, once the model asked for a stopped call again.
import { sessionFrom } from '../context.js';
import { warn } from '../warn.js';
import type { LoopDetectedError, LoopKind } from './loop-guard.js';

export interface HaltSignalOptions {
  /** The session whose stopped calls count (default: the enclosing withSession's; without one, every session's). */
  sessionId?: string;
  /** Stops that end the run at once (default: runaway, a budget blown or no progress). */
  kinds?: readonly LoopKind[];
  /**
   * Model turns with a stop, of any kind, that end the run (default 2: the model read why its
   * first call was stopped and could re-plan, and asked for a stopped call again).
   */
  stops?: number;
}

interface Watch {
  controller: AbortController;
  kinds: ReadonlySet<LoopKind>;
  stops: number;
  seen: number;
  /**
   * Per session, the model turn of its last stop and the stops in it: calls stopped in one turn
   * (parallel tool calls) count once.
   */
  turns: Map<string, { turn: unknown; stops: number }>;
}

/**
 * Stops one turn holds at most. A turn is known by the session's latest traced LLM call: when
 * the later ones are not traced, every stop looks like the same turn, and the signal never
 * aborted (a review); past this many, a stop counts as a turn of its own. Eight: a turn of five
 * parallel calls, all stopped, was taken for two at four.
 */
const MAX_STOPS_PER_TURN = 8;
/** Sessions an every-session signal remembers turns for. */
const MAX_TURN_SESSIONS = 1000;

// by session ('' for "every session"): the signals made for it, held weakly (a run that ends
// without a stop leaves its signal to the garbage collector); the signal holds its watch. Never
// cut to a number of sessions: a long run's signal dropped for 1,000 newer ones stopped working
// without a word (a review). Sessions whose signals are all gone are swept as the map grows.
const watched = new Map<string, Set<WeakRef<AbortSignal>>>();
const watchOf = new WeakMap<AbortSignal, Watch>();
let sweepAt = 1024;
let saidNoSession = false;

function sweep(): void {
  for (const [key, set] of watched) {
    for (const ref of set) if (ref.deref() === undefined) set.delete(ref);
    if (set.size === 0) watched.delete(key);
  }
  sweepAt = Math.max(1024, 2 * watched.size);
}

/**
 * An AbortSignal for a run of the agent: pass it where the framework takes one (Anthropic's
 * `toolRunner(params, { signal })`, the AI SDK's `abortSignal`, the OpenAI SDK's `signal`). It
 * aborts when the loop guard (policy `halt`) stops a call of the session as one of `kinds`, or
 * in the `stops`-th model turn with a stop since the signal was made (calls stopped together, the
 * parallel tool calls of one turn, count once); its reason is that call's LoopDetectedError,
 * which `loopDetectedIn` finds in what the framework then throws.
 */
export function haltSignal(opts: HaltSignalOptions = {}): AbortSignal {
  const stops = opts.stops ?? 2;
  if (!Number.isInteger(stops) || stops < 1) throw new TypeError(`haltSignal: stops must be a whole number from 1, not ${String(opts.stops)}`);
  const session = opts.sessionId ?? sessionFrom()?.sessionId;
  if (session === undefined && !saidNoSession) {
    saidNoSession = true;
    warn('haltSignal() outside withSession: it counts the calls the loop guard stops in every session of the process (pass { sessionId })');
  }
  const controller = new AbortController();
  const watch: Watch = { controller, kinds: new Set(opts.kinds ?? ['runaway']), stops, seen: 0, turns: new Map() };
  watchOf.set(controller.signal, watch);
  const key = session ?? '';
  let set = watched.get(key);
  if (!set) watched.set(key, (set = new Set()));
  for (const ref of set) if (ref.deref() === undefined) set.delete(ref);
  set.add(new WeakRef(controller.signal));
  if (watched.size > sweepAt) sweep();
  return controller.signal;
}

/**
 * The guard stopped a call of `sessionId` with `err`, in the model turn `turn` (the LLM call that
 * asked for it, when known): the signals watching the session count it, once per turn.
 */
export function noteHalt(sessionId: string, err: LoopDetectedError, turn?: unknown): void {
  for (const key of [sessionId, '']) {
    const set = watched.get(key);
    if (!set) continue;
    for (const ref of set) {
      const signal = ref.deref();
      const watch = signal && watchOf.get(signal);
      if (!watch) {
        set.delete(ref);
        continue;
      }
      const last = watch.turns.get(sessionId);
      if (turn !== undefined && last?.turn === turn && last.stops < MAX_STOPS_PER_TURN) {
        last.stops++;
      } else {
        watch.seen++;
        watch.turns.delete(sessionId);
        watch.turns.set(sessionId, { turn, stops: 1 });
        if (watch.turns.size > MAX_TURN_SESSIONS) watch.turns.delete(watch.turns.keys().next().value!);
      }
      if (watch.kinds.has(err.finding.kind) || watch.seen >= watch.stops) {
        set.delete(ref);
        watch.controller.abort(err);
      }
    }
    if (set.size === 0) watched.delete(key);
  }
}
