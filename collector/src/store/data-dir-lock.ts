// One collector per data directory. Two would share the spool (each loading and deleting the
// other's segments) and, on the embedded engine, the database files. A pid file, as databases
// keep one: <data-dir>/collector.pid names the owner. A file whose process is gone (a kill -9, a
// crash, a reboot) is taken over at once, so a restart after a crash never waits for a lock to go
// stale. Created with O_EXCL, so two collectors starting together cannot both take it.
//
// "Gone" on Linux: no such process, a zombie (killed, not yet reaped by its parent), another boot,
// or another process that got the same pid (its start time differs). Elsewhere: no such process.
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { StartError } from '../config.js';

export interface DataDirLock {
  release(): void;
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Linux: the process's state and start time (clock ticks after boot) from /proc; undefined elsewhere or when it does not exist. */
function procStat(pid: number): { state: string; start: string } | undefined {
  const stat = readText(`/proc/${pid}/stat`);
  if (stat === undefined) return undefined;
  // after "pid (comm) ": state is field 3, starttime field 22
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '', start: fields[19] ?? '' };
}

const hasProc = () => readText('/proc/self/stat') !== undefined;
const bootId = () => readText('/proc/sys/kernel/random/boot_id')?.trim() ?? '';

/** The directory's identity (device and inode): a copy of it (cp -a of a running collector's) has another. */
function dirId(dir: string): string {
  try {
    const st = statSync(dir);
    return `${st.dev}:${st.ino}`;
  } catch {
    return '-';
  }
}

/**
 * What the pid file says: "pid start boot dirId path" ("-" for what is unknown: start and boot
 * where there is no /proc; the path URI-encoded). Files of earlier releases have the first fields only.
 */
function ownerLine(dir: string): string {
  const self = procStat(process.pid);
  return `${process.pid} ${self?.start || '-'} ${(self && bootId()) || '-'} ${dirId(dir)} ${encodeURIComponent(dir)}\n`;
}

const decoded = (text: string): string => {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
};

function ownerRuns(line: string, dir: string): number | undefined {
  const [pidText, ...rest] = line.trim().split(/\s+/);
  const [start, boot, ownId, ownPath] = rest.map((f) => (f === '-' ? '' : f));
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return undefined;
  // The file was copied with the directory to another place (cp -a of a running collector's): its
  // collector runs on the original, not here. Only when both the place and the directory differ: a
  // collector whose directory was moved away and copied back goes on writing by its path, and one
  // reached by another path (a symbolic link) is the same directory.
  if (ownId && ownPath && ownId !== dirId(dir) && decoded(ownPath) !== dir) return undefined;
  if (hasProc()) {
    const p = procStat(pid);
    if (!p || p.state === 'Z') return undefined;
    if (start && (p.start !== start || (boot && boot !== bootId()))) return undefined;
    return pid;
  }
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined; // EPERM: exists, another user's
  }
}

/** A data directory the collector cannot create or write in, said in one line (the error's code and why). */
function cannotUse(dir: string, err: unknown, doing: 'create it' | 'write in it'): StartError {
  const code = (err as NodeJS.ErrnoException).code;
  const why =
    code === 'EEXIST' || code === 'ENOTDIR' ? 'a file is in the way, not a directory'
    : code === 'EROFS' ? 'a read-only file system'
    : code === 'EACCES' || code === 'EPERM' ? `not allowed to ${doing}`
    : code === 'ENOENT' ? `cannot ${doing}: a directory above it is missing and cannot be made`
    : code === 'ENOSPC' ? 'no space left on the device'
    : (err as Error).message.replace(/^[A-Z]+: /, '');
  return new StartError(`cannot use the data directory ${dir} (${code ?? 'error'}: ${why}): choose another with --data-dir (LOOPWATCH_DATA_DIR)`);
}

export function lockDataDir(dataDir: string): DataDirLock {
  const dir = resolve(dataDir);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw cannotUse(dir, err, 'create it');
  }
  const file = join(dir, 'collector.pid');
  const line = ownerLine(dir);
  for (let attempt = 0; ; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, line);
      closeSync(fd);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw cannotUse(dir, err, 'write in it');
      if (attempt > 0) throw err;
      const pid = ownerRuns(readText(file) ?? '', dir);
      if (pid !== undefined) {
        throw new StartError(`data directory ${dir} is in use by another Loopwatch collector (pid ${pid}): stop it, or choose another with --data-dir (LOOPWATCH_DATA_DIR)`);
      }
      rmSync(file, { force: true }); // its collector is gone: taken over
    }
  }
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      // only our own file, never one a later collector wrote
      if (readText(file) === line) rmSync(file, { force: true });
    },
  };
}
