/**
 * POST /v1/merges — a merge / fuse / NF4 job for a recipe; GET /v1/jobs/:id — its state;
 * GET /v1/artifacts/:recipe[/:file] — the manifest (or a file) once the artifact is complete.
 * Jobs and artifacts are visible to the tenants that asked for them.
 */
import { Hono } from 'hono';
import type { AppEnv } from '../http/auth.ts';
import { parseJsonBody, readCapped, validate } from '../http/body.ts';
import { ApiError } from '../http/errors.ts';
import { assertEdgeSized, jobStub, planMerge, submitJob } from '../jobs/submit.ts';
import { type MergeRequest, MergeRequestSchema } from '../jobs/types.ts';
import { artifactKey, DigestSchema, isSafeFileName, readArtifactManifest } from '../lib.ts';

/** Plans, then answers from the cache or submits: shared by POST /v1/merges and the webhooks. */
export async function requestMerge(env: Env, tenant: string, req: MergeRequest) {
  const plan = await planMerge(env, tenant, req);
  const manifest = await readArtifactManifest(env.BLOBS, plan.key);
  if (manifest) {
    const job = await jobStub(env, plan.key).adopt(plan.key, 'merge', plan.payload, tenant, { artifact: plan.key, reused: true });
    return { status: 200 as const, body: { job, recipe: plan.key, artifact: manifest } };
  }
  assertEdgeSized(env, plan);
  const { job } = await submitJob(env, plan.key, 'merge', plan.payload, tenant);
  return { status: 202 as const, body: { job, recipe: plan.key, artifact: null } };
}

/** Mounted under /v1, behind requireTenant. */
export const mergeRoutes = new Hono<AppEnv>();

mergeRoutes.post('/merges', async (c) => {
  const req = parseJsonBody(await readCapped(c.req.raw, 64 * 1024), MergeRequestSchema);
  const r = await requestMerge(c.env, c.get('tenant').id, req);
  return c.json(r.body, r.status);
});

mergeRoutes.get('/jobs/:id', async (c) => {
  const id = validate(DigestSchema, c.req.param('id'), 'id');
  const job = await jobStub(c.env, id).read(c.get('tenant').id);
  if (!job) throw new ApiError(404, 'job_not_found', `no job ${id} of yours`);
  return c.json({ job });
});

async function visibleManifest(env: Env, tenant: string, recipe: string) {
  const job = await jobStub(env, recipe).read(tenant);
  const manifest = job ? await readArtifactManifest(env.BLOBS, recipe) : null;
  if (!job || !manifest) {
    const why = job ? ` (its job is ${job.state})` : '';
    throw new ApiError(404, 'artifact_not_found', `no complete artifact ${recipe} of yours${why}`);
  }
  return manifest;
}

mergeRoutes.get('/artifacts/:recipe', async (c) => {
  const recipe = validate(DigestSchema, c.req.param('recipe'), 'recipe');
  return c.json(await visibleManifest(c.env, c.get('tenant').id, recipe));
});

mergeRoutes.get('/artifacts/:recipe/:file', async (c) => {
  const recipe = validate(DigestSchema, c.req.param('recipe'), 'recipe');
  const file = c.req.param('file');
  const manifest = await visibleManifest(c.env, c.get('tenant').id, recipe);
  const entry = isSafeFileName(file) ? manifest.files.find((f) => f.name === file) : undefined;
  if (!entry) throw new ApiError(404, 'artifact_file_not_found', `the artifact has no file "${file}"`);
  const obj = await c.env.BLOBS.get(artifactKey(recipe, file));
  if (!obj) throw new ApiError(404, 'artifact_file_not_found', `the artifact has no file "${file}"`);
  return new Response(obj.body, {
    headers: {
      'content-type': entry.content_type ?? 'application/octet-stream',
      'content-length': String(entry.size),
      etag: `"${entry.sha256}"`,
      'cache-control': 'public, max-age=31536000, immutable',
    },
  });
});
