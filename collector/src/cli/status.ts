// `loopwatch status`: is the collector taking spans, are they reaching the store, are the
// detectors running, and what needs a person. Exit code 0 when healthy, 1 when it lists problems
// (for scripts and health checks), 3 when no collector answers.
import type { Command } from 'commander';
import type { CollectorStatus } from '../status.js';
import { apiFor, withCommon, type CommonOpts } from './common.js';
import { resolveUrl } from './http-api.js';
import { c, plural, writeJson } from './format.js';

const sum = (t: Record<string, number>) => Object.values(t).reduce((a, b) => a + b, 0);
const byTransport = (t: Record<string, number>) => `${sum(t)}${t.grpc ? ` (http ${t.http}, grpc ${t.grpc})` : ''}`;

export function registerStatusCommand(program: Command): void {
  withCommon(program.command('status'))
    .description("the collector's health: spans received and stored, spool backlog, detector passes, problems (exit 1 when there are any)")
    .action(async (opts: CommonOpts) => {
      const s = await apiFor(opts).get<CollectorStatus>('/api/v1/status');
      if (!s.healthy) process.exitCode = 1;
      if (opts.json) return writeJson(s);
      if (typeof s.uptime_s !== 'number') {
        // a collector of another release (before 2026-12-05 its status keys were camelCase)
        process.stderr.write(`loopwatch: the collector at ${resolveUrl(opts.url)} answered its status in another release's format: use the CLI of its release (--json shows what it sent)\n`);
        process.exitCode = 1;
        return;
      }
      const d = s.detectors;
      const last = d.last_pass;
      process.stdout.write(
        [
          `${s.healthy ? c.green('healthy') : c.red('problems')}  up ${s.uptime_s}s  store ${s.store.mode} (${s.store.location}), schema ${s.store.schema}${s.store.schema_version === null || s.store.schema_version === undefined ? '' : ` (version ${s.store.schema_version})`}, retention ${s.retention_days} days`,
          `listening  ${s.listening.otlp_http}${s.listening.otlp_grpc ? `, gRPC ${s.listening.otlp_grpc}` : ''}${s.listening.tls_not_after ? `, TLS (certificate valid until ${s.listening.tls_not_after})` : ''}${s.listening.client_certificates ? ', client certificates required to export' : ''}${s.listening.auth ? ', API keys required' : ''}`,
          `spans      received ${byTransport(s.spans.received)}, accepted ${byTransport(s.spans.accepted)}, rejected ${sum(s.spans.rejected)}, retries ${sum(s.spans.duplicate)}; stored ${s.spans.inserted}, lost ${s.spans.dropped ? c.red(String(s.spans.dropped)) : '0'}`,
          `spool      ${s.spool.segments} segments, ${s.spool.bytes} bytes waiting for the store`,
          `detectors  ${d.enabled ? `every ${d.interval_ms} ms, ${plural(d.passes, 'pass', 'passes')} (${d.failed_passes} failed), ${plural(d.new_findings, 'finding')} stored` : 'off in this collector'}${last ? `; last ${last.at}: ${plural(last.sessions, 'session')} in ${last.duration_ms} ms, ${plural(last.new_findings, 'new finding')}, ${last.grown_findings} grown` : ''}`,
          ...s.problems.map((p) => c.red(`problem    ${p}`)),
          '',
        ].join('\n'),
      );
    });
}
