/**
 * The merge service's public paths, served through the router so clients talk to one host:
 * adapter uploads, merges, jobs, artifacts, admin (tenants, keys, base models) and webhooks go
 * to the MERGE service binding unchanged; that service authenticates them itself.
 */
import { Hono } from 'hono';
import type { AppEnv } from '../http/auth.ts';

export const MERGE_PATHS = ['/v1/adapters', '/v1/adapters/*', '/v1/merges', '/v1/jobs/*', '/v1/artifacts/*', '/admin/*', '/webhooks/*'];

export const mergeProxy = new Hono<AppEnv>();
for (const p of MERGE_PATHS) mergeProxy.all(p, (c) => c.env.MERGE.fetch(c.req.raw));
