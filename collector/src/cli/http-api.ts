// The CLI's way to a collector: its read API over HTTP (never the embedded database, which the
// running collector holds locked). --url, else LOOPWATCH_URL, else http://127.0.0.1:4318; a read
// key from LOOPWATCH_API_KEY goes in `Authorization: Bearer`.
export const DEFAULT_URL = 'http://127.0.0.1:4318';

/**
 * What a failure is, for scripts (`--json` writes it as `error.code`): one per exit code, but exit
 * 1's error status of the collector (server_error) apart from the command's other failures.
 */
export type ErrorCode = 'usage' | 'bad_input' | 'unreachable' | 'unauthorized' | 'not_found' | 'server_error' | 'error' | 'internal';

const CODE_OF_EXIT: Record<number, ErrorCode> = { 2: 'bad_input', 3: 'unreachable', 4: 'unauthorized', 5: 'not_found' };

export class CliError extends Error {
  readonly code: ErrorCode;
  constructor(
    message: string,
    readonly exitCode = 1,
    code?: ErrorCode,
  ) {
    super(message);
    this.code = code ?? CODE_OF_EXIT[exitCode] ?? 'error';
  }
}

/** No server at the URL at all (the connection refused, the host unknown): exit 3. */
class NothingListening extends CliError {
  constructor(message: string) {
    super(message, 3);
  }
}

/** --url, else LOOPWATCH_URL, else the default: an http(s) URL, or a CliError (exit 2) that names where it came from. */
export function resolveUrl(url?: string): string {
  const from = url?.trim() ? '--url' : process.env.LOOPWATCH_URL?.trim() ? 'LOOPWATCH_URL' : null;
  const text = (url?.trim() || process.env.LOOPWATCH_URL?.trim() || DEFAULT_URL).replace(/\/+$/, '');
  let parsed: URL | null = null;
  try {
    parsed = new URL(text);
  } catch {
    // below
  }
  if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
    throw new CliError(`${from ?? 'the URL'} ${JSON.stringify(text)} is not an http:// or https:// URL (e.g. ${DEFAULT_URL})`, 2);
  }
  if (parsed.username || parsed.password) {
    // fetch refuses such a URL, and the message would print the password: named without it
    parsed.username = parsed.password = '';
    throw new CliError(`${from ?? 'the URL'} carries a user and password (${parsed.origin}): send a read key as LOOPWATCH_API_KEY instead; a proxy's basic auth is not supported`, 2);
  }
  return text;
}

/**
 * The read API path of a session: /api/v1/sessions/<id> plus `rest`. URLs take the ids "." and
 * ".." (also percent-encoded) for a directory: `export .` exported the session "calls". Refused.
 */
export function sessionPath(id: string, rest = ''): string {
  if (id === '') throw new CliError('the session id is empty: give one (`loopwatch sessions` lists them)', 2);
  if (id === '.' || id === '..') throw new CliError(`a session id of "${id}" cannot be read through the API's URLs (they take it for a directory); list it with \`loopwatch sessions\``, 2);
  return `/api/v1/sessions/${encodeURIComponent(id)}${rest}`;
}

/** The header every answer of a collector carries (collector.ts). */
const COLLECTOR_HEADER = 'loopwatch-version';

/**
 * A signal that aborts after ms, from a timer that keeps the process alive meanwhile.
 * AbortSignal.timeout's timer does not: with a server that accepted the connection and never
 * answered, the event loop ran empty and the command exited 0, having printed nothing.
 */
function deadline(ms: number): { signal: AbortSignal; clear(): void } {
  const c = new AbortController();
  const timer = setTimeout(() => c.abort(new DOMException(`no answer within ${ms} ms`, 'TimeoutError')), ms);
  return { signal: c.signal, clear: () => clearTimeout(timer) };
}

export class ApiClient {
  constructor(
    readonly url: string,
    // trimmed as fetch trims a header's value (a key pasted with a line break worked, and must go on working)
    private readonly key = process.env.LOOPWATCH_API_KEY?.trim() || undefined,
  ) {}

  private headers(): Record<string, string> {
    if (!this.key) return {};
    // fetch's own error quotes the header, key and all
    if (!/^[\x21-\x7e]+$/.test(this.key)) {
      throw new CliError('LOOPWATCH_API_KEY is not a valid key: it holds a space, a line break or another character a header cannot carry (set it to the key alone)', 2);
    }
    return { authorization: `Bearer ${this.key}` };
  }

  /**
   * Whether a collector answers at the URL (true), or nothing listens there (false). Anything else
   * there (a server that is not a collector, the gRPC port, TLS it does not trust) is a CliError,
   * as for any command: `demo` must not take it for a free address and start a collector on it.
   */
  async reachable(): Promise<boolean> {
    try {
      await this.contact();
      return true;
    } catch (err) {
      if (err instanceof NothingListening) return false;
      throw err;
    }
  }

  /**
   * The first request of a command: /healthz with a short wait, so that a server that accepts the
   * connection and never answers is reported in seconds, not after the read timeout (queries of
   * a big store may take a while; a health check does not).
   */
  private contacted: Promise<void> | null = null;
  private contact(): Promise<void> {
    return (this.contacted ??= this.fetchOrExplain(new URL(`${this.url}/healthz`), 10_000, async (res) => {
      await res.body?.cancel();
      if (!res.headers.has(COLLECTOR_HEADER)) throw this.notACollector('/healthz', res);
      // a collector, but not at this path: the OTLP endpoint copied as --url (…/v1/traces)
      if (res.status === 404) throw new CliError(`${this.url} is a path of a Loopwatch collector, not its address: --url is the collector's base URL (e.g. ${DEFAULT_URL}), without /v1/traces or another path`, 2);
    }).catch((err: unknown) => {
      this.contacted = null; // asked again next time (findings --follow waits for a collector to come back)
      throw err;
    }));
  }

  private notACollector(path: string, res: Response): CliError {
    return new CliError(`${this.url} is not a Loopwatch collector (its answer to ${path}, ${res.status} ${res.headers.get('content-type') ?? 'no content type'}, is not a collector's): check --url or LOOPWATCH_URL`, 3);
  }

  /**
   * fetch and read the answer within timeoutMs, with what went wrong said as a CliError (exit 3):
   * no answer in time, an untrusted certificate, nothing listening.
   */
  private async fetchOrExplain<T>(u: URL, timeoutMs: number, read: (res: Response) => Promise<T>): Promise<T> {
    const d = deadline(timeoutMs);
    try {
      return await read(await fetch(u, { headers: this.headers(), signal: d.signal }));
    } catch (err) {
      if (err instanceof CliError) throw err;
      if ((err as Error).name === 'TimeoutError') {
        throw new CliError(`no answer from ${this.url} to ${u.pathname} within ${timeoutMs / 1000} s: not a Loopwatch collector, or one that is stuck`, 3);
      }
      const cause = (err as Error).cause instanceof Error ? ((err as Error).cause as Error) : (err as Error);
      const code = (cause as NodeJS.ErrnoException).code ?? '';
      // https:// to a server that answers plain HTTP
      if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number/i.test(cause.message)) {
        throw new CliError(`the server at ${this.url} does not speak TLS: use http:// (the collector serves HTTPS only with --tls-cert and --tls-key)`, 3);
      }
      // HTTP/1.1 to an HTTP/2-only server: the OTLP/gRPC port (4317 by default); over TLS, its
      // protocol negotiation refuses HTTP/1.1
      if ((/^HPE_/.test(code) && /HTTP\/1\.1 protocol|Expected HTTP/i.test(cause.message)) || /no application protocol/i.test(cause.message)) {
        throw new CliError(`the server at ${this.url} does not answer HTTP/1.1: is it the OTLP/gRPC port? The CLI talks to the collector's HTTP port (4318 by default)`, 3);
      }
      // a collector that answers with TLS this process does not trust (self-signed, a private CA)
      if (/certificate|CERT_|SSL/i.test(`${(cause as NodeJS.ErrnoException).code ?? ''} ${cause.message}`)) {
        throw new CliError(`cannot trust the collector at ${this.url} (${cause.message}): set NODE_EXTRA_CA_CERTS to the file of the CA that signed its certificate`, 3);
      }
      throw new NothingListening(`no collector at ${this.url} (${cause.message}); start one with \`npx loopwatch up\` or pass --url`);
    } finally {
      d.clear();
    }
  }

  async get<T>(path: string, params: Record<string, string | number | undefined> = {}): Promise<T> {
    await this.contact();
    const u = new URL(this.url + path);
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') u.searchParams.set(k, String(v));
    const [res, text] = await this.fetchOrExplain(u, 120_000, async (r) => [r, await r.text()] as const);
    // another server at the URL (a web page, another API): say so, rather than fail on what it sent
    if (!res.headers.has(COLLECTOR_HEADER)) throw this.notACollector(u.pathname, res);
    if (!res.ok) {
      let message = text;
      try {
        message = (JSON.parse(text) as { message?: string }).message ?? text;
      } catch {
        // not JSON
      }
      if (res.status === 401 || res.status === 403) throw new CliError(`${res.status} from ${u.pathname}: ${message} (set LOOPWATCH_API_KEY to a read key)`, 4);
      if (res.status === 404) throw new CliError(message || `not found: ${u.pathname}`, 5);
      // a value the collector refused is one of the command's flags (they carry the API's names): a bad flag value, exit 2
      if (res.status === 400) throw new CliError(message.replace(/(^|\bafter |\bbefore )(since|until|limit|offset|session|detector|agent|model)\b(?! id)/g, '$1--$2'), 2);
      throw new CliError(`${res.status} from ${u.pathname}: ${message}`, 1, res.status >= 500 ? 'server_error' : 'error');
    }
    return JSON.parse(text) as T;
  }
}
