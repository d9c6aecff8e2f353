// instrumentLangChainTool(s) against real @langchain/core tools (tool(), a StructuredTool
// subclass), invoked the way agents invoke them (ToolCall in, ToolMessage out) and directly;
// spans exported over OTLP to a real collector.
import { ToolMessage } from '@langchain/core/messages';
import { StructuredTool, tool } from '@langchain/core/tools';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { withSession } from '../../instrumentation/src/api.js';
import { instrumentLangChainTools } from '../../instrumentation/src/integrations/langchain.js';
import { startPipeline, type Pipeline } from './helpers.js';

let p: Pipeline;
beforeAll(async () => {
  p = await startPipeline('langchain-agent');
});
afterAll(async () => {
  await p?.close();
});

class RunShell extends StructuredTool {
  name = 'run_shell';
  description = 'run a command';
  schema = z.object({ cmd: z.string() });
  protected async _call({ cmd }: { cmd: string }): Promise<string> {
    throw new Error(`command not found: ${cmd}`);
  }
}

describe('instrumentLangChainTools', () => {
  it('records tool invocations as execute_tool spans with call ids, hashes and errors', async () => {
    const search = tool(async ({ query }: { query: string }) => `results for ${query}`, {
      name: 'search', description: 'search the docs', schema: z.object({ query: z.string() }),
    });
    const shell = new RunShell();
    const deploy = tool(async ({ env }: { env: string }, config) => new ToolMessage({ content: `no access to ${env}`, status: 'error', tool_call_id: (config as { toolCall?: { id?: string } }).toolCall?.id ?? '' }), {
      name: 'deploy', description: 'deploy', schema: z.object({ env: z.string() }),
    });
    const tools = instrumentLangChainTools([search, shell, deploy]);
    expect(tools[0]).toBe(search); // same objects: bindTools and instanceof keep working
    expect(shell).toBeInstanceOf(StructuredTool);

    const session = `lc-${Date.now()}`;
    await withSession({ sessionId: session, agent: 'lc-agent' }, async () => {
      for (const id of ['call_1', 'call_2']) {
        const msg = await search.invoke({ type: 'tool_call', id, name: 'search', args: { query: 'loop detection' } });
        expect(msg.content).toBe('results for loop detection');
        expect(msg.tool_call_id).toBe(id);
      }
      expect(await search.invoke({ query: 'other' })).toBe('results for other');
      await expect(shell.invoke({ cmd: 'deploy' })).rejects.toThrow('command not found');
      const failed = await deploy.invoke({ type: 'tool_call', id: 'call_d', name: 'deploy', args: { env: 'prod' } });
      expect(failed.status).toBe('error'); // the agent still gets the ToolMessage
    });
    await p.landed();

    const rows = await p.tc.rows<{ tool: string; call_id: string; args_hash: string; result_hash: string; status: string; error_message: string; agent: string }>(
      `SELECT tool, call_id, toString(args_hash) AS args_hash, toString(result_hash) AS result_hash, status, error_message, agent
       FROM agent_tool_calls FINAL WHERE session_id = {s:String} ORDER BY ts`, { s: session });
    expect(rows.map((r) => `${r.tool}:${r.call_id}:${r.status}`)).toEqual(['search:call_1:ok', 'search:call_2:ok', 'search::ok', 'run_shell::error', 'deploy:call_d:error']);
    expect(rows[4]!.error_message).toBe('no access to prod');
    // the same arguments and the same content: the two agent calls hash alike (ids do not leak into the hash)
    expect(rows[0]!.args_hash).toBe(rows[1]!.args_hash);
    expect(rows[0]!.result_hash).toBe(rows[1]!.result_hash);
    expect(rows[2]!.args_hash).not.toBe(rows[0]!.args_hash);
    expect(rows[3]!.error_message).toContain('command not found: deploy');
    expect(rows.every((r) => r.agent === 'lc-agent')).toBe(true);
  });
});
