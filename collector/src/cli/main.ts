#!/usr/bin/env node
// The `loopwatch` command: one file per command (up.ts, keys.ts, demo.ts, sessions.ts, …).
import { Command, CommanderError } from 'commander';
import { ConfigError, StartError } from '../config.js';
import { packageVersion } from '../paths.js';
import { CliError, registerReadCommands } from './register.js';
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

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2); // commander has said what is wrong
  if (err instanceof CliError || err instanceof StartError) {
    process.stderr.write(`loopwatch: ${err.message}\n`);
    process.exit(err instanceof CliError ? err.exitCode : 1);
  }
  if (err instanceof ConfigError) {
    process.stderr.write(`loopwatch: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`loopwatch: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
