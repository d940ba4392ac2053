/**
 * The runner's HTTP face: POST /v1/jobs (the gateway hands over one attempt), GET /healthz (for
 * the orchestrator, no token), GET /v1/status (id, load, live jobs). Every refusal is a JobRefused body.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { gpu } from '@lora-edge/shared';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { JobTable, Refusal } from './jobs.ts';
import type { Logger } from './log.ts';

/** Equal-length digests compared in constant time: neither the token nor its length leaks through timing. */
export function tokenMatches(given: string | undefined, expected: string): boolean {
  const h = (s: string) => createHash('sha256').update(s).digest();
  return given !== undefined && timingSafeEqual(h(given), h(expected));
}

export function bearer(header: string | undefined): string | undefined {
  const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
  return m?.[1];
}

export interface AppOptions {
  id: string;
  token: string;
  jobs: JobTable;
  log: Logger;
  /** Largest job body (a prompt of 2^20 ids is about 8 MiB of JSON). */
  maxBodyBytes?: number;
}

export function createApp(o: AppOptions): Hono {
  const app = new Hono();
  const refuse = (r: Refusal) => Response.json({ error: r.error }, { status: r.status });
  const invalid = (message: string) =>
    refuse({ status: 400, error: { code: 'job_invalid', message: message.slice(0, 2000), retryable: false } });

  app.get('/healthz', (c) => c.json({ status: o.jobs.draining ? 'draining' : 'ok' }));

  app.use('/v1/*', async (c, next) => {
    if (!tokenMatches(bearer(c.req.header('authorization')), o.token)) {
      o.log.log('warn', 'unauthorized request', { path: c.req.path });
      return refuse({ status: 401, error: { code: 'unauthorized', message: 'a valid runner token is required', retryable: false } });
    }
    await next();
  });

  app.get('/v1/status', (c) => c.json({ id: o.id, load: o.jobs.load(), jobs: o.jobs.jobs.map((j) => j.status()) }));

  app.post(
    '/v1/jobs',
    bodyLimit({ maxSize: o.maxBodyBytes ?? 16 * 2 ** 20, onError: () => invalid('the job body is too large') }),
    async (c) => {
      let body: unknown;
      try {
        body = JSON.parse(await c.req.text());
      } catch {
        return invalid('the body is not JSON');
      }
      const parsed = gpu.RunnerJobSchema.safeParse(body);
      if (!parsed.success) {
        const issues = parsed.error.issues.slice(0, 5).map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`);
        return invalid(`not a runner job: ${issues.join('; ')}`);
      }
      const job = parsed.data;
      const a = o.jobs.submit(job);
      if (!a.accepted) {
        o.log.log('info', 'job refused', { job: job.id, attempt: job.attempt, code: a.refusal.error.code });
        return refuse(a.refusal);
      }
      return c.json({ accepted: true, id: a.id, attempt: a.attempt }, 202);
    },
  );

  app.notFound((c) => c.json({ error: { code: 'not_found', message: `no route ${c.req.method} ${c.req.path}`, retryable: false } }, 404));
  app.onError((e, c) => {
    o.log.log('error', 'request failed', { path: c.req.path, error: e });
    return c.json({ error: { code: 'runner_error', message: 'internal error', retryable: true } }, 500);
  });
  return app;
}
