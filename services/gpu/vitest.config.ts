import { fileURLToPath } from 'node:url';
import { cloudflareTest } from '@cloudflare/vitest-pool-workers';
import { defineConfig } from 'vitest/config';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

/**
 * Stand-ins for runners on the gateway's outbound fetches, for the hand-off rules only (the real
 * runner process is driven end to end in test/e2e/gpu-path.test.ts): `ok.runner.test` accepts,
 * `small.runner.test` cannot hold the model, `busy.runner.test` is full, `bad.runner.test`
 * refuses the job as invalid, `down.runner.test` does not answer.
 */
const accepted: unknown[] = [];
function fakeRunners(req: Request): Response | Promise<Response> {
  const host = new URL(req.url).hostname;
  const refuse = (status: number, code: string, retryable: boolean) =>
    Response.json({ error: { code, message: code, retryable } }, { status });
  if (host === 'ok.runner.test')
    return req.json().then((j) => {
      accepted.push(j);
      return Response.json({ accepted: true }, { status: 202 });
    });
  if (host === 'small.runner.test') return refuse(422, 'model_too_large', true);
  if (host === 'busy.runner.test') return refuse(503, 'runner_busy', true);
  if (host === 'bad.runner.test') return refuse(400, 'job_invalid', false);
  return Promise.reject(new Error(`connect ECONNREFUSED ${host}`));
}

export default defineConfig({
  root: here('../..'),
  server: { fs: { allow: [here('../..')] } },
  plugins: [
    cloudflareTest({
      wrangler: { configPath: here('./wrangler.jsonc') },
      miniflare: {
        bindings: {
          RUNNER_TOKEN: 'test-runner-token',
          GPU_HEARTBEAT_MS: '100',
          GPU_LEASE_MS: '500',
          GPU_MAX_ATTEMPTS: '2',
          GPU_QUEUE_TIMEOUT_MS: '3000',
        },
        outboundService: fakeRunners,
      },
    }),
  ],
  test: { root: here('../..'), name: 'gpu', include: ['services/gpu/src/**/*.test.ts', 'services/gpu/test/**/*.test.ts'] },
});
