/** Bearer authentication: API keys for tenants, ADMIN_TOKEN for /admin. */
import type { Context, MiddlewareHandler } from 'hono';
import { Registry, type Tenant, timingSafeEqualText } from '../lib.ts';
import { ApiError } from './errors.ts';

export type AppEnv = { Bindings: Env; Variables: { tenant: Tenant } };

export function bearer(c: Context): string | undefined {
  const h = c.req.header('authorization');
  const m = h ? /^Bearer[ ]+(\S+)\s*$/i.exec(h) : null;
  return m ? (m[1] as string) : undefined;
}

export function registry(env: Env): Registry {
  return new Registry(env.REGISTRY);
}

const unauthorized = () => new ApiError(401, 'unauthorized', 'send a valid API key: Authorization: Bearer lek_…');

export const requireTenant: MiddlewareHandler<AppEnv> = async (c, next) => {
  const key = bearer(c);
  if (!key) throw unauthorized();
  const who = await registry(c.env).authenticate(key);
  if (!who) throw unauthorized();
  c.set('tenant', who.tenant);
  await next();
};

export const requireAdmin: MiddlewareHandler<AppEnv> = async (c, next) => {
  const token = bearer(c);
  const want = c.env.ADMIN_TOKEN;
  // No ADMIN_TOKEN configured: the admin API is off, not open.
  if (!token || !want || !(await timingSafeEqualText(token, want))) {
    throw new ApiError(401, 'unauthorized', 'the admin API needs Authorization: Bearer <ADMIN_TOKEN>');
  }
  await next();
};
