// `loopwatch export <session>`: the session's calls as JSON Lines, in start order: a header line
// (type "session"), then one line per call (type "tool_call" or "llm_call") with tool, arguments
// and result when captured, hashes always, status and timing: enough to replay the tool calls or
// attach to a bug report.
import { createWriteStream } from 'node:fs';
import type { Command } from 'commander';
import type { CallRow } from '../api/queries.js';
import { exportHeader, exportLine } from '../export/session-file.js';
import { apiFor, withCommon, type CommonOpts } from './common.js';
import { progress, writeJson } from './format.js';
import { CliError } from './http-api.js';

const PAGE = 2000;

export function registerExportCommand(program: Command): void {
  withCommon(program.command('export'))
    .description('write a session as JSON Lines (header line, then one line per call): replay it or attach it to a bug report')
    .argument('<session>', 'session id')
    .option('-o, --output <file>', 'write to this file instead of stdout')
    .action(async (session: string, opts: CommonOpts & { output?: string }) => {
      const api = apiFor(opts);
      const path = `/api/v1/sessions/${encodeURIComponent(session)}/calls`;
      const first = await api.get<{ total: number; calls: CallRow[] }>(path, { offset: 0, limit: PAGE });
      if (first.total === 0) throw new CliError(`no calls in session ${session}`, 5);
      const out = opts.output ? createWriteStream(opts.output) : process.stdout;
      const write = (line: unknown) => new Promise<void>((r) => (out.write(JSON.stringify(line) + '\n') ? r() : out.once('drain', () => r())));
      const bar = progress(first.total, { json: opts.json || !opts.output, label: 'exporting' });
      await write(exportHeader(session, first.total));
      let done = 0;
      let page = first.calls;
      for (;;) {
        for (const call of page) await write(exportLine(call));
        done += page.length;
        bar.update(done, { stage: 'calls' });
        if (done >= first.total || page.length === 0) break;
        page = (await api.get<{ calls: CallRow[] }>(path, { offset: done, limit: PAGE })).calls;
      }
      bar.stop();
      if (opts.output) {
        await new Promise<void>((r) => (out as ReturnType<typeof createWriteStream>).end(() => r()));
        if (opts.json) writeJson({ session_id: session, calls: done, file: opts.output });
        else process.stdout.write(`wrote ${done} calls of session ${session} to ${opts.output}\n`);
      }
    });
}
