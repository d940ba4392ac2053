#!/usr/bin/env node
/**
 * `npm start`: the whole local stack in one process tree, on miniflare's persisted emulation
 * (.wrangler/state): every Worker under one `wrangler dev`, so service bindings, queues and
 * Durable Objects connect locally exactly as in production.
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const port = Number(process.env.PORT ?? 8787);
// The first config is the one served on the port; the others are reached through bindings.
const workers = ['services/router', 'services/merge', 'services/infer'];
const args = [
  'dev',
  ...workers.flatMap((w) => ['-c', join(w, 'wrangler.jsonc')]),
  '--port',
  String(port),
  '--persist-to',
  '.wrangler/state',
];
if (process.env.CI || !process.stdout.isTTY) args.push('--show-interactive-dev-session=false');

console.log(`lora-edge local stack: ${workers.join(', ')}`);
const env = { ...process.env, WRANGLER_SEND_METRICS: 'false' };
const child = spawn(join(root, 'node_modules', '.bin', 'wrangler'), args, { cwd: root, env, stdio: ['inherit', 'pipe', 'inherit'] });
let announced = false;
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  if (!announced && /Ready on/.test(String(chunk))) {
    announced = true;
    console.log(`\nlora-edge is up:\n  router  http://localhost:${port}\n  try:    curl -s http://localhost:${port}/health\n`);
  }
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
child.on('exit', (code) => process.exit(code ?? 0));
