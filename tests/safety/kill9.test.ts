// (1) Durable acknowledgement: a 200 is sent only after the spool's fdatasync. Kills land right
// after acknowledgements: mid-append, between fdatasync and the answer, and between INSERT and
// delete (kill9-rounds.ts; kill9-mid-insert.test.ts aims at the INSERT itself).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { ensureBuilt } from './helpers.js';
import { killRounds, ROUNDS } from './kill9-rounds.js';

let dataDir: string;
beforeAll(() => {
  ensureBuilt();
  dataDir = mkdtempSync(join(tmpdir(), 'lw-safety-kill9-'));
});
afterAll(() => {
  rmSync(dataDir, { recursive: true, force: true });
});

describe('kill -9 during sustained ingest', () => {
  it(`loses no acknowledged span and stores none twice over ${ROUNDS} SIGKILL rounds`, () => killRounds(dataDir, false), 240_000);
});
