/**
 * The production deployment plan, offline: `infra/deploy.mjs --dry-run` bundles every Worker's
 * production config with wrangler (as `wrangler deploy` would) and prints what it would create and
 * deploy. Checked here: it succeeds, every queue the production configs name is created, and the
 * Workers go out after the Workers their service bindings name.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const WORKERS = ['gpu', 'infer', 'merge', 'router'];

describe('production deployment (dry run)', () => {
  const out = execFileSync(process.execPath, [join(root, 'infra', 'deploy.mjs'), '--dry-run'], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, CI: '1' },
  });
  const lines = out.split('\n').filter((l) => l.startsWith('$ wrangler'));

  it('bundles every production config', () => {
    expect(out).toMatch(/dry run: every production config bundles/);
    const deploys = lines.filter((l) => l.startsWith('$ wrangler deploy'));
    expect(deploys.map((l) => /services\/(\w+)\/wrangler/.exec(l)?.[1])).toEqual(WORKERS);
    for (const d of deploys) expect(d).toMatch(/--env production/);
  });

  it('creates every queue, dead-letter queue, bucket and namespace the production configs bind', () => {
    const created = new Set(lines.filter((l) => / create /.test(l)).map((l) => l.split(' ').at(-1)));
    for (const w of WORKERS) {
      const text = readFileSync(join(root, 'services', w, 'wrangler.jsonc'), 'utf8');
      const production = text.slice(text.indexOf('"production"'));
      for (const m of production.matchAll(/"(?:queue|dead_letter_queue)": "([^"]+)"/g)) expect(created, `${w}: ${m[1]}`).toContain(m[1]);
      for (const m of production.matchAll(/"bucket_name": "([^"]+)"/g)) expect(created).toContain(m[1]);
    }
    expect(created).toContain('lora-edge-registry');
  });

  it('deploys a service binding’s target before the Worker that binds it', () => {
    const order = (name: string) => WORKERS.indexOf(name.replace('lora-edge-', ''));
    for (const w of WORKERS) {
      const text = readFileSync(join(root, 'services', w, 'wrangler.jsonc'), 'utf8');
      for (const m of text.matchAll(/"service": "([^"]+)"/g)) expect(order(m[1] as string), `${w} binds ${m[1]}`).toBeLessThan(order(w));
    }
  });
});
