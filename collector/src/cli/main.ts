#!/usr/bin/env node
// The `loopwatch` command: one file per command (up.ts, keys.ts, demo.ts, sessions.ts, …).
import { Command } from 'commander';
import { packageVersion } from '../paths.js';
import { fail, jsonInArgv } from './common.js';
import { registerReadCommands } from './register.js';
import { registerKeysCommand } from './keys.js';
import { registerReplayCommand } from './replay.js';
import { registerUpCommand } from './up.js';

const program = new Command()
  .name('loopwatch')
  .description('Loopwatch: catch AI agents that loop. OTLP collector, ClickHouse store, loop and waste detectors.')
  .version(packageVersion, '-V, --version')
  // one line on what is wrong and where help is (the whole help after it buried the line)
  .showHelpAfterError('(add --help for usage)')
  // a usage error (a bad flag value, an unknown option) exits 2, bad configuration, as the
  // configuration's own checks do; commander's default is 1
  .exitOverride();

// `loopwatch export … | head`: the reader went away. Stop quietly, as command-line tools do
// (an unhandled EPIPE printed a stack trace and exited 1).
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

registerUpCommand(program);

registerKeysCommand(program);

registerReadCommands(program);

registerReplayCommand(program);

// the --json of the command that runs, once commander has parsed its options; a usage error comes
// before that, and then --json in argv asks for the error in JSON
let json: boolean | undefined;
program.hook('preAction', (_program, command) => {
  json = command.opts().json === true;
});

program.parseAsync(process.argv).catch((err: unknown) => fail(err, json ?? jsonInArgv(process.argv.slice(2))));
