// One collector per data directory: a second one on the same directory would share the spool
// (loading and deleting the first one's segments) and the embedded database. It refuses to start,
// saying why; after the first is killed (kill -9: its pid file stays), the next starts at once.
// Real `loopwatch up` processes.
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../collector/src/paths.js';
import { CLI, ensureBuilt, postProto, range, startProcess, stopProcess, toolSpansRequest, waitDrained } from './helpers.js';

const dataDir = mkdtempSync(join(tmpdir(), 'lw-dir-lock-'));
beforeAll(() => ensureBuilt());
afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

function upOnce(dir: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [CLI, 'up', '--host', '127.0.0.1', '--port', '0', '--grpc-port', 'off', '-d', dir], { cwd: packageRoot, timeout: 60_000 },
      (_err, _stdout, stderr) => resolve({ code: child.exitCode, stderr }));
  });
}

describe('a data directory in use', () => {
  it('a second collector refuses it, naming the first; after a kill -9 of the first, the next one starts and has its spans', async () => {
    const first = await startProcess(dataDir);
    const pidFile = join(dataDir, 'collector.pid');
    expect(readFileSync(pidFile, 'utf8').split(' ')[0]).toBe(String(first.pid));

    const second = await upOnce(dataDir);
    expect(second.code).toBe(1);
    expect(second.stderr.trim()).toBe(`loopwatch: data directory ${dataDir} is in use by another Loopwatch collector (pid ${first.pid}): stop it, or choose another with --data-dir (LOOPWATCH_DATA_DIR)`);

    // spans acknowledged by the first, then kill -9: the pid file is left behind
    const sent = toolSpansRequest(range(7, 0, 20), { session: 'dir-lock' });
    expect((await postProto(first.url, sent.body)).status).toBe(200);
    first.child.kill('SIGKILL');
    await first.exited;
    expect(existsSync(pidFile)).toBe(true);

    const next = await startProcess(dataDir);
    try {
      expect(readFileSync(pidFile, 'utf8').split(' ')[0]).toBe(String(next.pid));
      await waitDrained(next.url);
      const r = await fetch(`${next.url}/api/v1/sessions/dir-lock`);
      expect(r.status).toBe(200);
      expect(((await r.json()) as { calls: unknown[] }).calls).toHaveLength(20);
    } finally {
      await stopProcess(next);
    }
    expect(existsSync(pidFile)).toBe(false); // a clean stop removes it
  }, 120_000);

  it('with the pid file deleted by hand, a second collector still fails (the store is locked) and leaves no pid file naming itself', async () => {
    const first = await startProcess(dataDir);
    const pidFile = join(dataDir, 'collector.pid');
    try {
      rmSync(pidFile);
      const second = await upOnce(dataDir);
      expect(second.code).not.toBe(0);
      // its own pid would say the directory is free once it has exited: a third would start on the first's spool
      expect(existsSync(pidFile)).toBe(false);
    } finally {
      await stopProcess(first);
    }
  }, 120_000);

  it('a copy of a running collector\'s directory (its pid file with it) is not "in use": a collector starts on it', async () => {
    const first = await startProcess(dataDir);
    const copy = mkdtempSync(join(tmpdir(), 'lw-dir-copy-'));
    try {
      cpSync(dataDir, copy, { recursive: true });
      expect(readFileSync(join(copy, 'collector.pid'), 'utf8').split(' ')[0]).toBe(String(first.pid));
      const onCopy = await startProcess(copy);
      expect(readFileSync(join(copy, 'collector.pid'), 'utf8').split(' ')[0]).toBe(String(onCopy.pid));
      await stopProcess(onCopy);
    } finally {
      await stopProcess(first);
      rmSync(copy, { recursive: true, force: true });
    }
  }, 120_000);

  it('a directory moved away from under a running collector and copied back to its place is still in use', async () => {
    const place = mkdtempSync(join(tmpdir(), 'lw-dir-moved-'));
    const dir = join(place, 'd');
    const first = await startProcess(dir);
    try {
      renameSync(dir, `${dir}.old`);
      cpSync(`${dir}.old`, dir, { recursive: true });
      // the collector goes on writing by its path: a second one there would share the files
      const second = await upOnce(dir);
      expect(second.code).not.toBe(0);
      expect(second.stderr).toMatch(/is in use by another Loopwatch collector/);
    } finally {
      await stopProcess(first);
      rmSync(place, { recursive: true, force: true });
    }
  }, 120_000);
});
