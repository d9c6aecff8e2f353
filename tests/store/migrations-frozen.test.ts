// A migration a store has applied is never applied to it again, so a migration changed after a
// release reaches only new stores: four were, and a review found upgraded stores left with the
// old error rule (false critical error_loops), the old LLM view (cache reads priced as input),
// and one that could not be upgraded at all. Their statements are pinned here: a change to a
// released migration fails this test. Write a new migration instead (views and functions are
// also made again at start when their last definition changed, see syncDefinitions; tables are not).
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { loadMigrations } from '../../collector/src/store/migrate.js';

// sha256 of each migration's statements (comments left out), first 16 hex digits
const RELEASED: Record<number, string> = {
  1: 'ebb8e51329f6ebc7', // otel_traces
  2: '2783ca0bb2498712', // agent_calls
  3: '61f7e6da7b4d72ea', // agent_findings
  4: '5208cd700206a5e3', // detectors
  5: '5cafb8227cb63137', // call_features
  6: '51d6d6b4eba1d83b', // detector_calls_file
  7: '208acee0560670e9', // llm_cost
  8: 'cfa26fd19f7100cd', // error_identity_llm_attribution
  9: '5d25dd114cfd177e', // call_occurrence
  10: '5a45e4eaf4f1c66d', // more_conventions
  11: 'ce3e2c65a4fe833a', // bedrock_model_keys
  12: 'fda6b6e6f633fd16', // llm_turns
  13: '773011c39eca620f', // turn_pauses (its turn_start, turn_end: for stores of 012's first version)
  14: '1cb249e2816eb07c', // error_identity_ids
  15: 'ec2381a2a8b18f6f', // other_languages
  16: '204f383b8b9a6125', // cache_write_price
  17: '397dbaa3bdfd7b0e', // mcp_server_spans
};

describe('released migrations', () => {
  it('are not changed (a store that applied one keeps what it applied): a change goes in a new migration', () => {
    const changed = loadMigrations({ retentionDays: 30 })
      .filter((m) => RELEASED[m.version] !== undefined)
      .filter((m) => createHash('sha256').update(m.statements.join('\n;\n')).digest('hex').slice(0, 16) !== RELEASED[m.version])
      .map((m) => `${String(m.version).padStart(3, '0')}_${m.name}`);
    expect(changed, 'released migrations changed: put the change in a new migration').toEqual([]);
    // none of them removed
    expect(loadMigrations({ retentionDays: 30 }).map((m) => m.version)).toEqual(expect.arrayContaining(Object.keys(RELEASED).map(Number)));
  });
});
