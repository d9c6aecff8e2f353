// `loopwatch keys`: make API keys and the SHA-256 hashes the collector is configured with.
import { Option, type Command } from 'commander';
import { generateKey, hashKey } from '../auth.js';

export function registerKeysCommand(program: Command): void {
  const keys = program.command('keys').description('API keys: the collector stores only their SHA-256 hashes');
  keys
    .command('hash')
    .description('print the SHA-256 hash of a key (reads the key from stdin when none is given, keeping it out of shell history)')
    .argument('[key]', 'the key')
    .action(async (key?: string) => {
      let k = key;
      if (k === undefined) {
        const chunks: Buffer[] = [];
        for await (const c of process.stdin) chunks.push(c as Buffer);
        k = Buffer.concat(chunks).toString('utf8').trim();
      }
      if (!k) {
        process.stderr.write('loopwatch: no key given\n');
        process.exit(2);
      }
      process.stdout.write(hashKey(k) + '\n');
    });
  keys
    .command('generate')
    .description('make a random key; prints the key (give it to the client) and its hash (configure the collector)')
    .addOption(new Option('--role <role>', 'the role of the keys-file line').choices(['ingest', 'read']).default('ingest'))
    .option('--json', 'print JSON instead of text')
    .action((opts: { role: string; json?: boolean }) => {
      const key = generateKey();
      const hash = hashKey(key);
      if (opts.json) process.stdout.write(JSON.stringify({ key, hash, role: opts.role, keys_file_line: `${opts.role} ${hash}` }) + '\n');
      else process.stdout.write(`key:  ${key}\nhash: ${hash}\nkeys-file line: ${opts.role} ${hash}\n`);
    });
}
