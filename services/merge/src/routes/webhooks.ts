/**
 * POST /webhooks/huggingface — the Hub's webhook: the secret arrives verbatim in
 * X-Webhook-Secret (compared in constant time). A push to a watched model repo re-imports the
 * adapters that watch it at the pushed commit (headSha): job ids derive from the commit, so a
 * redelivery joins the same jobs.
 *
 * POST /webhooks/generic — signed: X-LoraEdge-Timestamp (Unix s) and X-LoraEdge-Signature:
 * sha256=HMAC-SHA256(secret, "<timestamp>.<raw body>"); ±WEBHOOK_TOLERANCE_S; each signature
 * accepted once. Body: {type: "merge", tenant, merge} | {type: "adapter", tenant, adapter, merges?}.
 */
import { Hono } from 'hono';
import { z } from 'zod';
import { hubSource, resolveSourceUrl } from '../adapters/fetch.ts';
import { type AppEnv, registry } from '../http/auth.ts';
import { parseJsonBody, readCapped } from '../http/body.ts';
import { ApiError } from '../http/errors.ts';
import { limits } from '../http/limits.ts';
import { firstDelivery } from '../jobs/replay-guard.ts';
import { importJobId, submitJob } from '../jobs/submit.ts';
import { type ImportPayload, MergeRequestSchema } from '../jobs/types.ts';
import {
  ExamplesSchema,
  ModelIdSchema,
  NameSchema,
  TenantIdSchema,
  timingSafeEqualText,
  VISIBILITIES,
  verifyWebhook,
  WEBHOOK_SIGNATURE_HEADER,
  WEBHOOK_TIMESTAMP_HEADER,
} from '../lib.ts';
import { requestMerge } from './merges.ts';

const HF_BODY_MAX = 256 * 1024;

/** The Hub's payload: only the fields used are checked; the rest (discussion, comment, …) passes. */
const HfPayloadSchema = z.looseObject({
  event: z.looseObject({ action: z.string(), scope: z.string() }),
  repo: z.looseObject({ type: z.string(), name: z.string().min(1).max(200), headSha: z.string().optional() }),
});

const GenericEventSchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('merge'), id: z.string().max(200).optional(), tenant: TenantIdSchema, merge: MergeRequestSchema }),
  z.strictObject({
    type: z.literal('adapter'),
    id: z.string().max(200).optional(),
    tenant: TenantIdSchema,
    adapter: z.strictObject({
      name: NameSchema,
      url: z.string().min(1).max(2000),
      revision: z.string().min(1).max(200).optional(),
      base: ModelIdSchema.optional(),
      visibility: z.enum(VISIBILITIES).optional(),
      examples: ExamplesSchema.optional(),
      watch: z.boolean().optional(),
    }),
    /** Merges to submit once the adapter is registered. */
    merges: z.array(MergeRequestSchema).max(8).optional(),
  }),
]);
export type GenericEvent = z.infer<typeof GenericEventSchema>;

export const webhookRoutes = new Hono<AppEnv>();

webhookRoutes.post('/huggingface', async (c) => {
  const want = c.env.HF_WEBHOOK_SECRET;
  const got = c.req.header('x-webhook-secret');
  if (!want) throw new ApiError(401, 'webhook_disabled', 'Hugging Face webhooks are not configured here (no HF_WEBHOOK_SECRET)');
  if (!got) throw new ApiError(401, 'webhook_secret_missing', 'the X-Webhook-Secret header is missing');
  if (!(await timingSafeEqualText(got, want))) throw new ApiError(401, 'webhook_secret_invalid', 'X-Webhook-Secret does not match');

  const hook = parseJsonBody(await readCapped(c.req.raw, HF_BODY_MAX), HfPayloadSchema);
  const { event, repo } = hook;
  const content = event.scope === 'repo' || event.scope.startsWith('repo.content');
  if (repo.type !== 'model' || !content || (event.action !== 'update' && event.action !== 'create') || !repo.headSha) {
    return c.json({ ignored: true, reason: `nothing to do for ${repo.type} ${event.scope}/${event.action}` });
  }
  const reg = registry(c.env);
  const watchers = await reg.watchersOf(repo.name);
  const jobs: { adapter: string; job: string; state: string }[] = [];
  for (const w of watchers) {
    const current = await reg.getAdapter(w.tenant, w.name);
    if (!current) continue;
    const src = hubSource(repo.name, repo.headSha, w.subfolder);
    const payload: ImportPayload = {
      kind: 'import',
      tenant: w.tenant,
      name: w.name,
      base: current.base,
      source: src.source,
      dir: src.dir,
      visibility: current.visibility,
      examples: current.examples,
      watch: true,
    };
    const id = await importJobId(payload, repo.headSha);
    const { job } = await submitJob(c.env, id, 'import', payload, w.tenant);
    jobs.push({ adapter: `${w.tenant}/${w.name}`, job: job.id, state: job.state });
  }
  if (jobs.length === 0) return c.json({ ignored: true, reason: `no adapter watches ${repo.name}` });
  return c.json({ jobs }, 202);
});

webhookRoutes.post('/generic', async (c) => {
  const secret = c.env.GENERIC_WEBHOOK_SECRET;
  if (!secret) throw new ApiError(401, 'webhook_disabled', 'generic webhooks are not configured here (no GENERIC_WEBHOOK_SECRET)');
  const lim = limits(c.env);
  const body = await readCapped(c.req.raw, lim.webhookBodyBytes);
  const verdict = await verifyWebhook({
    secret,
    timestamp: c.req.header(WEBHOOK_TIMESTAMP_HEADER),
    signature: c.req.header(WEBHOOK_SIGNATURE_HEADER),
    body,
    now: Math.floor(Date.now() / 1000),
    toleranceS: lim.webhookToleranceS,
  });
  if (!verdict.ok) throw new ApiError(401, verdict.code, verdict.message);
  // Remembered until the timestamp leaves the window: after that the timestamp check refuses it.
  const until = (verdict.timestamp + lim.webhookToleranceS + 1) * 1000;
  if (!(await firstDelivery(c.env, verdict.signature, until))) {
    throw new ApiError(401, 'webhook_replayed', 'this delivery (timestamp and signature) was accepted before');
  }

  const event = parseJsonBody(body, GenericEventSchema);
  if (!(await registry(c.env).getTenant(event.tenant)))
    throw new ApiError(422, 'tenant_unknown', `tenant "${event.tenant}" does not exist`, { field: 'tenant' });
  if (event.type === 'merge') {
    const r = await requestMerge(c.env, event.tenant, event.merge);
    return c.json(r.body, r.status);
  }
  const a = event.adapter;
  const src = resolveSourceUrl(a.url, lim.fetchAllowedHosts, a.revision);
  if (a.watch && src.source.kind !== 'hf')
    throw new ApiError(400, 'invalid_request', 'watch needs a Hugging Face Hub URL', { field: 'adapter.watch' });
  const payload: ImportPayload = { kind: 'import', tenant: event.tenant, name: a.name, source: src.source, dir: src.dir };
  if (a.base !== undefined) payload.base = a.base;
  if (a.visibility !== undefined) payload.visibility = a.visibility;
  if (a.examples !== undefined) payload.examples = a.examples;
  if (a.watch !== undefined) payload.watch = a.watch;
  if (event.merges?.length) payload.merges = event.merges;
  const id = await importJobId(payload, event.id ?? verdict.signature);
  const { job } = await submitJob(c.env, id, 'import', payload, event.tenant);
  return c.json({ job }, 202);
});
