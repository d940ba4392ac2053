#!/usr/bin/env node
/**
 * Production deployment of the four Workers with wrangler: the resources they bind (R2 bucket, KV
 * namespace, queues and their dead-letter queues), their secrets, then the Workers in binding
 * order (a service binding's target first). Idempotent: resources that exist are kept.
 *
 *   node infra/deploy.mjs --dry-run     bundle every Worker's production config, print the plan (no account needed)
 *   node infra/deploy.mjs               do it (CLOUDFLARE_API_TOKEN + CLOUDFLARE_ACCOUNT_ID, secrets in the environment)
 *
 * Secrets come from the environment: ADMIN_TOKEN, GENERIC_WEBHOOK_SECRET, HF_WEBHOOK_SECRET,
 * RUNNER_TOKEN (required), HF_TOKEN (optional). The KV namespace id is written into the
 * production configs in place of the placeholder once the namespace exists.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const wrangler = join(root, 'node_modules', '.bin', 'wrangler');
const dry = process.argv.includes('--dry-run');

const PLACEHOLDER_KV_ID = '0'.repeat(32);
const BUCKET = 'lora-edge';
const KV_NAMESPACE = 'lora-edge-registry';
const QUEUES = ['lora-edge-merge-jobs', 'lora-edge-merge-jobs-dlq', 'lora-edge-gpu-jobs', 'lora-edge-gpu-jobs-dlq'];
/** Deploy order: each Worker after the ones its service bindings name. */
const WORKERS = [
  { dir: 'services/gpu', secrets: ['RUNNER_TOKEN'] },
  { dir: 'services/infer', secrets: [] },
  { dir: 'services/merge', secrets: ['ADMIN_TOKEN', 'GENERIC_WEBHOOK_SECRET', 'HF_WEBHOOK_SECRET', 'HF_TOKEN?'] },
  { dir: 'services/router', secrets: ['ADMIN_TOKEN'] },
];

function run(args, { tolerate } = {}) {
  console.log(`$ wrangler ${args.join(' ')}`);
  if (dry && args[0] !== 'deploy') return '';
  try {
    return execFileSync(wrangler, args, {
      cwd: root,
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, WRANGLER_SEND_METRICS: 'false' },
    });
  } catch (e) {
    const text = `${e.stdout ?? ''}${e.stderr ?? ''}`;
    if (tolerate?.test(text)) return text;
    throw new Error(`wrangler ${args.join(' ')} failed:\n${text.slice(-2000)}`);
  }
}

const config = (dir) => join(root, dir, 'wrangler.jsonc');

function resources() {
  run(['r2', 'bucket', 'create', BUCKET], { tolerate: /already exists/i });
  run(['kv', 'namespace', 'create', KV_NAMESPACE], { tolerate: /already exists/i });
  for (const q of QUEUES) run(['queues', 'create', q], { tolerate: /already (exists|taken)/i });
  if (dry) return;
  // The namespace id into the production configs that still hold the placeholder.
  const list = JSON.parse(run(['kv', 'namespace', 'list']));
  const ns = list.find((n) => n.title === KV_NAMESPACE || n.title.endsWith(`-${KV_NAMESPACE}`));
  if (!ns) throw new Error(`KV namespace ${KV_NAMESPACE} not found after creating it`);
  for (const w of WORKERS) {
    const file = config(w.dir);
    const text = readFileSync(file, 'utf8');
    if (text.includes(PLACEHOLDER_KV_ID)) writeFileSync(file, text.replaceAll(PLACEHOLDER_KV_ID, ns.id));
  }
}

function secrets(w) {
  for (const spec of w.secrets) {
    const optional = spec.endsWith('?');
    const name = spec.replace('?', '');
    const value = process.env[name];
    if (!value && !dry) {
      if (optional) continue;
      throw new Error(`set ${name} in the environment (a secret of ${w.dir})`);
    }
    console.log(`$ wrangler secret put ${name} --env production -c ${w.dir}/wrangler.jsonc${optional ? '   (if set)' : ''}`);
    if (!dry)
      execFileSync(wrangler, ['secret', 'put', name, '--env', 'production', '-c', config(w.dir)], {
        cwd: root,
        input: value,
        stdio: ['pipe', 'inherit', 'inherit'],
      });
  }
}

function deploy(w, outdir) {
  const args = ['deploy', '--env', 'production', '-c', config(w.dir)];
  if (dry) args.push('--dry-run', '--outdir', join(outdir, w.dir.replace('/', '-')));
  run(args);
}

const outdir = mkdtempSync(join(tmpdir(), 'lora-edge-deploy-'));
try {
  resources();
  for (const w of WORKERS) {
    secrets(w);
    deploy(w, outdir);
  }
  console.log(dry ? 'dry run: every production config bundles; nothing was created or deployed' : 'deployed');
} catch (e) {
  console.error(`deploy: ${e instanceof Error ? e.message : e}`);
  process.exitCode = 1;
} finally {
  rmSync(outdir, { recursive: true, force: true });
}
