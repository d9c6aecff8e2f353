// `loopwatch export <session>`: the session's calls as JSON Lines, in start order: a header line
// (type "session"), then one line per call (type "tool_call" or "llm_call") with tool, arguments
// and result when captured, hashes always, status and timing: enough to replay the tool calls or
// attach to a bug report.
import { createWriteStream, type WriteStream } from 'node:fs';
import type { Command } from 'commander';
import type { CallRow } from '../api/queries.js';
import { exportHeader, exportLine } from '../export/session-file.js';
import { apiFor, withCommon, type CommonOpts } from './common.js';
import { progress, writeJson } from './format.js';
import { CliError, sessionPath } from './http-api.js';

const PAGE = 2000;

const cannotWrite = (path: string, err: Error): CliError => new CliError(`cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? err.message}`);

/** The output file, open: a path that cannot be written (no such directory, a directory) is a one-line error. */
function openOutput(path: string): Promise<WriteStream> {
  return new Promise((resolve, reject) => {
    const s = createWriteStream(path);
    s.once('open', () => resolve(s));
    s.once('error', (err) => reject(cannotWrite(path, err)));
  });
}

export function registerExportCommand(program: Command): void {
  withCommon(program.command('export'))
    .description('write a session as JSON Lines (header line, then one line per call): replay it or attach it to a bug report')
    .argument('<session>', 'session id')
    .option('-o, --output <file>', 'write to this file instead of stdout (- is stdout)')
    .action(async (session: string, opts: CommonOpts & { output?: string }) => {
      // `-o -` is stdout, as replay reads `-` as stdin (it wrote a file named "-")
      if (opts.output === '-') opts.output = undefined;
      const api = apiFor(opts);
      const path = sessionPath(session, '/calls');
      const first = await api.get<{ total: number; calls: CallRow[] }>(path, { offset: 0, limit: PAGE });
      if (first.total === 0) throw new CliError(`no calls in session ${session}`, 5);
      const out = opts.output ? await openOutput(opts.output) : process.stdout;
      // a write that fails (a full disk) fails the command: the file is not whole
      const write = (lines: unknown[]) =>
        new Promise<void>((resolve, reject) =>
          out.write(lines.map((l) => JSON.stringify(l) + '\n').join(''), (err) => (err ? reject(cannotWrite(opts.output ?? 'stdout', err)) : resolve())));
      const bar = progress(first.total, { json: opts.json || !opts.output, label: 'exporting' });
      await write([exportHeader(session, first.total)]);
      let done = 0;
      let page = first.calls;
      for (;;) {
        await write(page.map(exportLine)); // a page at a time: one write, its errors waited for
        done += page.length;
        bar.update(Math.min(done, first.total), { stage: 'calls' });
        if (page.length < PAGE) break;
        // the calls after the page's last, not an offset: a session still receiving calls (a late
        // span starting inside an earlier page) repeated one call and dropped another
        const last = page[page.length - 1]!;
        page = (await api.get<{ calls: CallRow[] }>(path, { after_ts: last.ts, after_span: last.span_id, limit: PAGE })).calls;
      }
      bar.stop();
      if (opts.output) {
        await new Promise<void>((resolve, reject) => {
          out.once('error', (err) => reject(cannotWrite(opts.output!, err)));
          (out as WriteStream).end(() => resolve());
        });
        if (opts.json) writeJson({ session_id: session, calls: done, file: opts.output });
        else process.stdout.write(`wrote ${done} calls of session ${session} to ${opts.output}\n`);
      }
    });
}
