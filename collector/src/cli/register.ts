// The commands that read from a running collector (through its /api/v1 read API) and `demo`.
import type { Command } from 'commander';
import { registerDemoCommand } from './demo.js';
import { registerExportCommand } from './export.js';
import { registerFindingsCommand } from './findings.js';
import { registerModelsCommand } from './models.js';
import { registerSessionCommand } from './session.js';
import { registerSessionsCommand } from './sessions.js';
import { registerStatusCommand } from './status.js';

export function registerReadCommands(program: Command): void {
  registerDemoCommand(program);
  registerSessionsCommand(program);
  registerSessionCommand(program);
  registerFindingsCommand(program);
  registerModelsCommand(program);
  registerExportCommand(program);
  registerStatusCommand(program);
}
