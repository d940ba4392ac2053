import { Hono } from 'hono';
import { type AppEnv, requireTenant } from './http/auth.ts';
import { errorJson, toApiError } from './http/errors.ts';
import { handleQueue } from './jobs/queue.ts';
import type { JobMessage } from './jobs/types.ts';
import { adapterRoutes } from './routes/adapters.ts';
import { adminRoutes } from './routes/admin.ts';
import { mergeRoutes } from './routes/merges.ts';
import { webhookRoutes } from './routes/webhooks.ts';
import { SERVICE, VERSION } from './version.ts';

export { JobObject } from './jobs/job-object.ts';
export { ReplayGuard } from './jobs/replay-guard.ts';

/** The merge Worker: adapter uploads, signed webhooks, merge / fuse / NF4 jobs, artifact cache in R2. */

const app = new Hono<AppEnv>();

app.get('/health', (c) => c.json({ status: 'ok', service: SERVICE, version: VERSION }));
app.route('/admin', adminRoutes);
app.use('/v1/*', requireTenant);
app.route('/v1/adapters', adapterRoutes);
app.route('/v1', mergeRoutes);
app.route('/webhooks', webhookRoutes);

app.notFound((c) => c.json({ error: { code: 'not_found', message: `no route for ${c.req.method} ${c.req.path}` } }, 404));
app.onError((e, c) => {
  const err = toApiError(e);
  if (err.status >= 500) console.error(`${c.req.method} ${c.req.path}:`, e);
  return c.json(errorJson(err), err.status);
});

export default {
  fetch: app.fetch,
  queue: handleQueue,
} satisfies ExportedHandler<Env, JobMessage>;
