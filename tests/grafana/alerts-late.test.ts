// The loop alert keys on when a loop was found, not when it began: loops whose calls were 20
// minutes ago (slow LLM turns, a delayed export), found by a pass now, fire now. A file of its
// own: the embedded engine holds one data directory per process.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestCollector, type TestCollector } from '../helpers/collector.js';
import { evaluateRule } from './alerts.js';
import { alertRules } from './files.js';
import { seedLoops } from './seed.js';

const rules = Object.fromEntries(alertRules().map((r) => [r.uid, r]));
const firing = (xs: { labels: Record<string, string>; firing: boolean }[]) => xs.filter((x) => x.firing).map((x) => x.labels);

describe('alert rules on loops that began before the rule’s window', () => {
  let old: TestCollector;
  beforeAll(async () => {
    old = await startTestCollector();
    // the loops' calls 20 minutes ago (slow LLM turns, a delayed export), found by a pass now
    await seedLoops(old, new Date(Date.now() - 20 * 60_000));
  }, 120_000);
  afterAll(async () => {
    await old?.close();
  });

  it('loop detected: fires when the loop is found, not only when its first call was in the last 5 minutes', async () => {
    const instances = await evaluateRule(old, rules['loopwatch-loop-detected']!);
    expect(firing(instances).map((l) => l.agent).sort()).toEqual(['coder', 'planner', 'researcher']);
    // and is quiet 10 minutes after the pass that found them
    expect(firing(await evaluateRule(old, rules['loopwatch-loop-detected']!, new Date(Date.now() + 10 * 60_000)))).toEqual([]);
  });

  it('loop detected: loops whose last call is over an hour old, found now (a backfill, the first pass after an upgrade), do not page', async () => {
    const before = await evaluateRule(old, rules['loopwatch-loop-detected']!);
    await seedLoops(old, new Date(Date.now() - 3 * 3600_000));
    const after = await evaluateRule(old, rules['loopwatch-loop-detected']!);
    expect(after.map((i) => [i.labels.agent, i.value])).toEqual(before.map((i) => [i.labels.agent, i.value]));
  });
});
