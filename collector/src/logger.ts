import { pino, type Logger } from 'pino';

// Anything that can carry a credential is redacted wherever it appears in a log object.
const REDACT = [
  'password', '*.password', 'clickhouse.password', 'authorization', '*.authorization',
  'headers.authorization', 'req.headers.authorization', 'apiKey', '*.apiKey', 'apiKeys', '*.apiKeys',
];

/**
 * JSON lines on stderr: stdout is the CLI's output (`up --json` prints one document there, which
 * the logs used to follow). Written synchronously, so a crash loses none.
 */
export function createLogger(level: string): Logger {
  return pino({ level, redact: { paths: REDACT, censor: '[redacted]' }, base: { service: 'loopwatch-collector' } }, pino.destination({ dest: 2, sync: true }));
}
export type { Logger };

/**
 * For a warning that a client can trigger on every request: true the first time, then at most
 * once every `ms` (the log says what to change, not how often it happened).
 */
export function atMostEvery(ms: number): () => boolean {
  let lastAt = -Infinity;
  return () => {
    const now = Date.now();
    if (now - lastAt <= ms) return false;
    lastAt = now;
    return true;
  };
}
