// Options every read command shares: --url and --json.
import { InvalidArgumentError, type Command } from 'commander';
import { ApiClient, resolveUrl } from './http-api.js';
import { decimalInteger } from '../config.js';

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

export function positiveInt(value: string): number {
  const n = decimalInteger(value);
  if (n === undefined || !Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive whole number in decimal digits');
  return n;
}

export function nonNegativeInt(value: string): number {
  const n = decimalInteger(value);
  if (n === undefined || !Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError('must be a whole number, 0 or more, in decimal digits');
  return n;
}
