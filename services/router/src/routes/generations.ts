/**
 * GPU jobs as the caller sees them: `GET /v1/generations/:id` (the id is in the
 * x-lora-edge-job response header) shows its status, tokens so far and every attempt, retries
 * included. `/runners/*` is the GPU gateway's runner API, passed through (it checks the runner
 * token itself), so runners and clients talk to one host.
 */
import { Hono } from 'hono';
import type { GpuBinding } from '../gpu.ts';
import type { AppEnv } from '../http/auth.ts';
import { ApiError } from '../http/errors.ts';

const noGpu = () => new ApiError(404, 'not_found', 'This deployment has no GPU path.');

export const generationRoutes = new Hono<AppEnv>();

generationRoutes.get('/generations/:id', async (c) => {
  const gpu = (c.env as unknown as { GPU?: GpuBinding }).GPU;
  if (!gpu) throw noGpu();
  const view = await gpu.status(c.req.param('id'), c.get('tenant').id);
  if (!view) throw new ApiError(404, 'job_not_found', `No generation job \`${c.req.param('id')}\` is yours.`, 'id');
  return c.json(view);
});

export const runnerProxy = new Hono<AppEnv>();
runnerProxy.all('/runners/*', (c) => {
  const api = (c.env as unknown as { GPU_API?: Fetcher }).GPU_API;
  if (!api) throw noGpu();
  return api.fetch(c.req.raw);
});
