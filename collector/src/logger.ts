import { pino, type Logger } from 'pino';

// Anything that can carry a credential is redacted wherever it appears in a log object.
const REDACT = [
  'password', '*.password', 'clickhouse.password', 'authorization', '*.authorization',
  'headers.authorization', 'req.headers.authorization', 'apiKey', '*.apiKey', 'apiKeys', '*.apiKeys',
];

export function createLogger(level: string): Logger {
  return pino({ level, redact: { paths: REDACT, censor: '[redacted]' }, base: { service: 'loopwatch-collector' } });
}
export type { Logger };
