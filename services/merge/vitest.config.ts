import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { cloudflareTest } from '@cloudflare/vitest-pool-workers';
import { defineConfig } from 'vitest/config';
import { gpuGatewayWorker } from '../../test/workers.ts';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const fixtures = here('../../fixtures/adapters/');

/** Revisions of the test repo `lora-edge-test/evolving`: a push changes the adapter it holds. */
const EVOLVING: Record<string, string> = { main: 'tiny-qv-r4', ['1'.repeat(40)]: 'tiny-qv-r4', ['2'.repeat(40)]: 'tiny-lori-r8' };

/**
 * A stand-in for the Hub on the Worker's outbound fetches: `huggingface.co/<repo>/resolve/<rev>/<file>`
 * answers the config directly and redirects weights to a CDN host, as the Hub does for LFS files.
 */
function fakeHub(req: Request): Response {
  const url = new URL(req.url);
  if (req.method !== 'GET') return new Response('method not allowed', { status: 405 });
  if (url.hostname === 'cdn-lfs.hf.co') {
    // A CDN must not receive the Hub token.
    if (req.headers.get('authorization')) return new Response('unexpected credentials', { status: 400 });
    const [fixture, file] = url.pathname.slice(1).split('/');
    return new Response(readFileSync(`${fixtures}${fixture}/${file}`));
  }
  if (url.hostname !== 'huggingface.co') return new Response(`no route to ${url.hostname}`, { status: 502 });
  const m = /^\/lora-edge-test\/([\w.-]+)\/resolve\/([^/]+)\/([\w.-]+)$/.exec(url.pathname);
  if (!m) return new Response('Entry not found', { status: 404 });
  const [, repo, rev, file] = m as unknown as [string, string, string, string];
  if (repo === 'huge') return new Response(new Uint8Array(file.endsWith('.json') ? 10 : 3_000_000));
  const fixture = repo === 'evolving' ? EVOLVING[decodeURIComponent(rev)] : repo;
  let bytes: Buffer;
  try {
    bytes = readFileSync(`${fixtures}${fixture}/${file}`);
  } catch {
    return new Response('Entry not found', { status: 404 });
  }
  if (file.endsWith('.safetensors'))
    return new Response(null, { status: 302, headers: { location: `https://cdn-lfs.hf.co/${fixture}/${file}?sig=x` } });
  return new Response(bytes, { headers: { 'content-type': 'application/json' } });
}

export default defineConfig({
  // Root at the repository so the golden fixtures (imported as Data modules) sit under it.
  root: here('../..'),
  server: { fs: { allow: [here('../..')] } },
  plugins: [
    cloudflareTest({
      wrangler: { configPath: here('./wrangler.jsonc') },
      miniflare: {
        // Secrets, as `wrangler secret put` would bind them; a small upload cap to test 413.
        bindings: {
          ADMIN_TOKEN: 'test-admin-token',
          HF_WEBHOOK_SECRET: 'test-hf-secret',
          GENERIC_WEBHOOK_SECRET: 'test-generic-secret',
          MAX_ADAPTER_BYTES: '1000000',
        },
        outboundService: fakeHub,
        // The GPU gateway for builds beyond a Worker (no runner here: those jobs wait, then fail).
        workers: [gpuGatewayWorker(here('./.wrangler/test-gpu'))],
      },
    }),
  ],
  test: { root: here('../..'), name: 'merge', include: ['services/merge/src/**/*.test.ts', 'services/merge/test/**/*.test.ts'] },
});
