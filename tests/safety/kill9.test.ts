// (1) Durable acknowledgement: a 200 is sent only after the spool's fdatasync. Kills land right
// after acknowledgements: mid-append, between fdatasync and the answer, and between INSERT and
// delete (kill9-rounds.ts; kill9-mid-insert.test.ts aims at the INSERT itself).
import { describe, it } from 'vitest';
import { killRounds, ROUNDS } from './kill9-rounds.js';

// 12 rounds of a collector process started, loaded and killed: about 160 s on a quiet machine,
// over 240 s on a loaded one (a full run beside a review building an 11.5M-call store); tests
// must not fail on timing
describe('kill -9 during sustained ingest', () => {
  it(`loses no acknowledged span and stores none twice over ${ROUNDS} SIGKILL rounds`, () => killRounds(false), 480_000);
});
