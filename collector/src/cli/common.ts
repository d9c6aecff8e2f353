// Options every read command shares: --url and --json.
import { InvalidArgumentError, type Command } from 'commander';
import { ApiClient, resolveUrl } from './http-api.js';
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
