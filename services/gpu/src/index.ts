import { Hono } from 'hono';
import { handleQueue } from './consumer.ts';
import { runnerRoutes } from './runners.ts';
import { SERVICE, VERSION } from './version.ts';

export { GpuJob } from './job.ts';
export { RunnerPool } from './pool.ts';
export { GpuRpc } from './rpc.ts';

/**
 * The GPU path's gateway Worker: the runner API (`/runners/*`), the jobs queue's push consumer and
 * its dead-letter queue, one Durable Object per job and one for the runner pool. The router
 * reaches it through the GpuRpc entrypoint; runners through `/runners/*` on the router's host.
 */
const app = new Hono<{ Bindings: Env }>();

app.get('/health', (c) => c.json({ status: 'ok', service: SERVICE, version: VERSION }));
app.route('/runners', runnerRoutes);
app.notFound((c) => c.json({ error: { code: 'not_found', message: `no route for ${c.req.method} ${c.req.path}` } }, 404));
app.onError((e, c) => {
  console.error(JSON.stringify({ level: 'error', msg: 'unhandled', method: c.req.method, path: c.req.path, error: String(e) }));
  return c.json({ error: { code: 'internal_error', message: 'the gateway failed on this request' } }, 500);
});

export default {
  fetch: app.fetch,
  queue: handleQueue,
} satisfies ExportedHandler<Env, unknown>;
