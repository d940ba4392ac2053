/** Bearer authentication: an API key names the tenant; ADMIN_TOKEN guards the router's own admin routes. */
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

export const requireTenant: MiddlewareHandler<AppEnv> = async (c, next) => {
  const key = bearer(c);
  if (!key) throw new ApiError(401, 'missing_api_key', 'You did not provide an API key: send Authorization: Bearer lek_…');
  const who = await registry(c.env).authenticate(key);
  if (!who) throw new ApiError(401, 'invalid_api_key', 'Incorrect API key provided.');
  c.set('tenant', who.tenant);
  await next();
};

export const requireAdmin: MiddlewareHandler<AppEnv> = async (c, next) => {
  const token = bearer(c);
  const want = c.env.ADMIN_TOKEN;
  // No ADMIN_TOKEN configured: the admin routes are off, not open.
  if (!token || !want || !(await timingSafeEqualText(token, want))) {
    throw new ApiError(401, 'invalid_admin_token', 'This route needs Authorization: Bearer <ADMIN_TOKEN>.');
  }
  await next();
};
