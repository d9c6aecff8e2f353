// A client that does not speak HTTP/1.1 to the OTLP/HTTP port. An OTLP/gRPC exporter pointed at
// it opens HTTP/2 (here Node's own HTTP/2 client, which starts a connection as gRPC clients do):
// it can only see a dropped connection, so the collector's log says where gRPC goes. Other
// garbage gets the 400 Node would send. The collector is the real process (`loopwatch up`).
import { connect as h2connect } from 'node:http2';
import { connect } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureBuilt, postProto, range, startProcess, stopProcess, toolSpansRequest, type CollectorProcess } from '../safety/helpers.js';

let dataDir: string;
let p: CollectorProcess;
beforeAll(async () => {
  ensureBuilt();
  dataDir = mkdtempSync(join(tmpdir(), 'lw-wrong-protocol-'));
  p = await startProcess(dataDir, { LOOPWATCH_LOG_LEVEL: 'warn' });
}, 60_000);
afterAll(async () => {
  await stopProcess(p);
  rmSync(dataDir, { recursive: true, force: true });
});

const rejected = async () => {
  const text = await (await fetch(`${p.url}/metrics`)).text();
  return Number(/^loopwatch_requests_rejected_total (\d+)/m.exec(text)?.[1] ?? NaN);
};

describe('a client that speaks another protocol', () => {
  it('HTTP/2 (an OTLP/gRPC exporter): the connection is dropped and the log says where gRPC goes, at most once a minute', async () => {
    const before = await rejected();
    for (let i = 0; i < 2; i++) {
      const error = await new Promise<Error | undefined>((resolve) => {
        const session = h2connect(p.url);
        session.on('error', (err) => resolve(err));
        session.on('close', () => resolve(undefined));
        const req = session.request({ ':method': 'POST', ':path': '/opentelemetry.proto.collector.trace.v1.TraceService/Export', 'content-type': 'application/grpc' });
        req.on('error', () => undefined);
        req.end();
      });
      expect(error === undefined || /ECONNRESET|closed|GOAWAY|ERR_HTTP2/i.test(`${(error as { code?: string }).code} ${error.message}`)).toBe(true);
    }
    expect(await rejected()).toBe(before + 2);
    const said = p.output().split('\n').filter((l) => l.includes('OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf'));
    expect(said).toHaveLength(1);
    expect(said[0]).toContain('spoke HTTP/2 (an OTLP/gRPC exporter?) to the OTLP/HTTP port: send OTLP/gRPC to 127.0.0.1:');
  });

  it('bytes that are not HTTP get the 400 Node would send', async () => {
    const answer = await new Promise<string>((resolve) => {
      let got = '';
      const socket = connect(Number(new URL(p.url).port), '127.0.0.1', () => socket.write('HELLO THERE\r\n\r\n'));
      socket.on('data', (d) => (got += d.toString()));
      socket.on('close', () => resolve(got));
      socket.on('error', () => undefined);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
  });

  it('and the collector goes on taking OTLP/HTTP', async () => {
    expect((await postProto(p.url, toolSpansRequest(range(1, 0, 5)).body)).status).toBe(200);
  });
});
