/**
 * The runner-facing API (`/runners/*`, every call with `Authorization: Bearer <RUNNER_TOKEN>`):
 * registration, heartbeats, job events, blobs (models and adapters to pull; merge artifacts to
 * put, manifest last), and the pool's capacity for autoscalers.
 */
import { gpu, timingSafeEqualText } from '@lora-edge/shared';
import { Hono, type MiddlewareHandler } from 'hono';
import type { z } from 'zod';
import { jobStub } from './job.ts';
import { poolStub } from './pool.ts';

type AppEnv = { Bindings: Env };

const refuse = (status: 400 | 401 | 404 | 413, code: string, message: string) =>
  new Response(JSON.stringify({ error: { code, message } }), { status, headers: { 'content-type': 'application/json' } });

const requireRunner: MiddlewareHandler<AppEnv> = async (c, next) => {
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(c.req.header('authorization') ?? '');
  const want = c.env.RUNNER_TOKEN;
  // No RUNNER_TOKEN configured: the runner API is off, not open.
  if (!m || !want || !(await timingSafeEqualText(m[1] as string, want)))
    return refuse(401, 'unauthorized', 'runners must send Authorization: Bearer <RUNNER_TOKEN>');
  await next();
};

const MAX_BODY = 4 * 2 ** 20;

async function body<T extends z.ZodType>(req: Request, schema: T): Promise<z.infer<T> | Response> {
  const text = await req.text();
  if (text.length > MAX_BODY) return refuse(413, 'body_too_large', `at most ${MAX_BODY} bytes`);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return refuse(400, 'invalid_json', 'the body is not JSON');
  }
  const r = schema.safeParse(json);
  if (!r.success)
    return refuse(400, 'invalid_request', r.error.issues.map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`).join('; '));
  return r.data;
}

/** Blobs a runner may read: content-addressed models and adapters, and artifacts. */
const READABLE = /^(models|adapters|artifacts)\/[A-Za-z0-9._/-]+$/;
const WRITABLE = /^artifacts\/[0-9a-f]{64}\/[A-Za-z0-9._-]+$/;

export const runnerRoutes = new Hono<AppEnv>();
runnerRoutes.use('*', requireRunner);

runnerRoutes.post('/register', async (c) => {
  const reg = await body(c.req.raw, gpu.RunnerRegistrationSchema);
  if (reg instanceof Response) return reg;
  return c.json(await poolStub(c.env).register(reg));
});

runnerRoutes.post('/:id/heartbeat', async (c) => {
  const load = await body(c.req.raw, gpu.RunnerLoadSchema);
  if (load instanceof Response) return load;
  return c.json(await poolStub(c.env).heartbeat(c.req.param('id'), load));
});

runnerRoutes.post('/jobs/:id/events', async (c) => {
  const id = c.req.param('id');
  if (!gpu.JOB_ID_RE.test(id)) return refuse(404, 'job_not_found', 'no such job');
  const ev = await body(c.req.raw, gpu.JobEventsSchema);
  if (ev instanceof Response) return ev;
  return c.json(await jobStub(c.env, id).events(ev));
});

runnerRoutes.post('/events', async (c) => {
  const batch = await body(c.req.raw, gpu.BatchEventsSchema);
  if (batch instanceof Response) return batch;
  const replies = await Promise.all(
    batch.events.map(async ({ job, ...ev }) => {
      if (ev.runner !== batch.runner) return { job, status: 400, error: 'an event of another runner' };
      try {
        return { job, status: 200, ...(await jobStub(c.env, job).events(ev)) };
      } catch (e) {
        return { job, status: 503, error: e instanceof Error ? e.message : String(e) };
      }
    }),
  );
  return c.json({ replies } satisfies gpu.BatchReply);
});

runnerRoutes.get('/jobs/:id', async (c) => {
  const id = c.req.param('id');
  const view = gpu.JOB_ID_RE.test(id) ? await jobStub(c.env, id).view() : null;
  return view ? c.json(view) : refuse(404, 'job_not_found', 'no such job');
});

runnerRoutes.get('/capacity', async (c) => c.json(await poolStub(c.env).capacity()));
runnerRoutes.get('/pool', async (c) => c.json(await poolStub(c.env).view()));
runnerRoutes.get('/dead-letters', async (c) => c.json({ dead_letters: await poolStub(c.env).deadLetters() }));

runnerRoutes.get('/blobs/:key{.+}', async (c) => {
  const key = c.req.param('key');
  if (!READABLE.test(key) || key.includes('..')) return refuse(404, 'blob_not_found', 'no such blob');
  const obj = await c.env.BLOBS.get(key);
  if (!obj) return refuse(404, 'blob_not_found', `no blob ${key}`);
  return new Response(obj.body, { headers: { 'content-length': String(obj.size), 'content-type': 'application/octet-stream' } });
});

runnerRoutes.put('/blobs/:key{.+}', async (c) => {
  const key = c.req.param('key');
  if (!WRITABLE.test(key)) return refuse(400, 'blob_key_invalid', 'runners write only artifacts/<recipe>/<file>');
  const bytes = await c.req.arrayBuffer();
  await c.env.BLOBS.put(key, bytes);
  return c.json({ key, size: bytes.byteLength }, 201);
});
