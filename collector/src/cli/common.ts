// Options every read command shares: --url and --json; and how every command fails (fail()).
import { CommanderError, InvalidArgumentError, type Command } from 'commander';
import { ConfigError, StartError } from '../config.js';
import { ApiClient, CliError, resolveUrl, type ErrorCode } from './http-api.js';
import { writeJson } from './format.js';
import { decimalInteger } from '../../../instrumentation/src/decimal.js';

export interface CommonOpts {
  url?: string;
  json?: boolean;
}

export function withCommon(cmd: Command): Command {
  return cmd
    .option('--url <url>', 'collector URL (LOOPWATCH_URL; default http://127.0.0.1:4318); a read key comes from LOOPWATCH_API_KEY')
    .option('--json', 'print JSON instead of text');
}

export function apiFor(opts: CommonOpts): ApiClient {
  return new ApiClient(resolveUrl(opts.url));
}

function wholeAtLeast(value: string, min: number, what: string): number {
  const n = decimalInteger(value);
  if (n === undefined || n < min) throw new InvalidArgumentError(`must be ${what} in decimal digits`);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`must be at most ${Number.MAX_SAFE_INTEGER}`);
  return n;
}

export const positiveInt = (value: string): number => wholeAtLeast(value, 1, 'a positive whole number');
export const nonNegativeInt = (value: string): number => wholeAtLeast(value, 0, 'a whole number, 0 or more,');

/** Whether argv asks for JSON: a --json before any `--` (after it, --json is an argument). */
export function jsonInArgv(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).includes('--json');
}

/** What a failure says and its exit code; `said` when commander has written it to stderr already. */
function failureOf(err: unknown): { message: string; code: ErrorCode; exitCode: number; said?: boolean } {
  if (err instanceof CommanderError) {
    // a value a flag or argument refuses (its parser, its choices) is bad input, as one the
    // collector refuses; the rest (an unknown option or command, a missing argument) is usage
    return { message: err.message.replace(/^error: /, ''), code: err.code === 'commander.invalidArgument' ? 'bad_input' : 'usage', exitCode: 2, said: true };
  }
  if (err instanceof CliError) return { message: err.message, code: err.code, exitCode: err.exitCode };
  if (err instanceof ConfigError) return { message: err.message, code: 'bad_input', exitCode: 2 };
  if (err instanceof StartError) return { message: err.message, code: 'error', exitCode: 1 };
  return { message: (err as Error)?.stack ?? String(err), code: 'internal', exitCode: 1 };
}

/**
 * Ends a command that failed: its message on stderr (`loopwatch: …`), and with json also on stdout
 * as one line `{"error":{"message","code"}}` for a script piping --json output, with the same exit
 * code either way. Every command's failure comes here (main.ts). --help and --version end with 0
 * and print nothing more.
 */
export function fail(err: unknown, json: boolean): never {
  if (err instanceof CommanderError && err.exitCode === 0) process.exit(0);
  const f = failureOf(err);
  // the read key is never printed: no message has it, and none will (a stack could quote a
  // header); a key of a few characters could be part of any word, and is left alone
  const key = process.env.LOOPWATCH_API_KEY?.trim();
  const message = key && key.length >= 8 ? f.message.split(key).join('<LOOPWATCH_API_KEY>') : f.message;
  if (!f.said) process.stderr.write(`loopwatch: ${message}\n`);
  if (json) writeJson({ error: { message, code: f.code } });
  process.exit(f.exitCode);
}
