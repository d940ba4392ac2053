/**
 * The caller's aliases (model names that stand for weighted routes, each a mix: canary splits) and
 * their default adapter. Every adapter named must be one the caller may use.
 *
 *   PUT    /v1/aliases/:name  {routes: [{weight, base?, mix: [{adapter, weight}]}]}
 *   GET    /v1/aliases, GET /v1/aliases/:name, DELETE /v1/aliases/:name
 *   GET    /v1/tenant, PATCH /v1/tenant {default_adapter: string | null}
 */
import { Hono } from 'hono';
import { z } from 'zod';
import { type AppEnv, registry } from '../http/auth.ts';
import { readJson, validate } from '../http/body.ts';
import { ApiError, adapterNotFound, modelNotFound } from '../http/errors.ts';
import { AliasRouteSchema, listAllKeys, NameSchema, registryKeys } from '../lib.ts';
import { resolveMix } from '../select.ts';

const AliasBodySchema = z.object({ routes: z.array(AliasRouteSchema).min(1).max(16) });
const TenantPatchSchema = z.object({ default_adapter: z.string().min(1).max(200).nullable() });

export const aliasRoutes = new Hono<AppEnv>();

aliasRoutes.put('/aliases/:name', async (c) => {
  const name = validate(NameSchema, c.req.param('name'), ['name']);
  const body = await readJson(c.req.raw, AliasBodySchema);
  const reg = registry(c.env);
  const tenant = c.get('tenant').id;
  // Base models are found before aliases: an alias with a base's name could never be reached.
  if (await reg.getModel(name)) throw new ApiError(409, 'alias_conflicts_with_model', `\`${name}\` is a base model's name.`, 'name');
  for (const [i, route] of body.routes.entries()) {
    const mix = await resolveMix(
      reg,
      tenant,
      route.mix.map((m) => ({ id: m.adapter, weight: m.weight })),
      `routes[${i}].mix`,
    );
    const baseId = route.base ?? mix[0]?.adapter.base;
    if (route.base !== undefined && !(await reg.getModel(route.base))) throw modelNotFound(route.base);
    for (const [j, m] of mix.entries()) {
      if (m.adapter.base !== baseId)
        throw new ApiError(
          400,
          'adapter_base_mismatch',
          `The adapter \`${m.adapter.id}\` was made for \`${m.adapter.base}\`, not \`${baseId}\`.`,
          `routes[${i}].mix[${j}]`,
        );
    }
  }
  const alias = await reg.putAlias({ tenant, name, routes: body.routes });
  return c.json({ alias });
});

aliasRoutes.get('/aliases', async (c) => {
  const reg = registry(c.env);
  const prefix = registryKeys.alias(c.get('tenant').id, '');
  const out = [];
  for (const key of await listAllKeys(reg.kv, prefix)) {
    const a = await reg.getAlias(c.get('tenant').id, key.slice(prefix.length));
    if (a) out.push(a);
  }
  return c.json({ aliases: out });
});

aliasRoutes.get('/aliases/:name', async (c) => {
  const alias = await registry(c.env).getAlias(c.get('tenant').id, c.req.param('name'));
  if (!alias) throw new ApiError(404, 'alias_not_found', `No alias \`${c.req.param('name')}\`.`, 'name');
  return c.json({ alias });
});

aliasRoutes.delete('/aliases/:name', async (c) => {
  const reg = registry(c.env);
  const name = c.req.param('name');
  if (!(await reg.getAlias(c.get('tenant').id, name))) throw new ApiError(404, 'alias_not_found', `No alias \`${name}\`.`, 'name');
  await reg.kv.delete(registryKeys.alias(c.get('tenant').id, name));
  return c.json({ deleted: true });
});

aliasRoutes.get('/tenant', (c) => c.json({ tenant: c.get('tenant') }));

aliasRoutes.patch('/tenant', async (c) => {
  const body = await readJson(c.req.raw, TenantPatchSchema);
  const reg = registry(c.env);
  const tenant = { ...c.get('tenant') };
  if (body.default_adapter === null) delete tenant.default_adapter;
  else {
    if (!(await reg.resolveAdapter(tenant.id, body.default_adapter))) throw adapterNotFound(body.default_adapter, 'default_adapter');
    tenant.default_adapter = body.default_adapter;
  }
  return c.json({ tenant: await reg.putTenant(tenant) });
});
