#!/usr/bin/env node
// The `loopwatch` command: one file per command (up.ts, keys.ts, demo.ts, sessions.ts, …).
import { Command } from 'commander';
import { ConfigError, StartError } from '../config.js';
import { CliError, registerReadCommands } from './register.js';
import { registerKeysCommand } from './keys.js';
import { registerReplayCommand } from './replay.js';
import { registerUpCommand } from './up.js';

const program = new Command()
  .name('loopwatch')
  .description('Loopwatch: catch AI agents that loop. OTLP collector, ClickHouse store, loop and waste detectors.')
  .showHelpAfterError();

registerUpCommand(program);

registerKeysCommand(program);

registerReadCommands(program);

registerReplayCommand(program);

program.parseAsync(process.argv).catch((err: unknown) => {
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
