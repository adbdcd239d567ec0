// Imports the module named by argv[2] and prints, as JSON, every module URL that loading it
// brought in: what the ESM loader resolved (through a resolve hook) and what the CommonJS loader
// holds (packages that require() others never reach an ESM hook).
import { createRequire, register } from 'node:module';
import { pathToFileURL } from 'node:url';
import { MessageChannel } from 'node:worker_threads';

const target = process.argv[2];
if (!target) throw new Error('usage: probe.mjs <module path, URL or package name>');

const { port1, port2 } = new MessageChannel();
const resolved = [];
// Messages on one port arrive in order: once the sentinel's resolution is seen, every earlier
// resolution has been recorded.
const sentinel = `data:text/javascript,export default ${Date.now()}`;
const drained = new Promise((done) => {
  port1.on('message', (url) => {
    if (url === sentinel) done();
    else resolved.push(url);
  });
});
register(new URL('./record-resolve.mjs', import.meta.url), { data: { port: port2 }, transferList: [port2] });

await import(target.startsWith('/') || target.startsWith('.') ? pathToFileURL(target).href : target);
await import(sentinel);
await drained;
port1.close();

const required = Object.keys(createRequire(import.meta.url).cache).map((p) => pathToFileURL(p).href);
process.stdout.write(JSON.stringify([...new Set([...resolved, ...required])]));
